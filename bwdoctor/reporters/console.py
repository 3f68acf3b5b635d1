"""Rich console report: findings grouped by area, a mark per status, a summary line;
evidence (facts with their provenance) under ``-v``."""

from __future__ import annotations

import io
import json
from itertools import groupby

from bwdoctor.reporters import ASCII_MARKS, MARKS, sorted_findings, summary_line
from bwdoctor.types import Report, to_jsonable

STYLES = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim", "error": "bold magenta"}


def _short(value: object, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(to_jsonable(value), ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(report: Report, verbose: int = 0, color: bool = False, width: int | None = None) -> str:
    from rich.console import Console
    from rich.markup import escape

    buf = io.StringIO()
    con = Console(file=buf, force_terminal=color, no_color=not color, width=width or 110, highlight=False,
                  emoji=False, soft_wrap=False)
    marks = MARKS if color else ASCII_MARKS
    head = {"live": "this machine", "from": "stored report", "analyze": "evidence", "snapshot": "facts"}.get(
        report.mode, report.mode)
    target = report.snapshot.value("target")
    title = f"bwdoctor {report.tool_version} — {head}"
    if isinstance(target, dict) and target.get("name"):
        title += f" (judged for --target {target.get('name')}, CC {target.get('compute_capability')})"
    con.print(f"[bold]{escape(title)}[/bold]")
    snap = report.snapshot
    gpus = snap.gpus()
    if gpus and isinstance(target, dict) and target.get("replaces_gpus"):
        names = ", ".join(f"{i}: {g.get('name')}" for i, g in gpus)
        con.print(escape(f"GPUs present ({names}) are not judged: checks judge the --target instead."))
    elif gpus:
        drv = snap.value("driver.version")
        cuda = snap.value("driver.cuda_version")
        names = ", ".join(f"{i}: {g.get('name')} (CC {g.get('compute_capability')})" for i, g in gpus)
        con.print(escape(f"GPUs {names}" + (f"; driver {drv}" if drv else "") + (f", CUDA {cuda}" if cuda else "")))
    elif report.mode in ("live", "from") and "gpu.*" in snap.missing:
        con.print(f"[yellow]No GPU seen:[/yellow] {escape(snap.missing['gpu.*'])}. GPU checks are skipped"
                  + (" (judging the installed stack for the --target instead)." if isinstance(target, dict) else
                     "; use --target GPU to judge the installed stack for a GPU this machine does not have."))
    listed = [f for f in report.findings if verbose or f.status != "skip"]
    for area, group in groupby(sorted_findings(listed), key=lambda f: f.area):
        items = list(group)
        con.print(f"\n[bold underline]{escape(area)}[/bold underline]")
        for f in items:
            subject = f" [{f.subject}]" if f.subject else ""
            con.print(f"  [{STYLES[f.status]}]{marks[f.status]}[/] {escape(f.id)}{escape(subject)}  "
                      f"{escape(f.message)}", overflow="fold")
            if f.status in ("fail", "warn") and f.remedies and verbose:
                con.print(f"      [dim]remedies: {escape(', '.join(f.remedies))} (bwdoctor fix)[/dim]")
            if verbose:
                for e in f.evidence:
                    con.print(f"      [dim]· {escape(e.key)} = {escape(_short(e.value))}  ({escape(e.source)})[/dim]",
                              overflow="fold")
    skips = [f for f in report.findings if f.status == "skip"]
    if skips and not verbose:
        # one line per reason, so that a GPU-less machine reads as one clear statement, not 40 lines
        by_reason: dict[str, list[str]] = {}
        for f in sorted_findings(skips):
            by_reason.setdefault(f.message, []).append(f.key)
        con.print(f"\n[bold underline]Skipped[/bold underline] ({len(skips)}; -v lists each)")
        for reason, keys in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
            shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
            con.print(f"  [dim]{marks['skip']}[/dim] {escape(reason)}  [dim]({escape(shown)})[/dim]", overflow="fold")
    if report.diagnosis:
        con.print("\n[bold]Diagnosis[/bold] (most likely first)")
        for i, d in enumerate(report.diagnosis, 1):
            con.print(f"  {i}. [bold]{escape(str(d.get('root_cause')))}[/bold] "
                      f"({float(d.get('confidence') or 0):.2f}) — {escape(str(d.get('summary', '')))}", overflow="fold")
    if report.plans:
        from bwdoctor.fixscript import fix_command

        con.print(f"\n{len(report.plans)} fix plan(s) available: run [bold]{escape(fix_command(report))}[/bold] to see "
                  "the script.", overflow="fold")
    con.print(f"\n[bold]Summary:[/bold] {summary_line(report)}  ({report.duration_s:.2f} s)")
    if not verbose and any(f.status in ("fail", "warn") for f in report.findings):
        con.print("[dim]Run with -v for the evidence behind each finding, or 'bwdoctor explain ID'.[/dim]")
    return buf.getvalue()
