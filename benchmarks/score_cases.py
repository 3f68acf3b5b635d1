"""Score ``bwdoctor analyze`` on a folder of cases (the layout of ``cases/README.md``).

Each case folder holds evidence files and a ``case.json`` with ``root_cause`` and
``evidence_files``. The evidence files (never ``case.json``) go through ``bwdoctor analyze
--format json`` in-process (the host pipeline); the first ``diagnosis`` entry's ``root_cause`` is compared with the
expected one. Negative controls (``-neg-`` in the name or label ``none_env_ok``) are solved when the
diagnosis is empty.

Usage: ``python benchmarks/score_cases.py CASES_DIR [--json] [--verbose] [--only odd|even|NNN,NNN]``
(``--only`` scores a subset by the case folder's leading number: a held-out half, or a list). A calibration
table gives the top-1 accuracy per confidence bucket of the first cause. Exit 0 always (it is a measurement);
``--min-accuracy X`` makes it exit 1 below X or when a negative is blamed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

_MANAGER: Any = None


def analyze(files: list[str]) -> dict[str, Any]:
    """``bwdoctor analyze FILES`` through the host pipeline (parse, judge, remedy, diagnose), redacted."""
    from bwdoctor import pipeline
    from bwdoctor.manager import PluginManager

    global _MANAGER
    if _MANAGER is None:
        _MANAGER = PluginManager()
    request = pipeline.Request(mode="analyze", paths=tuple(files), fail_on="never")
    report = pipeline.redacted(pipeline.build_report(_MANAGER, request))
    return report.to_dict()


def load_cases(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    cases = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        meta_path = d / "case.json"
        if not meta_path.is_file():
            continue
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        cases.append((d, meta))
    return cases


def _selected(name: str, only: str | None) -> bool:
    """``only``: ``odd``/``even`` (by the folder's leading number) or a comma list of numbers."""
    if not only:
        return True
    num = name.split("-", 1)[0]
    if not num.isdigit():
        return False
    if only in ("odd", "even"):
        return int(num) % 2 == (1 if only == "odd" else 0)
    return int(num) in {int(x) for x in only.split(",") if x.strip().isdigit()}


def score(root: Path, verbose: bool = False, only: str | None = None) -> dict[str, Any]:
    rows = []
    for d, meta in load_cases(root):
        if not _selected(d.name, only):
            continue
        expected = str(meta.get("root_cause") or "")
        negative = "-neg-" in d.name or expected == "none_env_ok"
        files = [str(d / f) for f in meta.get("evidence_files") or [] if f != "case.json" and (d / f).is_file()]
        if not files:
            files = [str(p) for p in sorted(d.iterdir()) if p.is_file() and p.name != "case.json"]
        t0 = time.perf_counter()
        error = None
        try:
            report = analyze(files)
            diag = report.get("diagnosis") or []
        except Exception as exc:  # one broken case must not stop the measurement
            diag, report, error = [], {}, f"{type(exc).__name__}: {exc}"
        dt = time.perf_counter() - t0
        got = diag[0]["root_cause"] if diag else "none_env_ok"
        solved = (not diag) if negative else (got == expected)
        row = {"case": d.name, "expected": expected, "got": got, "negative": negative, "solved": solved,
               "confidence": diag[0]["confidence"] if diag else None, "seconds": round(dt, 3),
               "diagnosis": [(x["root_cause"], x["confidence"]) for x in diag], "error": error}
        if verbose:
            row["findings"] = [f"{f['id']} {f['status']} {f.get('root_cause')} {f.get('confidence')}: "
                               f"{f['message'][:160]}" for f in report.get("findings", [])
                               if f.get("status") in ("fail", "warn", "error")]
        rows.append(row)
    pos = [r for r in rows if not r["negative"]]
    neg = [r for r in rows if r["negative"]]
    confusion: dict[str, dict[str, int]] = {}
    for r in rows:
        confusion.setdefault(r["expected"], {}).setdefault(r["got"], 0)
        confusion[r["expected"]][r["got"]] += 1
    return {
        "cases": len(rows),
        "positives": len(pos),
        "positives_correct": sum(r["solved"] for r in pos),
        "top1_accuracy": round(sum(r["solved"] for r in pos) / len(pos), 3) if pos else None,
        "negatives": len(neg),
        "negatives_blamed": sum(not r["solved"] for r in neg),
        "confusion": confusion,
        "total_seconds": round(sum(r["seconds"] for r in rows), 2),
        "calibration": calibration(rows),
        "rows": rows,
    }


# Upper edges of the confidence buckets of the calibration table (the first diagnosis entry's confidence).
BUCKETS = (0.4, 0.55, 0.7, 0.85, 1.0)


def calibration(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Top-1 accuracy per confidence bucket of the first diagnosis entry. A case with an empty diagnosis falls in
    the "none" row (right when it is a negative control); a blamed negative counts as wrong in its bucket."""
    table: list[dict[str, Any]] = []
    lo = 0.0
    for hi in BUCKETS:
        inside = [r for r in rows if r["confidence"] is not None and lo <= r["confidence"] < hi + (hi == 1.0)]
        table.append({"bucket": f"{lo:.2f}-{hi:.2f}", "cases": len(inside), "correct": sum(r["solved"] for r in inside),
                      "accuracy": round(sum(r["solved"] for r in inside) / len(inside), 3) if inside else None,
                      "mean_confidence": round(sum(r["confidence"] for r in inside) / len(inside), 3)
                      if inside else None})
        lo = hi
    empty = [r for r in rows if r["confidence"] is None]
    table.append({"bucket": "none", "cases": len(empty), "correct": sum(r["solved"] for r in empty),
                  "accuracy": round(sum(r["solved"] for r in empty) / len(empty), 3) if empty else None,
                  "mean_confidence": None})
    return table


def render(res: dict[str, Any], verbose: bool = False) -> str:
    lines = []
    for r in res["rows"]:
        mark = "ok " if r["solved"] else "XX "
        lines.append(f"{mark}{r['case'][:60]:60s} expected={r['expected']:30s} got={r['got']:30s} "
                     f"{r['seconds']:.2f}s")
        if r["error"]:
            lines.append(f"      error: {r['error']}")
        if verbose and (not r["solved"] or verbose):
            for d in r["diagnosis"][1:4]:
                lines.append(f"      also: {d[0]} {d[1]}")
            for f in r.get("findings", []):
                lines.append(f"      {f}")
    lines.append("")
    acc = res["top1_accuracy"]
    lines.append(f"positives: {res['positives_correct']}/{res['positives']} top-1 correct "
                 f"({acc * 100 if acc is not None else 0:.1f}%)")
    lines.append(f"negatives: {res['negatives_blamed']}/{res['negatives']} blamed the environment")
    lines.append(f"time: {res['total_seconds']} s for {res['cases']} cases")
    lines.append("")
    lines.append("calibration (confidence of the first cause -> top-1 accuracy):")
    lines.append(f"  {'bucket':10s} {'cases':>5s} {'correct':>7s} {'accuracy':>8s} {'mean conf':>9s}")
    for b in res["calibration"]:
        acc_b = f"{b['accuracy'] * 100:.0f}%" if b["accuracy"] is not None else "-"
        mc = f"{b['mean_confidence']:.2f}" if b["mean_confidence"] is not None else "-"
        lines.append(f"  {b['bucket']:10s} {b['cases']:5d} {b['correct']:7d} {acc_b:>8s} {mc:>9s}")
    lines.append("")
    lines.append("confusion (expected -> got: count):")
    for exp in sorted(res["confusion"]):
        cells = ", ".join(f"{g}: {n}" for g, n in sorted(res["confusion"][exp].items()))
        lines.append(f"  {exp:32s} -> {cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases_dir")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--verbose", "-v", action="store_true", help="show the fail/warn findings of each case")
    ap.add_argument("--min-accuracy", type=float, default=None,
                    help="exit 1 when top-1 accuracy is below this or a negative is blamed")
    ap.add_argument("--only", default=None, metavar="odd|even|N,N",
                    help="score only the cases whose folder number is odd, even, or in the list")
    args = ap.parse_args(argv)
    root = Path(args.cases_dir)
    if not root.is_dir():
        print(f"not a folder: {root}", file=sys.stderr)
        return 2
    res = score(root, verbose=args.verbose, only=args.only)
    print(json.dumps(res, indent=2) if args.json else render(res, args.verbose))
    if args.min_accuracy is not None:
        acc = res["top1_accuracy"] or 0.0
        if acc < args.min_accuracy or res["negatives_blamed"]:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
