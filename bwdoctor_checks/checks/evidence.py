"""What the evidence given to ``analyze`` could not tell, and where it disagrees with itself
(BWD-EVID). Pure: reads the snapshot only."""

from __future__ import annotations

from typing import Any

from bwdoctor import CheckSpec, Snapshot, hookimpl, passed, skipped, warned

# (fact keys, what is missing, what to paste)
_WANTED = (
    (("gpu.*", "target"), "no GPU model", "nvidia-smi (or nvidia-smi -L)"),
    (("driver.version", "driver.cuda_version"), "no driver version", "nvidia-smi"),
    (("vllm",), "no vLLM version", "vllm collect-env (or pip show vllm, or the image tag)"),
    (("torch",), "no torch build", "python -m torch.utils.collect_env (or pip list)"),
)


def _analyzing(snap: Snapshot) -> bool:
    return bool(snap.meta.get("evidence")) and not snap.has("nvml.status")


def check_missing(snap: Snapshot) -> Any:
    if not _analyzing(snap):
        return skipped("not reading evidence files: the live machine was examined")
    gaps = [(what, paste) for keys, what, paste in _WANTED if not any(snap.has(k) for k in keys)]
    if not gaps:
        return passed("the evidence names the GPU, the driver, vLLM and torch")
    pastes: list[str] = []
    for _, p in gaps:
        if p not in pastes:
            pastes.append(p)
    return warned(f"{'; '.join(w for w, _ in gaps)} in the evidence, so the checks that need them could not judge "
                  f"the environment: paste {' and '.join(pastes)}", severity="low", root_cause=None,
                  details={"missing": [w for w, _ in gaps], "paste": pastes})


def check_conflicts(snap: Snapshot) -> Any:
    rows = snap.meta.get("conflicts")
    if not isinstance(rows, list) or not rows:
        return passed("no two sources in the evidence disagree") if _analyzing(snap) else \
            skipped("not reading evidence files")
    shown = [f"{r.get('key')}: {r.get('kept')} ({r.get('kept_source')}) vs {r.get('other')} ({r.get('other_source')})"
             for r in rows[:6] if isinstance(r, dict)]
    return warned(f"{len(rows)} fact(s) disagree between sources; the more direct source is judged: "
                  + "; ".join(shown) + ("; ..." if len(rows) > 6 else ""), severity="low", root_cause=None,
                  details={"conflicts": rows[:50]})


@hookimpl
def bwdoctor_checks() -> list[CheckSpec]:
    return [
        CheckSpec(id="BWD-EVID-001", title="The evidence names the GPU, driver, vLLM and torch", func=check_missing,
                  tags=["evidence"],
                  doc="When analyze reads evidence files, says which of the facts most checks need (GPU model, "
                      "driver version, vLLM version, torch build) no file gave, and what to paste to get them "
                      "(nvidia-smi, vllm collect-env, pip list). A missing fact is never taken as a problem of the "
                      "machine. No automatic remedy: the fix is more evidence."),
        CheckSpec(id="BWD-EVID-002", title="The sources in the evidence agree", func=check_conflicts,
                  tags=["evidence"],
                  doc="Facts read from several places (a tool's output, what a person wrote, what the knowledge base "
                      "infers) are ranked: a tool's output wins over prose, prose over inference. Lists the facts "
                      "whose sources disagree (a torch version stated in the text and another in pip list, a driver "
                      "from another machine), with both values and where each came from. No automatic remedy: "
                      "it tells which statement to re-check."),
    ]
