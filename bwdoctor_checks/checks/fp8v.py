"""FP4 verification (``BWD-FP8V-004``): what the model asks for (an NVFP4/MXFP4 checkpoint or
quantization flag), what the engine did (vLLM's weight-only Marlin fallback, the FP4/MoE backend
it selected) and what the hardware can do (FP4 tensor cores: datacenter and workstation/GeForce
Blackwell, compute capability 10.x/11.x/12.x, from the knowledge base).

Reads ``log.fp4``, ``log.fp4_mentioned``, ``vllm.config``, ``log.non_default_args``,
``config.requested``, ``vllm``, ``gpu.<i>``, ``target``.
"""

from __future__ import annotations

import re
from typing import Any

from bwdoctor import CheckSpec, Outcome, Snapshot, failed, hookimpl, kb, passed, resolve, warned

FP4_FORMATS = ("mxfp4", "nvfp4", "modelopt_fp4", "w4a4")


def _gpus(snap: Snapshot) -> list[dict[str, Any]]:
    """Each judged GPU (:func:`bwdoctor.resolve.judged_gpus`) with its compute capability and whether
    it has FP4 tensor cores (:func:`bwdoctor.kb.native_fp4`)."""
    out = []
    for j in resolve.judged_gpus(snap, usable_only=False):
        label = j.name or ("target" if j.is_target else f"GPU {j.index}")
        fp4 = bool(j.spec.fp4) if j.spec is not None else bool(kb.native_fp4(j.cc))
        out.append({"label": label, "cc": j.cc, "key": j.key, "fp4": fp4})
    return out


def _asked(snap: Snapshot, entries: list[dict[str, Any]]) -> str | None:
    """The FP4 format the model or configuration asks for (mxfp4, nvfp4, ...), or None."""
    texts = []
    for key in ("vllm.config", "log.non_default_args", "config.requested", "config.serve_args"):
        v = snap.value(key)
        if isinstance(v, dict):
            texts += [str(v.get("quantization") or ""), str(v.get("quantization_config") or ""),
                      str(v.get("model") or "")]
    texts += [str(e.get("format") or "") + " " + str(e.get("text") or "") for e in entries]
    blob = " ".join(texts).lower()
    for fmt in FP4_FORMATS:
        if fmt in blob:
            return "nvfp4" if fmt == "modelopt_fp4" else fmt
    if "fp4" in blob or snap.value("log.fp4_mentioned"):
        return "fp4"
    return None


def _vllm_version(snap: Snapshot) -> str | None:
    v = snap.value("vllm")
    ver = v.get("version") if isinstance(v, dict) else None
    if not ver:
        cfg = snap.value("vllm.config")
        ver = cfg.get("version") if isinstance(cfg, dict) else None
    return str(ver) if ver else None


def check_fp4_log(snap: Snapshot) -> Outcome | None:
    v = snap.value("log.fp4")
    entries = [e for e in (v if isinstance(v, list) else []) if isinstance(e, dict)]
    fallback = [e for e in entries if e.get("kind") == "marlin_fallback"
                or (e.get("kind") == "backend" and "marlin" in str(e.get("backend", "")).lower())]
    if not entries:
        return None
    fmt = _asked(snap, entries)
    what = (fmt or "FP4").upper()
    gpus = _gpus(snap)
    ver = _vllm_version(snap)
    built = f"vLLM {ver}" if ver else "this vLLM build"
    where = "; ".join(f"line {e.get('line')}: {str(e.get('text', ''))[:160]}" for e in fallback[:2])
    ev = ["log.fp4"] + [g["key"] for g in gpus] + [k for k in ("vllm.config", "vllm") if snap.has(k)]
    details: dict[str, Any] = {"format": fmt, "fallback_lines": [e.get("line") for e in fallback],
                               "gpus": [{"name": g["label"], "compute_capability": g["cc"], "fp4": g["fp4"]}
                                        for g in gpus], "vllm_version": ver}
    if not fallback:
        chosen = ", ".join(sorted({str(e.get("backend")) for e in entries if e.get("backend")}))
        return passed(f"The engine runs {what} through {chosen or 'a native FP4 backend'} (no Marlin fallback)",
                      evidence=ev)
    capable = [g for g in gpus if g["fp4"]]
    if capable:
        g = capable[0]
        return failed(
            f"The {g['label']} (compute capability {g['cc']}) has FP4 tensor cores, but {built} fell back to the "
            f"weight-only Marlin kernel for the {what} quantization ({where}): its {what} backends have no native "
            f"kernels for sm_{g['cc'].replace('.', '')} (support for that architecture came later, or only SM100 is "
            f"matched). The environment's kernel coverage is the cause, not the model: install a vLLM release with "
            f"native {what} kernels for this GPU.", evidence=ev, root_cause="fp4_kernel_arch_mismatch",
            remedies=["vllm.install-supported"], confidence=0.85, details=details)
    if gpus:
        g = gpus[0]
        return warned(
            f"{g['label']} (compute capability {g['cc']}) has no FP4 tensor cores, so running {what} weights as "
            f"weight-only FP4 through the Marlin kernel ({where}) is vLLM's designed path on this GPU: expected "
            f"behaviour, not an environment fault (memory is saved, compute is not faster).", evidence=ev,
            root_cause="none_env_ok", remedies=[], confidence=0.3, details=details)
    return warned(
        f"{built} ran {what} as weight-only Marlin ({where}); whether the GPU has FP4 tensor cores is not in the "
        f"evidence: paste nvidia-smi. On Blackwell (CC 10.x/12.x) this is a kernel-coverage gap of the build; on "
        f"older GPUs it is the expected path.", evidence=ev, root_cause="fp4_kernel_arch_mismatch",
        remedies=["vllm.install-supported"], confidence=0.5, details=details)


def _check_text(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


@hookimpl
def bwdoctor_checks() -> list[CheckSpec]:
    return [
        CheckSpec(
            id="BWD-FP8V-004", title="FP4 runs on native kernels where the GPU has FP4 tensor cores",
            func=check_fp4_log, needs=["log.fp4"], tags=["fp4", "log", "gpu"],
            root_cause="fp4_kernel_arch_mismatch", remedies=["vllm.install-supported"], confidence=0.85,
            doc=_check_text(
                "Reads what the engine did with an FP4 (NVFP4/MXFP4) checkpoint: vLLM's marlin_utils_fp4 warning "
                "('does not have native support for FP4 ... Weight-only FP4 compression ... Marlin'), a description "
                "of that fallback, and the FP4/MoE backend lines ('Using Marlin backend' from the MXFP4 method). "
                "On a GPU with FP4 tensor cores (Blackwell, knowledge base) a Marlin fallback fails: the build has no "
                "native FP4 kernels for the architecture (fp4_kernel_arch_mismatch). On a GPU without FP4 (Hopper "
                "and older) it is the designed weight-only path: a warning with no environment root cause. With no "
                "GPU in the evidence it says what is missing (nvidia-smi)."),
        ),
    ]
