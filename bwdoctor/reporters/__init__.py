"""Built-in reporters. Every reporter renders one (already redacted) :class:`~bwdoctor.types.Report`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bwdoctor.types import Report

STATUS_ORDER = {"fail": 0, "error": 1, "warn": 2, "skip": 3, "pass": 4}
MARKS = {"pass": "✔", "warn": "▲", "fail": "✖", "skip": "○", "error": "‼"}
ASCII_MARKS = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "SKIP", "error": "ERR "}


def render_json(report: Report, verbose: int = 0) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"


def summary_line(report: Report) -> str:
    s = report.summary()
    parts = [f"{s[k]} {k}" for k in ("fail", "error", "warn", "pass", "skip") if s.get(k)]
    return ", ".join(parts) if parts else "no checks ran"


def render_markdown(report: Report, verbose: int = 0) -> str:
    from bwdoctor.reporters.text import markdown

    return markdown(report, verbose)


def render_console_plain(report: Report, verbose: int = 0) -> str:
    from bwdoctor.reporters.console import render

    return render(report, verbose, color=False)


def render_junit(report: Report, verbose: int = 0) -> str:
    from bwdoctor.reporters.ci import junit

    return junit(report, verbose)


def render_sarif(report: Report, verbose: int = 0) -> str:
    from bwdoctor.reporters.ci import sarif

    return sarif(report, verbose)


BUILTIN: dict[str, Callable[[Report, int], str]] = {
    "console": render_console_plain,
    "json": render_json,
    "markdown": render_markdown,
    "junit": render_junit,
    "sarif": render_sarif,
}


def sorted_findings(findings: list[Any]) -> list[Any]:
    return sorted(findings, key=lambda f: (f.area, STATUS_ORDER.get(f.status, 9), f.id, f.subject or ""))
