"""Private helpers shared by the built-in collectors, parsers and checks. Not plugins."""
