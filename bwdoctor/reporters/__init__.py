"""Built-in reporters. Every reporter renders one (already redacted) :class:`~bwdoctor.types.Report`."""

from __future__ import annotations

import json
from typing import Any

from bwdoctor.hookspecs import hookimpl
from bwdoctor.types import Report, ReporterSpec

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


def render_console_color(report: Report, verbose: int = 0) -> str:
    from bwdoctor.reporters.console import render

    return render(report, verbose, color=True)


@hookimpl
def bwdoctor_reporters() -> list[ReporterSpec]:
    """The built-in formats, declared through the hook every reporter plugin uses."""
    return [
        ReporterSpec("console", render_console_plain, doc="Findings grouped by area, for people (the default).",
                     color_func=render_console_color),
        ReporterSpec("json", render_json, doc="The whole report, versioned schema (docs/report.schema.json)."),
        ReporterSpec("markdown", render_markdown, doc="For pasting into an issue."),
        ReporterSpec("junit", render_junit, doc="JUnit XML: one test case per finding, for CI."),
        ReporterSpec("sarif", render_sarif, doc="SARIF 2.1.0, for code-scanning dashboards."),
    ]


def sorted_findings(findings: list[Any]) -> list[Any]:
    return sorted(findings, key=lambda f: (f.area, STATUS_ORDER.get(f.status, 9), f.id, f.subject or ""))
