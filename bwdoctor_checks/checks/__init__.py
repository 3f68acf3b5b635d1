"""Checks: pure functions of the facts, one module per check-id area. No I/O here (a meta-test enforces it)."""
