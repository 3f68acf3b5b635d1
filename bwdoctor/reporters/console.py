"""Console report: the verdict first, then findings grouped by area (a mark per status), skips
folded by reason, the diagnosis and a summary line.

``-v`` adds the evidence behind each finding (facts, their sources) and lists every skip; ``-vv``
adds the full fact values, each finding's details and timings. On a terminal lines wrap at its
width; otherwise (``wrap=False``: piped, redirected) every finding is one line, never wrapped, so
that ``grep FAIL`` keeps the whole message.
"""

from __future__ import annotations

import io
import json
from itertools import groupby

from bwdoctor.reporters import (
    ASCII_MARKS,
    MARKS,
    gpu_line,
    guessed,
    headline,
    inspected_line,
    sorted_findings,
    summary_line,
)
from bwdoctor.types import Report, to_jsonable

STYLES = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim", "error": "bold magenta"}
VERDICT_STYLES = {"ready": "bold green", "not ready": "bold red", "could not tell": "bold yellow"}


def _short(value: object, limit: int | None = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(to_jsonable(value), ensure_ascii=False)
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def render(report: Report, verbose: int = 0, color: bool = False, width: int | None = None,
           wrap: bool | None = None, unicode: bool | None = None) -> str:
    """The report as text. ``color``: ANSI styles; ``width``: the terminal's columns; ``wrap``:
    wrap long lines at ``width`` (default: only with ``color``, i.e. on a terminal); ``unicode``:
    use ✔/✖ marks (default: with ``color``)."""
    from rich.console import Console
    from rich.markup import escape

    wrap = color if wrap is None else wrap
    unicode = color if unicode is None else unicode
    buf = io.StringIO()
    con = Console(file=buf, force_terminal=color, no_color=not color, width=max(40, width or 100), highlight=False,
                  emoji=False, soft_wrap=not wrap, color_system="standard" if color else None)
    marks = MARKS if unicode else ASCII_MARKS
    dash = "—" if unicode else "-"

    def line(text: str, style: str | None = None) -> None:
        if wrap:
            con.print(text, style=style, overflow="fold")
        else:  # one line per item, never cut or wrapped
            con.print(text, style=style, soft_wrap=True, crop=False)

    v = report.verdict()
    line(f"[{VERDICT_STYLES.get(v['status'], 'bold')}]{escape(headline(report))}[/]")
    head = {"live": "this machine", "from": "stored report", "analyze": "evidence", "snapshot": "facts"}.get(
        report.mode, report.mode)
    line(f"[dim]bwdoctor {escape(report.tool_version)} {dash} {escape(head)}[/dim]")
    line(f"Inspected: {escape(inspected_line(report))}")
    gl = gpu_line(report)
    if gl:
        style = "yellow" if gl.startswith("no GPU seen") else None
        line(escape(gl[0].upper() + gl[1:]), style)
    guesses = guessed(report)
    listed = [f for f in report.findings if verbose or f.status != "skip"]
    for area, group in groupby(sorted_findings(listed), key=lambda f: f.area):
        items = list(group)
        line(f"\n[bold underline]{escape(area)}[/bold underline]")
        for f in items:
            subject = f" [{f.subject}]" if f.subject else ""
            prose = [e for e in f.evidence if guesses.get(e.key) == e.source]
            note = f" (read from prose: {', '.join(sorted({e.source for e in prose}))})" if prose else ""
            line(f"  [{STYLES[f.status]}]{marks[f.status]}[/] {escape(f.id)}{escape(subject)}  "
                 f"{escape(f.message)}{escape(note)}")
            if f.status in ("fail", "warn") and f.remedies and verbose:
                line(f"      [dim]remedies: {escape(', '.join(f.remedies))} (bwdoctor fix)[/dim]")
            if verbose:
                for e in f.evidence:
                    line(f"      [dim]- {escape(e.key)} = {escape(_short(e.value, None if verbose > 1 else 160))}  "
                         f"({escape(e.source)})[/dim]")
            if verbose > 1:
                if f.details:
                    line(f"      [dim]details: {escape(_short(f.details, None))}[/dim]")
                line(f"      [dim]{f.duration_s * 1000:.1f} ms, severity {escape(f.severity)}, plugin "
                     f"{escape(f.plugin or '-')}[/dim]")
    skips = [f for f in report.findings if f.status == "skip"]
    if skips and not verbose:
        # one line per reason, so that a GPU-less machine reads as one clear statement, not 40 lines
        by_reason: dict[str, list[str]] = {}
        for f in sorted_findings(skips):
            by_reason.setdefault(f.message, []).append(f.key)
        line(f"\n[bold underline]Not checked[/bold underline] ({len(skips)}; -v lists each)")
        for reason, keys in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
            shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
            line(f"  [dim]{marks['skip']}[/dim] {escape(reason)}  [dim]({escape(shown)})[/dim]")
    if report.diagnosis:
        line("\n[bold]Diagnosis[/bold] (most likely first)")
        for i, d in enumerate(report.diagnosis, 1):
            line(f"  {i}. [bold]{escape(str(d.get('root_cause')))}[/bold] "
                 f"({float(d.get('confidence') or 0):.2f}) {dash} {escape(str(d.get('summary', '')))}")
    if report.plans:
        line(f"\n{len(report.plans)} fix plan(s) available: run [bold]bwdoctor fix[/bold] to see the script.")
    line(f"\n[bold]Summary:[/bold] {summary_line(report)}  ({report.duration_s:.2f} s)")
    if not verbose and any(f.status in ("fail", "warn") for f in report.findings):
        line("[dim]Run with -v for the evidence behind each finding, or 'bwdoctor explain ID'.[/dim]")
    return buf.getvalue()
