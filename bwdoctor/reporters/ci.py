"""CI formats: JUnit XML and SARIF 2.1.0.

JUnit: one ``testsuite`` per area, one ``testcase`` per finding; ``fail`` → ``<failure>``,
``error`` (the check itself broke) → ``<error>``, ``skip`` → ``<skipped>``; ``warn`` is a
``<failure type="warning">`` when the run's ``--fail-on`` is ``warn``, else a passing case with
the warning in ``<system-out>``.

SARIF: one rule per check id, one result per non-pass finding (``fail``/``error`` → level
``error``, ``warn`` → ``warning``, ``skip`` → ``note`` with kind ``notApplicable``). Evidence read
from files (``analyze``) becomes physical locations: the file (from the fact's source, or the file
the fact came from) and the line when the source names one (else line 1, ``lineUnknown``). The run's
``properties`` carry the verdict and what was inspected.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from itertools import groupby

from bwdoctor.reporters import headline, inspected_line, sorted_findings
from bwdoctor.types import Finding, Report, to_jsonable

_XML_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _x(text: object) -> str:
    return _XML_BAD.sub("\ufffd", str(text))


def _evidence_text(f: Finding) -> str:
    lines = [f.message]
    for e in f.evidence:
        val = json.dumps(to_jsonable(e.value), ensure_ascii=False)
        lines.append(f"  {e.key} = {val[:500]} ({e.source})")
    if f.remedies:
        lines.append(f"  remedies: {', '.join(f.remedies)}")
    return "\n".join(lines)


def junit(report: Report, verbose: int = 0) -> str:
    fail_on = str(report.options.get("fail_on") or "fail")
    root = ET.Element("testsuites", name="bwdoctor", time=f"{report.duration_s:.3f}")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    verdict = report.verdict()
    vsuite = ET.SubElement(root, "testsuite", name="bwdoctor.verdict")
    props = ET.SubElement(vsuite, "properties")
    ET.SubElement(props, "property", name="verdict", value=_x(verdict["status"]))
    ET.SubElement(props, "property", name="reason", value=_x(verdict["reason"]))
    ET.SubElement(props, "property", name="inspected", value=_x(inspected_line(report)))
    gpus = report.inspected().get("gpus")
    if gpus:
        ET.SubElement(props, "property", name="gpus", value=_x(gpus))
    ET.SubElement(vsuite, "system-out").text = _x(headline(report))
    for k in totals:
        vsuite.set(k, "0")
    for area, group in groupby(sorted_findings(report.findings), key=lambda f: f.area):
        items = list(group)
        suite = ET.SubElement(root, "testsuite", name=_x(f"bwdoctor.{area}"))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for f in items:
            case = ET.SubElement(suite, "testcase", classname=_x(f"bwdoctor.{area}"),
                                 name=_x(f"{f.id} {f.title}" + (f" [{f.subject}]" if f.subject else "")),
                                 time=f"{f.duration_s:.4f}")
            counts["tests"] += 1
            if f.status == "fail" or (f.status == "warn" and fail_on == "warn"):
                el = ET.SubElement(case, "failure", message=_x(f.message), type=f.status if f.status == "fail" else "warning")
                el.text = _x(_evidence_text(f))
                counts["failures"] += 1
            elif f.status == "error":
                el = ET.SubElement(case, "error", message=_x(f.message), type="error")
                el.text = _x(_evidence_text(f))
                counts["errors"] += 1
            elif f.status == "skip":
                ET.SubElement(case, "skipped", message=_x(f.message))
                counts["skipped"] += 1
            elif f.status == "warn":
                out = ET.SubElement(case, "system-out")
                out.text = _x("WARNING: " + _evidence_text(f))
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
    for k, v in totals.items():
        root.set(k, str(v))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


_LINE = re.compile(r"(?::|\bline\s*)(?P<line>\d+)\s*$")
_PATH_IN_SOURCE = re.compile(r"^(?:[\w.-]+:)?(?P<path>/[^;]+?)(?::(?:line )?\d+)?$")


def _evidence_files(report: Report) -> dict[str, list[str]]:
    """Which parsers read each evidence file (``snapshot.meta.evidence``)."""
    out: dict[str, list[str]] = {}
    for item in report.snapshot.meta.get("evidence") or []:
        if isinstance(item, dict) and item.get("path"):
            out[str(item["path"])] = [str(p) for p in item.get("parsers") or []]
    return out


def _file_of(part: str, key: str, origins: dict, files: dict[str, list[str]]) -> str | None:
    """The evidence file a fact source (``nvidia-smi:line 9``, ``dockerfile:/x/Dockerfile``) points at."""
    m = _PATH_IN_SOURCE.match(part)
    if m and m.group("path") in files:
        return m.group("path")
    cands = [p for p in origins.get(key) or [] if p in files]
    if len(cands) == 1:
        return cands[0]
    parser = part.split(":", 1)[0]
    named = [p for p in cands or files if parser in files.get(p, [])]
    return named[0] if len(named) == 1 else None


def _locations(f: Finding, report: Report) -> list[dict]:
    files = _evidence_files(report)
    origins = report.snapshot.meta.get("origins") or {}
    locs: list[dict] = []
    seen: set[tuple[str, int | None]] = set()
    for quoted in list(files):  # "Dockerfile:5" quoted in the message is the most exact place
        for q in re.finditer(re.escape(quoted) + r":(\d+)\b", f.message):
            if (quoted, int(q.group(1))) not in seen:
                seen.add((quoted, int(q.group(1))))
                locs.append({"physicalLocation": {"artifactLocation": {"uri": quoted},
                                                  "region": {"startLine": max(1, int(q.group(1)))}}})
    at = re.fullmatch(r"(?P<path>.+):(?P<line>\d+)", f.subject or "")  # a finding about "Dockerfile:2"
    if at and at.group("path") in files and (at.group("path"), int(at.group("line"))) not in seen:
        seen.add((at.group("path"), int(at.group("line"))))
        locs.insert(0, {"physicalLocation": {"artifactLocation": {"uri": at.group("path")},
                                             "region": {"startLine": max(1, int(at.group("line")))}}})
    exact = {p for p, _ in seen}
    for e in f.evidence:
        for part in e.source.split("; "):
            part = part.strip()
            path = _file_of(part, e.key, origins if isinstance(origins, dict) else {}, files)
            if path is None or path in exact:
                continue
            m = _LINE.search(part[len(path):] if part.find(path) >= 0 else part)
            line = int(m.group("line")) if m else None
            if (path, line) in seen:
                continue
            seen.add((path, line))
            region = {"startLine": max(1, line)} if line else {"startLine": 1}
            loc: dict = {"physicalLocation": {"artifactLocation": {"uri": path}, "region": region}}
            if not line:
                loc["properties"] = {"lineUnknown": True}
            locs.append(loc)
    if not locs:
        locs.append({"logicalLocations": [{"name": f.subject or f.area, "kind": "module",
                                           "fullyQualifiedName": f"bwdoctor/{f.area}/{f.subject or f.id}"}]})
    return locs[:10]


def sarif(report: Report, verbose: int = 0) -> str:
    rules: dict[str, dict] = {}
    results = []
    level = {"fail": "error", "error": "error", "warn": "warning", "skip": "note"}
    for f in sorted_findings(report.findings):
        if f.id not in rules:
            rules[f.id] = {"id": f.id, "name": re.sub(r"[^A-Za-z0-9]+", "", f.title.title()) or f.id,
                           "shortDescription": {"text": f.title or f.id},
                           "help": {"text": f"Run 'bwdoctor explain {f.id}' for what this checks and how to fix it."},
                           "properties": {"area": f.area}}
        if f.status == "pass":
            continue
        res: dict = {"ruleId": f.id, "ruleIndex": list(rules).index(f.id), "level": level[f.status],
                     "message": {"text": f.message or f.title},
                     "locations": _locations(f, report),
                     "properties": {"status": f.status, "severity": f.severity,
                                    "rootCause": f.root_cause, "remedies": list(f.remedies),
                                    "subject": f.subject}}
        if f.status == "skip":
            res["kind"] = "notApplicable"
        if f.status == "error":
            res["properties"]["checkError"] = True
        results.append(res)
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "bwdoctor", "version": report.tool_version or "0",
                                "rules": list(rules.values())}},
            "invocations": [{"executionSuccessful": not any(f.status == "error" and f.area == "CORE"
                                                            for f in report.findings)}],
            "results": results,
            "properties": {"mode": report.mode, "verdict": report.verdict(), "inspected": report.inspected(),
                           "diagnosis": to_jsonable(report.diagnosis)},
        }],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
