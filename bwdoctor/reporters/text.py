"""Markdown report, for pasting into an issue."""

from __future__ import annotations

import json

from bwdoctor.reporters import ASCII_MARKS, sorted_findings, summary_line
from bwdoctor.types import Report, to_jsonable


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(report: Report, verbose: int = 0) -> str:
    lines = [f"## bwdoctor {report.tool_version} report ({report.mode})", "",
             f"**Summary:** {summary_line(report)}", ""]
    snap = report.snapshot
    facts = [("Driver", snap.value("driver.version")), ("CUDA (driver)", snap.value("driver.cuda_version")),
             ("GPUs", ", ".join(f"{g.get('name')} (CC {g.get('compute_capability')})" for _, g in snap.gpus()) or None),
             ("torch", (snap.value("torch") or {}).get("version") if isinstance(snap.value("torch"), dict) else None),
             ("vLLM", (snap.value("vllm") or {}).get("version") if isinstance(snap.value("vllm"), dict) else None),
             ("Target", (snap.value("target") or {}).get("name") if isinstance(snap.value("target"), dict) else None)]
    present = [(k, v) for k, v in facts if v]
    if present:
        lines += ["| | |", "|---|---|"] + [f"| {k} | {_cell(v)} |" for k, v in present] + [""]
    if report.diagnosis:
        lines += ["### Diagnosis", ""]
        for i, d in enumerate(report.diagnosis, 1):
            lines.append(f"{i}. **{d.get('root_cause')}** ({float(d.get('confidence') or 0):.2f}): {d.get('summary', '')}")
        lines.append("")
    lines += ["### Findings", "", "| | id | message |", "|---|---|---|"]
    for f in sorted_findings(report.findings):
        if f.status == "pass" and not verbose:
            continue
        subj = f" [{f.subject}]" if f.subject else ""
        lines.append(f"| {ASCII_MARKS[f.status].strip()} | `{f.id}`{_cell(subj)} | {_cell(f.message)} |")
    passed = sum(1 for f in report.findings if f.status == "pass")
    if passed and not verbose:
        lines.append(f"| PASS | ({passed} checks) | passed |")
    lines.append("")
    problems = [f for f in report.findings if f.status in ("fail", "warn", "error")]
    if problems:
        lines += ["<details><summary>Evidence</summary>", ""]
        for f in sorted_findings(problems):
            lines.append(f"- `{f.key}` ({f.status}): {f.message}")
            for e in f.evidence:
                val = json.dumps(to_jsonable(e.value), ensure_ascii=False)
                if len(val) > 300:
                    val = val[:299] + "…"
                lines.append(f"  - `{e.key}` = `{val}` — {e.source}")
            if f.remedies:
                lines.append(f"  - remedies: {', '.join(f.remedies)}")
        lines += ["", "</details>", ""]
    return "\n".join(lines) + "\n"
