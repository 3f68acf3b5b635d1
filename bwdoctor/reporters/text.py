"""Markdown report, for pasting into an issue: the verdict and the problems first, passes and
skips folded into ``<details>`` blocks."""

from __future__ import annotations

import json

from bwdoctor.reporters import ASCII_MARKS, gpu_line, guessed, inspected_line, sorted_findings, summary_line
from bwdoctor.types import Report, to_jsonable


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def _rows(findings: list, guesses: dict[str, str]) -> list[str]:
    out = ["| | check | result |", "|---|---|---|"]
    for f in sorted_findings(findings):
        subj = f" [{f.subject}]" if f.subject else ""
        prose = sorted({e.source for e in f.evidence if guesses.get(e.key) == e.source})
        note = f" *(read from prose: {', '.join(prose)})*" if prose else ""
        out.append(f"| {ASCII_MARKS[f.status].strip()} | `{f.id}`{_cell(subj)} | {_cell(f.message)}{_cell(note)} |")
    return out


def markdown(report: Report, verbose: int = 0) -> str:
    v = report.verdict()
    lines = [f"## bwdoctor: **{v['status'].upper()}**", "", _cell(v["reason"]), "",
             f"- Inspected: {_cell(inspected_line(report))}"]
    gl = gpu_line(report)
    if gl:
        lines.append(f"- {_cell(gl[0].upper() + gl[1:])}")
    snap = report.snapshot
    stack = []
    for key, label in (("torch", "torch"), ("vllm", "vLLM")):
        val = snap.value(key)
        if isinstance(val, dict) and val.get("version"):
            extra = val.get("variant") or val.get("build")
            stack.append(f"{label} {val['version']}" + (f" ({extra})" if extra else ""))
    if stack:
        lines.append(f"- Stack: {_cell(', '.join(stack))}")
    lines += [f"- bwdoctor {report.tool_version}, {report.mode} run: {summary_line(report)}", ""]
    guesses = guessed(report)
    problems = [f for f in report.findings if f.status in ("fail", "error", "warn")]
    if problems:
        lines += ["### Problems", ""] + _rows(problems, guesses) + [""]
    if report.diagnosis:
        lines += ["### Diagnosis", ""]
        for i, d in enumerate(report.diagnosis, 1):
            lines.append(f"{i}. **{d.get('root_cause')}** ({float(d.get('confidence') or 0):.2f}): "
                         f"{_cell(d.get('summary', ''))}")
        lines.append("")
    passed = [f for f in report.findings if f.status == "pass"]
    skipped = [f for f in report.findings if f.status == "skip"]
    if passed:
        lines += [f"<details><summary>Passed ({len(passed)})</summary>", ""] + _rows(passed, guesses) + ["",
                                                                                                      "</details>", ""]
    if skipped:
        lines += [f"<details><summary>Not checked ({len(skipped)})</summary>", ""] + _rows(skipped, guesses) + [
            "", "</details>", ""]
    if problems:
        lines += ["<details><summary>Evidence</summary>", ""]
        limit = None if verbose > 1 else 300
        for f in sorted_findings(problems):
            lines.append(f"- `{f.key}` ({f.status}): {_cell(f.message)}")
            for e in f.evidence:
                val = json.dumps(to_jsonable(e.value), ensure_ascii=False)
                if limit is not None and len(val) > limit:
                    val = val[: limit - 3] + "..."
                val = val.replace("`", "'")
                lines.append(f"  - `{e.key}` = `{val}` ({e.source})")
            if f.remedies:
                lines.append(f"  - remedies: {', '.join(f.remedies)}")
        lines += ["", "</details>", ""]
    return "\n".join(lines) + "\n"
