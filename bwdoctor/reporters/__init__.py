"""Built-in reporters. Every reporter renders one (already redacted) :class:`~bwdoctor.types.Report`."""

from __future__ import annotations

import json
from typing import Any

from bwdoctor.hookspecs import hookimpl
from bwdoctor.types import Report, ReporterSpec

STATUS_ORDER = {"fail": 0, "error": 1, "warn": 2, "skip": 3, "pass": 4}
MARKS = {"pass": "✔", "warn": "▲", "fail": "✖", "skip": "○", "error": "‼"}
ASCII_MARKS = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "SKIP", "error": "ERR "}


def headline(report: Report) -> str:
    """``NOT READY: why`` — the first line of every human-readable report."""
    from bwdoctor.verdict import headline as text

    return text(report.verdict())


def inspected_line(report: Report) -> str:
    """What the report judged, in words: the Python environment, the evidence files or the stored report."""
    env = report.snapshot.value("host.python_env")
    if report.mode == "analyze":
        n = len(report.inputs)
        shown = ", ".join(report.inputs[:4]) + (f" and {n - 4} more" if n > 4 else "")
        return f"evidence files ({n}): {shown}" if n else "evidence files: none could be read"
    prefix = f"stored report {report.inputs[0]}; " if report.mode == "from" and report.inputs else ""
    if isinstance(env, dict) and env.get("executable"):
        how = env.get("selected_by") or "this interpreter"
        how = "bwdoctor's own interpreter" if how == "this interpreter" else f"chosen by {how}"
        where = f"{env.get('kind')} {env.get('prefix')}" if env.get("prefix") else str(env.get("kind") or "")
        line = f"{prefix}Python {env.get('version')} at {env.get('executable')} ({where}; {how})"
        if env.get("note"):
            line += f": {env.get('note')}"
        return line
    return prefix + "no Python environment recorded"


def gpu_line(report: Report) -> str | None:
    """``GPU 0: NVIDIA H200 (compute capability 9.0); driver 580.159.04, CUDA 13.0``, the no-GPU
    statement, or None when the report says nothing about GPUs."""
    snap = report.snapshot
    gpus = snap.gpus()
    target = snap.value("target")
    if gpus:
        parts = []
        for i, g in gpus:
            name = str(g.get("name") or "unknown GPU")
            if g.get("name_expanded"):
                name += f" (expanded from '{g.get('name_as_seen')}')"
            elif isinstance(g.get("name_candidates"), list) and g["name_candidates"]:
                name += f" (cut by nvidia-smi: one of {', '.join(str(c) for c in g['name_candidates'])})"
            cc = g.get("compute_capability")
            parts.append(f"GPU {i}: {name}" + (f" (compute capability {cc})" if cc else ""))
        text = "; ".join(parts)
        drv, cuda = snap.value("driver.version"), snap.value("driver.cuda_version")
        if drv:
            text += f"; driver {drv}" + (f" (CUDA {cuda})" if cuda else "")
        if isinstance(target, dict) and target.get("replaces_gpus"):
            text += f" (not judged: the checks judge --target {target.get('name') or target.get('query')})"
        return text
    if isinstance(target, dict) and target.get("name"):
        return (f"judged for --target {target.get('name')} (compute capability {target.get('compute_capability')}); "
                "no GPU present")
    if report.mode in ("live", "from") and "gpu.*" in snap.missing:
        return (f"no GPU seen: {snap.missing['gpu.*']}; GPU checks are skipped (use --target GPU to judge the "
                "installed stack for a GPU this machine does not have)")
    return None


def guessed(report: Report) -> dict[str, str]:
    """Facts read from prose rather than from machine output: ``{fact key: where}``."""
    g = report.snapshot.meta.get("guessed")
    return {str(k): str(v) for k, v in g.items()} if isinstance(g, dict) else {}


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
    """For a terminal: wrapped at its width (or COLUMNS), coloured unless NO_COLOR, Unicode marks
    where the locale has them."""
    from bwdoctor import term
    from bwdoctor.reporters.console import render

    return render(report, verbose, color=term.color_ok(), width=term.width(), wrap=True, unicode=term.unicode_ok())


@hookimpl
def bwdoctor_reporters() -> list[ReporterSpec]:
    """The built-in formats, declared through the hook every reporter plugin uses."""
    return [
        ReporterSpec("console", render_console_plain, doc="Findings grouped by area, for people (the default).",
                     color_func=render_console_color),
        ReporterSpec("json", render_json, doc="The whole report, versioned schema (bwdoctor/schema/report.schema.json; bwdoctor schema prints it)."),
        ReporterSpec("markdown", render_markdown, doc="For pasting into an issue."),
        ReporterSpec("junit", render_junit, doc="JUnit XML: one test case per finding, for CI."),
        ReporterSpec("sarif", render_sarif, doc="SARIF 2.1.0, for code-scanning dashboards."),
    ]


def sorted_findings(findings: list[Any]) -> list[Any]:
    return sorted(findings, key=lambda f: (f.area, STATUS_ORDER.get(f.status, 9), f.id, f.subject or ""))
