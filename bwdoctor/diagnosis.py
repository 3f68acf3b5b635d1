"""Rank findings into root causes: the report's top-level ``diagnosis``.

``diagnose(findings)`` groups the fail/warn findings that carry a root-cause label, combines the
evidence for each label and orders the labels by how strongly the evidence proves them:

* a finding's weight is its confidence (how strongly the check's failure proves its root cause:
  ~0.9 when the environment itself proves it, e.g. the GPU's compute capability is missing from the
  wheel's arch list; ~0.5 when an error message merely resembles the class), scaled by its status
  (a ``warn`` counts less than a ``fail``);
* several findings for the same label reinforce each other with diminishing returns (the strongest
  counts fully, each further one closes part of the remaining gap), so a stack of weak log
  resemblances does not outrank one environment proof;
* findings from checks that judge the environment (GPU, driver, stack, config) break ties ahead of
  log-signature findings;
* a ``warn`` of ``low`` severity is a check saying it could not conclude (an unknown GPU, a
  companion package whose build is unknown): it counts only a fraction, so an inconclusive check
  with a high spec confidence does not name a cause on its own.

Labels ``none_env_ok`` and findings without a label never appear: an empty list means the evidence
shows no environment problem.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bwdoctor.types import ROOT_CAUSES, Diagnosis, Finding

STATUS_WEIGHT = {"fail": 1.0, "warn": 0.6}
DEFAULT_CONFIDENCE = 0.5
# Areas whose checks read log/error text rather than proving the environment.
EVIDENCE_AREAS = {"LOG", "SMOKE"}
MIN_CONFIDENCE = 0.25  # below this a cause is too weakly supported to name
REINFORCE = 0.35  # share of the remaining gap each further finding for the same cause closes
LOW_WARN = 0.35  # factor for a low-severity warn (the check could not conclude)


def _get(f: Any, name: str, default: Any = None) -> Any:
    if isinstance(f, dict):
        return f.get(name, default)
    return getattr(f, name, default)


def _key(f: Any) -> str:
    fid = str(_get(f, "id", "") or "")
    subject = _get(f, "subject")
    return f"{fid}[{subject}]" if subject else fid


def _weight(f: Any) -> float:
    conf = _get(f, "confidence")
    try:
        conf = float(conf) if conf is not None else DEFAULT_CONFIDENCE
    except (TypeError, ValueError):
        conf = DEFAULT_CONFIDENCE
    conf = min(max(conf, 0.0), 1.0)
    status = str(_get(f, "status", ""))
    w = conf * STATUS_WEIGHT.get(status, 0.0)
    if status == "warn" and str(_get(f, "severity", "") or "").lower() == "low":
        w *= LOW_WARN
    return w


def diagnose(findings: Iterable[Finding | dict[str, Any]]) -> list[Diagnosis]:
    """``[{"root_cause", "confidence", "findings": [ids], "summary"}, ...]``, most likely first."""
    groups: dict[str, list[tuple[float, Any]]] = {}
    for f in findings or []:
        try:
            status = str(_get(f, "status", ""))
            cause = _get(f, "root_cause")
            if status not in STATUS_WEIGHT or not cause or cause == "none_env_ok" or cause not in ROOT_CAUSES:
                continue
            w = _weight(f)
            if w <= 0:
                continue
            groups.setdefault(str(cause), []).append((w, f))
        except Exception:  # a malformed finding must not break the report
            continue
    out: list[tuple[tuple[float, int, int], Diagnosis]] = []
    for cause, items in groups.items():
        items.sort(key=lambda t: (-t[0], _key(t[1])))
        score = items[0][0]
        for w, _ in items[1:]:
            score += (1.0 - score) * w * REINFORCE
        score = min(score, 0.99)
        if score < MIN_CONFIDENCE:
            continue
        env_backed = any(str(_get(f, "area", "") or "").upper() not in EVIDENCE_AREAS for _, f in items)
        fails = sum(1 for _, f in items if _get(f, "status") == "fail")
        ids: list[str] = []
        for _, f in items:
            k = _key(f)
            if k not in ids:
                ids.append(k)
        best = items[0][1]
        summary = str(_get(best, "message", "") or _get(best, "title", "") or cause)
        if len(items) > 1:
            summary += f" (+{len(items) - 1} more finding{'s' if len(items) > 2 else ''} agree)"
        entry: Diagnosis = {"root_cause": cause, "confidence": round(score, 2), "findings": ids,
                            "summary": summary[:600]}
        out.append(((round(score, 2), int(env_backed), fails), entry))
    out.sort(key=lambda t: (-t[0][0], -t[0][1], -t[0][2], t[1]["root_cause"]))
    return [entry for _, entry in out]


__all__ = ["diagnose"]
