"""Version helpers for the stack collectors and checks."""

from __future__ import annotations

from typing import Any

from packaging.version import InvalidVersion, Version


def parse_version(text: Any) -> Version | None:
    try:
        return Version(str(text))
    except (InvalidVersion, TypeError):
        return None


def base_version(text: Any) -> Version | None:
    v = parse_version(text)
    return Version(v.base_version) if v else None


def at_least(have: Any, need: Any) -> bool | None:
    h, n = base_version(have), base_version(need)
    if h is None or n is None:
        return None
    return h >= n
