"""The one-line answer of a report: ready, not ready, or could not tell, and why.

* **not ready**: a check failed. The reason is the environment itself when the inspected
  environment cannot serve at all (no vLLM, a CPU build), else the most likely root cause
  (the diagnosis), else the most severe failure.
* **could not tell**: nothing failed, but a check broke (``error``), or the checks that decide
  whether vLLM can run on the GPU (torch's and vLLM's kernels for it) could not judge, usually for
  lack of a GPU or of a ``--target``; the reason says what was missing.
* **ready**: nothing failed and those checks passed (warnings are counted in the reason).

With ``--select`` limiting the run to other checks, the selected checks decide: ready when at
least one of them passed and none failed.

:func:`enforce_requests` turns a check the user asked for (``--select ID``, ``--smoke``,
``--endpoint``) that could not run into a failure, so that a CI gate never passes on a skip.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

READY, NOT_READY, UNKNOWN = "ready", "not ready", "could not tell"
VERDICTS = (READY, NOT_READY, UNKNOWN)

ENVIRONMENT_CHECK = "BWD-STACK-011"
DECISIVE = ("BWD-STACK-011", "BWD-STACK-001", "BWD-STACK-002")
"""The checks whose answers make a run's "ready": the environment has vLLM and CUDA torch, and both
carry kernels for the GPU judged."""

SMOKE_REQUIRED = ("BWD-SMOKE-001",)
ENDPOINT_REQUIRED = ("BWD-EP-001", "BWD-EP-002", "BWD-EP-003")
_SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}


def _get(f: Any, name: str, default: Any = None) -> Any:
    return f.get(name, default) if isinstance(f, dict) else getattr(f, name, default)


def _key(f: Any) -> str:
    subject = _get(f, "subject")
    return f"{_get(f, 'id')}[{subject}]" if subject else str(_get(f, "id"))


def normalize_id(token: str) -> str | None:
    """``BWD-GPU-001`` for ``gpu-001`` / ``BWD-GPU-001`` / ``bwd-gpu-001``; None for a prefix or tag."""
    import re

    up = token.strip().upper()
    if not up.startswith("BWD-"):
        up = "BWD-" + up
    return up if re.fullmatch(r"BWD-[A-Z][A-Z0-9]{1,11}-\d{3}", up) else None


def enforce_requests(findings: Iterable[Any], select: Sequence[str] = (), smoke: bool = False,
                     endpoint: str | None = None) -> list[Any]:
    """The findings with a check the user asked for that could not run (skipped for lack of the
    facts it needs, ``details.missing``) turned into a ``fail`` that says so
    (``details.requested_by``): a check named with ``--select``, the smoke generation with
    ``--smoke``, the endpoint checks with ``--endpoint``. A check that ran and found nothing to
    judge ("neither torchvision nor torchaudio is installed") did run."""
    asked: dict[str, str] = {}
    for token in select:
        cid = normalize_id(token)
        if cid:
            asked[cid] = f"--select {token}"
    if smoke:
        for cid in SMOKE_REQUIRED:
            asked.setdefault(cid, "--smoke")
    if endpoint:
        for cid in ENDPOINT_REQUIRED:
            asked.setdefault(cid, "--endpoint")
    out = list(findings)
    judged = {str(_get(f, "id")) for f in out if _get(f, "status") != "skip"}
    for f in out:
        by = asked.get(str(_get(f, "id")))
        missing = (_get(f, "details") or {}).get("missing")
        if by and _get(f, "status") == "skip" and str(_get(f, "id")) not in judged and missing:
            f.details = {**(f.details or {}), "requested_by": by, "skip_reason": f.message}
            f.message = f"asked for with {by}, but it could not run: {f.message}"
            f.status = "fail"
            f.severity = "high"
    return out


def _worst(findings: list[Any]) -> Any:
    return sorted(findings, key=lambda f: (_SEVERITY_RANK.get(str(_get(f, "severity")), 5), _key(f)))[0]


def _more(n: int, what: str) -> str:
    return f" (+{n} more {what}{'s' if n > 1 else ''})" if n > 0 else ""


def compute(findings: Sequence[Any], diagnosis: Sequence[Any] = (), mode: str = "live",
            options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"status", "reason", "findings"}`` for a report's findings (see the module's documentation)."""
    options = options or {}
    fails = [f for f in findings if _get(f, "status") == "fail"]
    errors = [f for f in findings if _get(f, "status") == "error"]
    warns = [f for f in findings if _get(f, "status") == "warn"]
    if fails:
        env = [f for f in fails if _get(f, "id") == ENVIRONMENT_CHECK]
        if env:
            reason = str(_get(env[0], "message"))
            keys = [_key(f) for f in env]
        elif diagnosis:
            top = diagnosis[0]
            reason = f"{_get(top, 'root_cause')}: {_get(top, 'summary')}"
            keys = [str(k) for k in (_get(top, "findings") or [])]
        else:
            worst = _worst(fails)
            reason = str(_get(worst, "message"))
            keys = [_key(worst)]
        others = len(fails) - len([k for k in keys if any(_key(f) == k for f in fails)])
        return {"status": NOT_READY, "reason": reason + _more(others, "failure"), "findings": keys}
    if errors:
        worst = errors[0]
        return {"status": UNKNOWN, "reason": f"a check or plugin broke: {_get(worst, 'message')}"
                + _more(len(errors) - 1, "error"), "findings": [_key(f) for f in errors]}
    warned = f"; {len(warns)} warning{'s' if len(warns) != 1 else ''}" if warns else ""
    decisive = [f for f in findings if _get(f, "id") in DECISIVE]
    if decisive:
        # the environment check skips for evidence files: no environment was inspected, nothing open
        open_ = [f for f in decisive if _get(f, "status") == "skip" and _get(f, "id") != ENVIRONMENT_CHECK]
        if open_:
            first = sorted(open_, key=lambda f: DECISIVE.index(str(_get(f, "id"))))[0]
            return {"status": UNKNOWN, "reason": f"{_get(first, 'message')}, so '{_get(first, 'title')}' could not "
                    "be judged",
                    "findings": [_key(f) for f in open_]}
        judged = sorted({str(_get(f, "id")) for f in decisive if _get(f, "status") != "skip"})
        if not judged:
            return {"status": UNKNOWN, "reason": "nothing failed, but nothing shows whether the installed torch and "
                    f"vLLM have kernels for the GPU{warned}", "findings": []}
        if set(judged) >= {"BWD-STACK-001", "BWD-STACK-002"}:
            what = "the installed torch and vLLM have kernels for the GPU judged and no check failed"
        else:
            what = "no check failed (" + ", ".join(judged) + " passed)"
        return {"status": READY, "reason": what + warned, "findings": []}
    judged_any = [f for f in findings if _get(f, "status") in ("pass", "warn")]
    selected = bool(options.get("select"))
    if judged_any and (selected or mode not in ("live", "from", "analyze")):
        return {"status": READY, "reason": f"the {len(judged_any)} selected check result(s) passed{warned}",
                "findings": []}
    skips = [f for f in findings if _get(f, "status") == "skip"]
    if not findings:
        return {"status": UNKNOWN, "reason": "no check ran", "findings": []}
    if not judged_any:
        reason = _common_reason(skips)
        return {"status": UNKNOWN, "reason": f"no check could judge anything: {reason}", "findings": []}
    what = "the evidence" if mode == "analyze" else "the facts"
    return {"status": UNKNOWN, "reason": f"nothing failed, but {what} do not show whether the installed torch and "
            f"vLLM have kernels for the GPU{warned}", "findings": []}


def _common_reason(skips: list[Any]) -> str:
    counts: dict[str, int] = {}
    for f in skips:
        counts[str(_get(f, "message"))] = counts.get(str(_get(f, "message")), 0) + 1
    if not counts:
        return "nothing was checked"
    return max(counts.items(), key=lambda kv: kv[1])[0]


def headline(v: dict[str, Any]) -> str:
    """``NOT READY: vLLM is not installed ...`` (plain text, one line)."""
    return f"{str(v.get('status', UNKNOWN)).upper()}: {v.get('reason', '')}"
