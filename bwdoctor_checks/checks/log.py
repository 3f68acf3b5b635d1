"""Checks on what logs and pasted evidence show: error signatures and the environment classes
that the GPU/driver, stack and config checks do not judge (WSL2, MIG, NCCL version / P2P / env,
shared memory, container runtime, memory contention, GPU health, KV cache sizing, attention backend,
dtype and FP8/FP4 support).

A message that *resembles* a class (``no kernel image`` with nothing else known) gets a moderate
confidence; where other facts confirm it (the GPU's compute capability against PyTorch's arch
list printed in the same log, NCCL's CUDA build against the runtime) the confidence rises.
Failures whose message names no environment class carry no root cause (``BWD-LOG-014``), so a
crash inside vLLM or the model does not blame the machine.

Reads: ``log.errors``, ``log.kv_cache``, ``log.fp4_mentioned``, ``log.mig``, ``log.nccl``,
``log.cuda_runtime``, ``vllm.config``, ``vllm``, ``torch``, ``toolkit.nvcc``, ``nccl.version``,
``gpu.<i>``, ``gpu.count``, ``target``, ``host.wsl``, ``host.shm_bytes``, ``host.env``,
``host.gpu_topology``, ``container.cuda_version``, ``log.non_default_args``.
"""

from __future__ import annotations

import re
from typing import Any

from bwdoctor import CheckSpec, Outcome, Snapshot, failed, hookimpl, kb, passed, resolve, warned
from bwdoctor.kb import signatures as sigtable
from bwdoctor.kb import vllm as kbv
from bwdoctor.redact import redact_text
from bwdoctor_checks._lib.compat import recommended_release
from bwdoctor_checks._lib.textutil import (
    arch_requirements,
    gpu_spec,
    version_tuple,
)

LOG_NEEDS = ["log.errors"]  # present only when some evidence file shows a recognised failure

# Decode speed (tokens/s, whole engine) below which a GPU is not working normally: one request on the smallest
# supported GPU and a 70B-class model in 4-bit still decodes at several tokens/s (vLLM's own metrics lines).
SLOW_DECODE_TPS = 2.0


# --------------------------------------------------------------------------- helpers


def _errors(snap: Snapshot, *names: str) -> list[dict[str, Any]]:
    by_file = snap.value("log.errors_by_file")
    errs: list[Any] = []
    if isinstance(by_file, dict) and by_file:
        for lst in by_file.values():
            if isinstance(lst, list):
                errs.extend(lst)
    else:
        lst = snap.value("log.errors") or []
        errs = lst if isinstance(lst, list) else []
    return [e for e in errs if isinstance(e, dict) and (not names or e.get("signature") in names)]


def _first(errs: list[dict[str, Any]]) -> str:
    e = errs[0]
    text = str(e.get("text", ""))
    return f"line {e.get('line')}: {redact_text(text)[:200]}"


def _gpu_ccs(snap: Snapshot) -> list[tuple[int, int]]:
    """The judged GPUs' capabilities (:func:`bwdoctor.resolve.judged_gpus`); when no ``gpu.<i>`` says,
    the capability a torch arch warning in the log names comes before the ``--target``."""
    judged = resolve.judged_gpus(snap, usable_only=False)
    out = [t for j in judged if not j.is_target and (t := resolve.cc_tuple(j.cc))]
    if not out:
        for e in _errors(snap, "torch_arch_unsupported"):
            cc = resolve.cc_tuple(e.get("compute_capability"))
            if cc:
                out.append(cc)
    if not out:
        out = [t for j in judged if j.is_target and (t := resolve.cc_tuple(j.cc))]
    return out


def _gpu_evidence(snap: Snapshot) -> list[str]:
    keys = [k for k in snap.keys("gpu.") if k.split(".")[1].isdigit()][:4]
    return keys + (["target"] if snap.has("target") else [])


def _vllm_version(snap: Snapshot) -> tuple[int, ...] | None:
    v = snap.value("vllm")
    ver = v.get("version") if isinstance(v, dict) else None
    if not ver:
        cfg = snap.value("vllm.config")
        ver = cfg.get("version") if isinstance(cfg, dict) else None
    return version_tuple(ver)


def _torch_cuda(snap: Snapshot) -> str | None:
    t = snap.value("torch")
    if isinstance(t, dict) and t.get("cuda"):
        return str(t["cuda"])
    return None


def _runtime_cuda(snap: Snapshot) -> tuple[int, ...] | None:
    for key in ("log.cuda_runtime", "container.cuda_version"):
        v = snap.value(key)
        if v:
            return version_tuple(str(v))
    tc = _torch_cuda(snap)
    return version_tuple(tc) if tc else None


def _tp(snap: Snapshot) -> int:
    best = 1
    for key in ("vllm.config", "log.non_default_args", "config.serve_args"):
        v = snap.value(key)
        if isinstance(v, dict):
            for k in ("tensor_parallel_size", "pipeline_parallel_size"):
                try:
                    best = max(best, int(v.get(k) or 1))
                except (TypeError, ValueError):
                    continue
    return best


def _gpu_count(snap: Snapshot) -> int:
    try:
        n = int(snap.value("gpu.count") or 0)
    except (TypeError, ValueError):
        n = 0
    ranks = snap.mapping("log.nccl").get("ranks")
    hint = snap.value("log.parallel_hint")
    extra = [v for v in (ranks, hint) if isinstance(v, int)]
    return max([n, len(snap.gpus())] + extra)


def _quant(snap: Snapshot) -> str:
    parts = []
    for key in ("vllm.config", "log.non_default_args"):
        v = snap.value(key)
        if isinstance(v, dict):
            parts.append(str(v.get("quantization") or ""))
            parts.append(str(v.get("quantization_config") or ""))
            parts.append(str(v.get("model") or ""))
    return " ".join(parts).lower()


def _fp4_context(snap: Snapshot, err: dict[str, Any] | None = None) -> bool:
    if snap.value("log.fp4_mentioned"):
        return True
    if any(kb.quant_kind(part) == "fp4" for part in _quant(snap).split()):
        return True
    if err is not None and any(m in str(err.get("kernel", "")).lower() for m in ("fp4", "nvfp4", "mxfp4")):
        return True
    return False


def _has_nvlink(snap: Snapshot) -> bool | None:
    topo = snap.value("host.gpu_topology")
    if isinstance(topo, dict) and "nvlink" in topo:
        return bool(topo["nvlink"])
    known = []
    for _, g in snap.gpus():
        spec = gpu_spec(name=g.get("name"), key=g.get("kb_key"))
        if spec is not None:
            known.append(bool(getattr(spec, "nvlink", False)))
    if known:
        return any(known)
    return None


def _out(status: str, msg: str, evidence: list[str], conf: float, cause: str | None = None,
         remedies: list[str] | None = None, **details: Any) -> Outcome:
    kw: dict[str, Any] = {"confidence": round(min(max(conf, 0.05), 0.99), 2), "details": details}
    if cause is not None:
        kw["root_cause"] = cause
    if remedies is not None:
        kw["remedies"] = remedies
    return (failed if status == "fail" else warned)(msg, evidence=evidence, **kw)


# --------------------------------------------------------------------------- arch: torch / vLLM


def _torch_arch_gap(snap: Snapshot) -> tuple[str, list[str]] | None:
    """Why PyTorch lacks the GPU's arch, from the evidence, or None."""
    sig = _errors(snap, "torch_arch_unsupported")
    if sig:
        e = sig[0]
        return (f"PyTorch itself reports that {e.get('gpu_name') or 'the GPU'} ({e.get('sm')}) is not in its compiled "
                f"architectures ({_first(sig)})"), ["log.errors", "torch"]
    torch = snap.value("torch")
    ccs = _gpu_ccs(snap)
    if isinstance(torch, dict) and ccs:
        archs = torch.get("arch_list")
        if isinstance(archs, list) and archs:
            majors = set()
            for a in archs:
                m = re.match(r"sm_(\d+)", str(a))
                if m:
                    majors.add(int(m.group(1)) // 10)
            missing = [cc for cc in ccs if cc[0] not in majors]
            if missing:
                cc = missing[0]
                return (f"PyTorch's arch list {' '.join(archs)} has no sm_{cc[0]}x kernels for the GPU's compute "
                        f"capability {cc[0]}.{cc[1]}"), ["torch"] + _gpu_evidence(snap)
        variant = str(torch.get("variant") or "")
        cuda = version_tuple(torch.get("cuda"))
        if variant.startswith("cu") and cuda:
            for cc in ccs:
                req = arch_requirements(f"{cc[0]}.{cc[1]}")
                min_cuda = version_tuple(getattr(req, "min_cuda", None)) if req is not None else None
                if min_cuda and cuda < min_cuda:
                    return (f"torch {torch.get('version')} is built with CUDA {torch.get('cuda')}, older than CUDA "
                            f"{'.'.join(map(str, min_cuda))} that compute capability {cc[0]}.{cc[1]} needs, so it "
                            f"has no kernels for this GPU"), ["torch"] + _gpu_evidence(snap)
    return None


def _torch_covers(snap: Snapshot) -> bool:
    """True when the torch build in the evidence is known to carry kernels for every GPU shown."""
    torch = snap.value("torch")
    variant = str(torch.get("variant") or "") if isinstance(torch, dict) else ""
    ccs = _gpu_ccs(snap)
    if not variant.startswith("cu") or not ccs:
        return False
    for cc in ccs:
        req = arch_requirements(f"{cc[0]}.{cc[1]}")
        if req is None or variant not in tuple(getattr(req, "torch_cuda_variants", ()) or ()):
            return False
    return True


def check_torch_arch(snap: Snapshot) -> Outcome | None:
    gap = _torch_arch_gap(snap)
    nki = _errors(snap, "no_kernel_image")
    stated = _errors(snap, "torch_arch_stated")
    if gap is None and stated and not _torch_covers(snap):
        return _out("fail", f"The report says the installed PyTorch does not support the GPU ({_first(stated)})"
                    + (f"; the log fails with 'no kernel image' ({_first(nki)})" if nki else ""),
                    ["log.errors", "torch"] + _gpu_evidence(snap), 0.7 if nki else 0.55,
                    remedies=["torch.reinstall-cuda-variant"])
    if gap is None:
        return None
    msg, ev = gap
    conf = 0.9 if _errors(snap, "torch_arch_unsupported") else (0.85 if nki else 0.75)
    if nki:
        msg += f"; the log then fails with 'no kernel image' ({_first(nki)})"
    return _out("fail", msg, ev, conf, remedies=["torch.reinstall-cuda-variant"])


def _vllm_span(snap: Snapshot, cc: tuple[int, int]) -> Any:
    """The knowledge base's inclusive vLLM release range for a capability on the judged host."""
    return kb.vllm_range(cc, resolve.host_platform(snap))


def _built_for(snap: Snapshot, cc: tuple[int, int], vver: tuple[int, ...] | None) -> bool:
    """Whether the vLLM in use (every release when its version is unknown) has kernels for ``cc``."""
    rng = _vllm_span(snap, cc)
    if rng is None or rng.first is None:
        return False
    if vver:
        return rng.contains(".".join(map(str, vver))) is True
    return rng.first == kbv.known_versions()[0] and rng.last is None


# NVLink link counts that only SXM datacenter boards have (nvidia-smi topo -m "NV12"/"NV18"): A100 SXM has 12
# NVLink 3 links; H100/H200 SXM 18 NVLink 4 links; B200/B300 18 NVLink 5 links (NVIDIA product briefs).


def _possible_ccs(snap: Snapshot) -> tuple[list[tuple[int, int]], str]:
    """The GPUs' compute capabilities, or the ones the NVLink topology allows, with where they come from."""
    ccs = _gpu_ccs(snap)
    if ccs:
        return ccs, "the GPU"
    topo = snap.value("host.gpu_topology")
    kinds = topo.get("kinds") if isinstance(topo, dict) else None
    for kind in kinds or []:
        links = str(kind)[2:] if str(kind).startswith("NV") else ""
        allowed = kb.ccs_with_nvlink_links(int(links)) if links.isdigit() else ()
        if allowed:
            ccs = [t for cc in allowed if (t := resolve.cc_tuple(cc))]
            return ccs, f"the {kind} NVLink topology (an SXM datacenter board)"
    return [], ""


def _stack_covers(snap: Snapshot) -> str | None:
    """Why the installed torch and vLLM both carry kernels for every GPU the evidence allows, or None when that is
    not shown (a GPU, torch's CUDA variant and the vLLM version are all needed)."""
    ccs, origin = _possible_ccs(snap)
    torch = snap.value("torch")
    variant = str(torch.get("variant") or "") if isinstance(torch, dict) else ""
    vver = _vllm_version(snap)
    if not ccs or not variant.startswith("cu") or not vver:
        return None
    for cc in ccs:
        req = arch_requirements(f"{cc[0]}.{cc[1]}")
        if req is None or variant not in tuple(getattr(req, "torch_cuda_variants", ()) or ()):
            return None
        rng = _vllm_span(snap, cc)
        if rng is None or rng.contains(".".join(map(str, vver))) is not True:
            return None
    shown = ", ".join(f"{a}.{b}" for a, b in ccs)
    return (f"{origin} (compute capability {shown}), torch {torch.get('version') or variant} ({variant}) and vLLM "
            f"{'.'.join(map(str, vver))} all cover this architecture")


def _install_instead(snap: Snapshot) -> str:
    """``"; install vLLM 0.33.0, ..."``: the release the fix installs."""
    rec, why = recommended_release(snap)
    return f"; install vLLM {rec}, {why}" if rec else ""


def check_vllm_arch(snap: Snapshot) -> Outcome | list[Outcome] | None:
    out: list[Outcome] = []
    nki = _errors(snap, "no_kernel_image")
    ccs = _gpu_ccs(snap)
    vver = _vllm_version(snap)
    covered = _stack_covers(snap) if nki and _torch_arch_gap(snap) is None else None
    if covered:
        # the environment contradicts the text: a kernel built for the wrong arch inside a release, not a missing arch
        out.append(_out("warn", f"'no kernel image is available' ({_first(nki)}), but {covered}: likely a kernel bug "
                                f"(a kernel compiled for the wrong arch variant) in vLLM or a kernel library, not the "
                                f"environment", ["log.errors", "torch", "vllm"] + _gpu_evidence(snap), 0.3,
                        cause="none_env_ok", remedies=[]))
    elif nki and _torch_arch_gap(snap) is None and not snap.has("torch") and not _errors(snap, "torch_arch_stated") \
            and any(cc >= (10, 0) for cc in ccs) and not _vllm_image(snap):
        # torch's kernels run before vLLM's: with the torch build unknown on a GPU newer than older CUDA 12 builds
        # cover, torch is the likelier owner of the missing kernel
        out.append(_out("fail", f"'no kernel image is available' ({_first(nki)}) on compute capability "
                                f"{ccs[0][0]}.{ccs[0][1]}, with no torch build in the evidence: torch's kernels run "
                                f"first, and torch builds before CUDA 12.8 have none for this GPU (paste pip list / "
                                f"collect_env to tell torch from vLLM)", ["log.errors"] + _gpu_evidence(snap), 0.55,
                        cause="arch_not_in_torch_wheel", remedies=["torch.reinstall-cuda-variant"]))
    elif nki and _torch_arch_gap(snap) is None:
        conf = 0.55
        why = "no torch arch gap is shown, so the missing kernel is most likely in vLLM's compiled extensions"
        for cc in ccs:
            rng = _vllm_span(snap, cc)
            vtext = ".".join(map(str, vver)) if vver else None
            if cc < (7, 0):
                conf, why = 0.85, f"compute capability {cc[0]}.{cc[1]} is below what vLLM builds for (7.0)"
            elif rng is not None and rng.first and vtext and resolve.at_least(vtext, rng.first) is False:
                conf = 0.85
                why = (f"vLLM {vtext} predates the first release with sm_{cc[0]}{cc[1]} kernels ({rng.first})"
                       + _install_instead(snap))
            elif rng is not None and rng.last and vtext and resolve.compare(vtext, rng.last) == 1:
                conf = 0.85
                why = (f"vLLM {vtext} is later than {rng.last}, the last release with sm_{cc[0]}{cc[1]} kernels"
                       + _install_instead(snap))
            elif rng is not None and rng.first and rng.first != kbv.known_versions()[0] and vtext:
                conf = 0.45
        out.append(_out("fail", f"'no kernel image is available' ({_first(nki)}): {why}",
                        ["log.errors", "vllm"] + _gpu_evidence(snap), conf))
    elif not nki:
        old = [cc for cc in _gpu_ccs(snap) if cc < (7, 0)]
        if old and not _cpu_build(snap):
            # no vLLM CUDA build (wheel or image) has ever carried SASS below sm_70 (facts.md 2e)
            cc = old[0]
            # an explicit failure of another class (bf16 refused, driver too old) fails before any kernel runs:
            # that message names the first problem, this inference the next one
            other = [e for e in _errors(snap) if e.get("env_class") and e.get("env_class") not in ("arch", "kernel")]
            out.append(_out("fail", f"The GPU's compute capability {cc[0]}.{cc[1]} is below 7.0, the oldest "
                                    f"architecture vLLM's CUDA builds carry kernels for: its compiled extensions "
                                    f"cannot run here", ["vllm"] + _gpu_evidence(snap), 0.6 if other else 0.8))
    for e in _errors(snap, "no_compiled_kernel"):
        if _fp4_context(snap, e):
            continue
        cap = e.get("capability")
        found = resolve.cc_tuple(cap) if isinstance(cap, int) and not isinstance(cap, bool) else None
        if found is None:
            continue
        cc = found
        if _built_for(snap, cc, vver):
            # vLLM is built for this arch: a dispatch gap inside vLLM, not the environment
            out.append(_out("warn", f"vLLM has no '{e.get('kernel')}' kernel for capability {cap} although its wheels "
                                    f"are built for sm_{cap}; this is a vLLM dispatch/kernel gap, not an environment "
                                    f"problem ({_first([e])})", ["log.errors"], 0.3, cause="none_env_ok",
                            remedies=[]))
            break
        rng = _vllm_span(snap, cc)
        outside = bool(vver and rng is not None and rng.first and rng.contains(".".join(map(str, vver))) is False)
        conf = 0.8 if outside or cc < (7, 0) else 0.55
        out.append(_out("fail", f"vLLM has no compiled '{e.get('kernel')}' for compute capability {cc[0]}.{cc[1]} "
                                f"({_first([e])})", ["log.errors", "vllm"], conf))
        break
    return out or None


def _vllm_image(snap: Snapshot) -> bool:
    """The evidence runs one of vLLM's own images: torch inside is the one that vLLM release was built with, so
    whether torch or vLLM lacks the arch depends on the release, not on a torch the user chose."""
    img = snap.mapping("config.image")
    return "vllm-openai" in str(img.get("image") or "") or "vllm/vllm" in str(img.get("image") or "")


def _cpu_build(snap: Snapshot) -> bool:
    vllm = snap.value("vllm")
    cfg = snap.value("vllm.config")
    return (isinstance(vllm, dict) and vllm.get("build") in ("cpu", "rocm")) or \
        (isinstance(cfg, dict) and str(cfg.get("device") or "") == "cpu")


# --------------------------------------------------------------------------- driver


def check_driver_old(snap: Snapshot) -> Outcome | None:
    errs = _errors(snap, "torch_driver_too_old", "cuda_driver_insufficient", "container_cuda_requirement",
                   "cuda_forward_compat", "unsupported_ptx_toolchain")
    if not errs:
        return None
    sigs = {e["signature"] for e in errs}
    conf = 0.85 if sigs & {"torch_driver_too_old", "cuda_driver_insufficient", "container_cuda_requirement"} else 0.75
    remedies = ["driver.upgrade"]
    extra = ""
    if "cuda_forward_compat" in sigs:
        remedies.append("driver.remove-compat")
        extra = (" Error 804 means the CUDA forward-compatibility libraries were used on a GPU that does not support "
                 "them (non-datacenter): the host driver is older than the container's CUDA.")
    dcu = snap.value("driver.cuda_version")
    if dcu:
        extra += f" The driver supports CUDA {dcu}."
    return _out("fail", f"The NVIDIA driver is too old for the CUDA runtime in use ({_first(errs)}).{extra}",
                ["log.errors", "driver.version", "driver.cuda_version"], conf, remedies=remedies)


def check_driver_mismatch(snap: Snapshot) -> Outcome | None:
    errs = _errors(snap, "nvml_driver_mismatch", "cuda_driver_mismatch")
    if not errs:
        return None
    return _out("fail", f"The user-space driver libraries do not match the loaded kernel module ({_first(errs)}); "
                        f"reboot or reload the driver, or remove stale compat libraries", ["log.errors", "driver.version"],
                0.85)


def check_fabric_manager(snap: Snapshot) -> Outcome | None:
    errs = _errors(snap, "cuda_system_not_ready")
    if not errs:
        return None
    return _out("fail", f"CUDA reports the system is not yet initialized (Error 802) ({_first(errs)}): on NVSwitch "
                        f"systems the Fabric Manager must be installed and running", ["log.errors"] + _gpu_evidence(snap),
                0.75)


# --------------------------------------------------------------------------- ABI / toolchains


def check_abi(snap: Snapshot) -> Outcome | None:
    libs = _errors(snap, "cuda_library_missing")
    syms = _errors(snap, "undefined_symbol")
    noext = _errors(snap, "vllm_c_missing")
    if noext and not libs and not syms:
        return _out("fail", f"vLLM's compiled extension does not load ({_first(noext)}): the installed vLLM has no "
                            f"build for this platform/torch (a source tree without a build, or a wheel for another "
                            f"torch/CUDA)", ["log.errors", "torch", "vllm"], 0.6,
                    remedies=["vllm.rebuild-for-torch", "vllm.install-supported"])
    if libs:
        e = libs[0]
        tc = _torch_cuda(snap)
        msg = (f"A compiled extension cannot load {e.get('library')} ({_first(libs)}): it was built for CUDA "
               f"{e.get('cuda_major')}.x")
        if tc:
            msg += f" while torch is built with CUDA {tc}"
        return _out("fail", msg + "; install a vLLM build that matches the installed torch/CUDA",
                    ["log.errors", "torch", "vllm"], 0.7, remedies=["vllm.rebuild-for-torch", "vllm.install-supported"])
    for e in syms:
        owner = e.get("owner")
        if owner == "torch":
            return _out("fail", f"{e.get('library') or 'An extension'} references a torch symbol the installed torch "
                                f"does not export ({_first([e])}): it was built against another torch",
                        ["log.errors", "torch", "vllm"], 0.75, remedies=["vllm.rebuild-for-torch",
                                                                        "vllm.install-supported"])
        if owner == "cuda":
            return _out("fail", f"An extension references a CUDA library symbol that is missing ({_first([e])})",
                        ["log.errors", "torch"], 0.55, remedies=["vllm.install-supported"])
    for e in syms:
        lib = str(e.get("library") or "")
        if e.get("owner") == "unknown" and re.match(r"_\w*C(?:\.abi3)?\.|_C_", lib):
            # the symbol name was cut off: a compiled `_C` extension failing to resolve a symbol at import is,
            # far more often than not, built against another torch than the one installed
            return _out("fail", f"The compiled extension {lib} does not load ({_first([e])}): it was most likely "
                                f"built against another torch/CUDA than the installed one",
                        ["log.errors", "torch", "vllm"], 0.6, remedies=["vllm.rebuild-for-torch",
                                                                       "vllm.install-supported"])
    if syms:
        return _out("warn", f"An undefined symbol of the extension's own code ({_first(syms)}): a build problem of "
                            f"that package (its own kernels were not compiled in), not a torch/CUDA mismatch",
                    ["log.errors"], 0.3, cause="none_env_ok", remedies=[])
    return None


def _toolkit_too_old(snap: Snapshot) -> str | None:
    tk = snap.value("toolkit.nvcc")
    tv = version_tuple(tk.get("version")) if isinstance(tk, dict) else None
    if tv is None:
        cv = snap.value("container.cuda_version")
        tv = version_tuple(str(cv)) if cv else None
    if tv is None:
        return None
    reasons = []
    for cc in _gpu_ccs(snap):
        req = arch_requirements(f"{cc[0]}.{cc[1]}")
        need = version_tuple(getattr(req, "min_cuda", None)) if req is not None else None
        if cc[0] == 12 and (need is None or need < (12, 9)):
            need = (12, 9)  # FlashInfer targets SM12x only with nvcc >= 12.9 (flashinfer compilation_context)
        if need and tv < need:
            reasons.append(f"nvcc {'.'.join(map(str, tv))} is older than CUDA {'.'.join(map(str, need))} needed to "
                           f"build kernels for compute capability {cc[0]}.{cc[1]}")
    tc = version_tuple(_torch_cuda(snap))
    if tc and tv[:2] < tc[:2]:
        reasons.append(f"nvcc {'.'.join(map(str, tv))} is older than the CUDA {'.'.join(map(str, tc[:2]))} torch "
                       f"was built with")
    if _fp4_context(snap) or any("moe" in str(e.get("text", "")).lower() for e in _errors(snap)):
        if tv < (12, 8):
            reasons.append(f"nvcc {'.'.join(map(str, tv))} cannot build the FP4/MXFP4 kernel variants (CUDA >= 12.8)")
    return "; ".join(reasons) or None


def check_flashinfer_jit(snap: Snapshot) -> Outcome | None:
    weights = {"flashinfer_no_arch": 0.8, "nvcc_unknown_arch": 0.8, "nvcc_missing": 0.75, "jit_build_failed": 0.55,
               "flashinfer_moe_combination": 0.45}
    errs = _errors(snap, *weights)
    if not errs:
        return None
    tk = snap.value("toolkit.nvcc")
    if all(e["signature"] == "nvcc_missing" for e in errs) and isinstance(tk, dict) and tk.get("version") \
            and _toolkit_too_old(snap) is None:
        return _out("warn", f"The JIT build reports nvcc missing ({_first(errs)}), but nvcc {tk.get('version')} is "
                            f"installed and runs in the same evidence: the library's toolkit discovery failed (a bug "
                            f"of that release), not a missing toolkit", ["log.errors", "toolkit.nvcc"], 0.3,
                    cause="none_env_ok", remedies=[])
    arch_sigs = [e for e in errs if e["signature"] in ("flashinfer_no_arch", "nvcc_unknown_arch")]
    nvcc_v = version_tuple(tk.get("version")) if isinstance(tk, dict) else None
    ccs = _gpu_ccs(snap)
    if arch_sigs and len(arch_sigs) == len(errs) and nvcc_v and ccs and _toolkit_too_old(snap) is None:
        # nvcc is known and new enough for every GPU shown: the arch list the library built is its own bug
        return _out("warn", f"A JIT build found no usable CUDA architecture ({_first(arch_sigs)}), but nvcc "
                            f"{'.'.join(map(str, nvcc_v))} supports compute capability "
                            f"{', '.join(f'{a}.{b}' for a, b in ccs)}: likely a bug in the library's arch selection, "
                            f"not the environment", ["log.errors", "toolkit.nvcc"] + _gpu_evidence(snap), 0.3,
                    cause="none_env_ok", remedies=[])
    conf = max(weights[e["signature"]] for e in errs)
    old = _toolkit_too_old(snap)
    msg = f"A JIT kernel build (FlashInfer or similar) cannot compile or load ({_first(errs)})"
    if old:
        conf = min(conf + 0.3, 0.9)
        msg += f"; {old}"
    return _out("fail", msg, ["log.errors", "toolkit.nvcc", "flashinfer"] + _gpu_evidence(snap), conf,
                remedies=["toolkit.cuda-home", "flashinfer.align"])


def check_ptxas(snap: Snapshot) -> Outcome | None:
    errs = _errors(snap, "ptxas_unknown_arch", "ptx_version_target", "llvm_unknown_processor")
    if not errs:
        return None
    e = errs[0]
    ctx = [str(c) for c in e.get("context") or []]
    if e.get("triton") is False and "flashinfer" in ctx:
        return _out("fail", f"The toolkit FlashInfer compiles with does not know {e.get('target')} ({_first(errs)})",
                    ["log.errors", "toolkit.nvcc"], 0.7, cause="flashinfer_jit_toolchain",
                    remedies=["toolkit.cuda-home", "flashinfer.align"])
    return _out("fail", f"The ptxas / PTX ISA used by Triton is too old for the GPU target {e.get('target')} "
                        f"({_first(errs)})", ["log.errors", "triton"] + _gpu_evidence(snap), 0.8)


# --------------------------------------------------------------------------- model-level support


def check_attention(snap: Snapshot) -> Outcome | None:
    errs = _errors(snap, "attention_softcap", "flash_attn_arch", "no_attention_backend", "attention_backend_arch")
    if not errs:
        return None
    return _out("fail", f"No attention backend available supports this GPU/model combination ({_first(errs)})",
                ["log.errors", "log.attention_backend"] + _gpu_evidence(snap), 0.7)


def check_fp8(snap: Snapshot) -> Outcome | None:
    errs = _errors(snap, "fp8_type_unsupported")
    quant = [e for e in _errors(snap, "quant_min_capability")
             if kb.quant_kind(e.get("method")) == "fp8"]
    if not errs and not quant:
        return None
    ccs = _gpu_ccs(snap)
    conf = 0.8
    note = ""
    native = [kb.native_fp8(cc) for cc in ccs]
    if ccs and all(n is False for n in native):
        conf = 0.9
        note = (f"; compute capability {ccs[0][0]}.{ccs[0][1]} has no FP8 tensor cores (needs "
                f"{kb.quantization()['fp8']['native_min_cc']}+)")
    elif ccs and all(native):
        # the environment contradicts the text: the hardware has FP8, so a kernel's arch gate or dispatch is wrong
        first = errs or quant
        return _out("warn", f"An FP8 kernel refused to run ({_first(first)}), but the GPU (compute capability "
                            f"{ccs[0][0]}.{ccs[0][1]}) has FP8 tensor cores: likely a kernel bug (an arch gate or "
                            f"dispatch in vLLM/Triton), not the environment", ["log.errors"] + _gpu_evidence(snap),
                    0.3, cause="none_env_ok", remedies=[])
    first = errs or quant
    return _out("fail", f"An FP8 kernel was used on a GPU without native FP8 ({_first(first)}){note}",
                ["log.errors"] + _gpu_evidence(snap), conf)


def check_fp4(snap: Snapshot) -> Outcome | None:
    errs = _errors(snap, "fp4_unsupported")
    quant = [e for e in _errors(snap, "quant_min_capability")
             if kb.quant_kind(e.get("method")) == "fp4"]
    nck = [e for e in _errors(snap, "no_compiled_kernel") if _fp4_context(snap, e)]
    found = errs + quant + nck
    if not found:
        return None
    ccs = _gpu_ccs(snap)
    conf = 0.7 if (nck or quant) else 0.55
    if ccs and any(kb.native_fp4(cc) for cc in ccs):
        conf += 0.1
    return _out("fail", f"FP4 (NVFP4/MXFP4) kernels are missing for this GPU in the installed build ({_first(found)})",
                ["log.errors", "vllm"] + _gpu_evidence(snap), conf)


def check_dtype(snap: Snapshot) -> Outcome | None:
    errs = _errors(snap, "bf16_unsupported")
    ccs = _gpu_ccs(snap)
    cfg = snap.value("vllm.config")
    if errs:
        return _out("fail", f"The model dtype is not supported by the GPU ({_first(errs)}); use --dtype half",
                    ["log.errors"] + _gpu_evidence(snap), 0.8)
    if isinstance(cfg, dict) and str(cfg.get("dtype")) == "bfloat16" and ccs and all(cc < (8, 0) for cc in ccs) \
            and str(cfg.get("device") or "cuda") != "cpu":
        return _out("fail", f"The engine runs bfloat16 on compute capability {ccs[0][0]}.{ccs[0][1]} (< 8.0, no bf16)",
                    ["vllm.config"] + _gpu_evidence(snap), 0.7)
    return None


def check_kv_cache(snap: Snapshot) -> Outcome | None:
    errs = _errors(snap, "kv_no_memory", "kv_too_small", "kv_negative", "model_load_oom")
    kv = snap.value("log.kv_cache")
    contention = _errors(snap, "insufficient_free_memory") or [e for e in _errors(snap, "cuda_oom")
                                                                 if e.get("other_processes")]
    if contention:
        return None
    if errs:
        return _out("fail", f"The memory settings leave no room for the KV cache ({_first(errs)}): lower "
                            f"max_model_len, raise gpu_memory_utilization, quantize, or use more GPUs",
                    ["log.errors", "log.kv_cache", "log.memory_profile", "vllm.config"], 0.75)
    if isinstance(kv, dict):
        gib = kv.get("gib")
        blocks = kv.get("gpu_blocks")
        if (isinstance(gib, (int, float)) and gib <= 0) or blocks == 0:
            return _out("fail", f"The KV cache got no memory (blocks={blocks}, {gib} GiB)",
                        ["log.kv_cache", "log.memory_profile"], 0.75)
    oom = _errors(snap, "cuda_oom")
    if oom:
        return _out("fail", f"CUDA ran out of memory ({_first(oom)}); the memory settings are too large for this GPU",
                    ["log.errors", "vllm.config"], 0.45)
    return None


def check_other_failures(snap: Snapshot) -> Outcome | None:
    errs = _errors(snap)
    if not errs:
        return passed("The log shows no recognised failure", evidence=["log.errors"])
    env = [e for e in errs if e.get("env_class")]
    if env:
        return passed(f"{len(env)} failure signature(s) name an environment class; see the other findings",
                      evidence=["log.errors"])
    names = sorted({str(e.get("signature")) for e in errs})
    return _out("warn", f"The log shows a failure whose message names no environment problem ({_first(errs)}); "
                        f"signatures: {', '.join(names)}", ["log.errors"], 0.2, cause="none_env_ok", remedies=[])


# --------------------------------------------------------------------------- Python dependencies

# Packages whose frames in a traceback mean the failing import happened inside the serving stack.
STACK_FRAMES = {"vllm", "flashinfer", "xgrammar", "tvm_ffi", "transformers", "torch", "triton", "sglang", "outlines",
                "outlines_core", "xformers", "mistral_common", "compressed_tensors", "lmcache", "ray", "tokenizers",
                "huggingface_hub", "llguidance", "lm_format_enforcer"}
PYDEP_SIGNATURES = ("module_missing", "import_name_missing", "module_attribute_missing", "pip_conflict",
                    "package_version_required", "package_install_hint", "api_type_error")


def _pins(snap: Snapshot, dist: str | None) -> str | None:
    """The requirement on ``dist`` that the evidence shows: pip's resolver line or vLLM's own metadata."""
    if not dist:
        return None
    key = dist.lower().replace("_", "-")
    for e in _errors(snap, "pip_conflict", "package_version_required"):
        if str(e.get("package", "")).lower().replace("_", "-") == key and e.get("requirement"):
            return str(e["requirement"])
    pk = snap.value("packages")
    vinfo = pk.get("vllm") if isinstance(pk, dict) else None
    reqs = vinfo.get("requires") if isinstance(vinfo, dict) else None
    for raw in reqs or []:
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(\[[^\]]*\])?\s*([<>=!~][^;]*)?", str(raw))
        if m and m.group(1).lower().replace("_", "-") == key and "extra ==" not in str(raw):
            return f"{m.group(1)}{(m.group(3) or '').strip()}"
    return None


def _installed(snap: Snapshot, dist: str | None) -> str | None:
    pk = snap.value("packages")
    if not dist or not isinstance(pk, dict):
        return None
    for name, info in pk.items():
        if str(name).lower().replace("_", "-") == dist.lower().replace("_", "-") and isinstance(info, dict):
            return str(info.get("version") or "") or None
    return None


def check_python_deps(snap: Snapshot) -> Outcome | None:
    errs = _errors(snap, *PYDEP_SIGNATURES)
    if not errs:
        return None
    best: tuple[float, dict[str, Any], str | None, str] | None = None
    for e in errs:
        sig = e.get("signature")
        module = str(e.get("module") or e.get("package") or "")
        if sig == "module_missing" and (module.startswith("vllm._") or module.endswith("_C")):
            continue  # a compiled extension that does not load is an ABI/build question (BWD-LOG-005)
        ctx = {str(c) for c in e.get("context") or []}
        dist = sigtable.python_package(module) if sig in ("module_missing", "import_name_missing",
                                                          "module_attribute_missing") else (module or None)
        in_stack = bool(ctx & STACK_FRAMES)
        if sig == "module_missing":
            conf, why = (0.8, "a module the serving stack imports is not installed") if dist or in_stack else \
                (0.45, "a module is not installed")
        elif sig == "import_name_missing":
            importer = next((c for c in reversed(list(e.get("context") or [])) if c in STACK_FRAMES), None)
            same = importer and module.split(".")[0] == importer
            conf, why = (0.45, "one part of a package imports a name another part lacks (a partial upgrade)") if same \
                else (0.75, f"{importer or 'the code'} imports a name the installed {module} does not have: the two are at "
                            f"incompatible versions")
        elif sig == "module_attribute_missing":
            conf, why = (0.7 if dist or in_stack else 0.4,
                         f"code calls {module}.{e.get('attribute')}, which the installed {module} does not have")
        elif sig == "api_type_error":
            pkgs = [c for c in e.get("context") or [] if c in STACK_FRAMES]
            if len(set(pkgs[-2:])) < 2:
                continue  # a call inside one package: a bug there, not a version mismatch
            conf, why = 0.55, f"{pkgs[-2]} calls {pkgs[-1]} with arguments its installed version does not take"
            dist = sigtable.python_package(pkgs[-1]) or pkgs[-1]
        elif sig == "package_install_hint":
            dist = sigtable.python_package(module) or (module if module else None)
            known_pkg = bool(sigtable.python_package(module))
            if not known_pkg and module.lower() in ("nvcc", "cuda", "cuda-toolkit", "driver", "nvidia-driver"):
                continue  # a toolkit or driver, not a Python package: other checks judge it
            conf, why = (0.7 if known_pkg or in_stack else 0.45), f"the error asks for {module} to be installed"
        elif sig == "pip_conflict":
            conf, why = 0.5, f"pip reports {e.get('required_by')} needs {e.get('requirement') or e.get('package')}"
        else:
            conf, why = 0.6, f"a package needs {e.get('requirement')}"
        if best is None or conf > best[0]:
            best = (conf, e, dist, why)
    if best is None:
        return None
    conf, e, dist, why = best
    pin = _pins(snap, dist)
    have = _installed(snap, dist)
    others = [x for x in _errors(snap) if x.get("env_class") and x.get("signature") not in PYDEP_SIGNATURES
              and x.get("env_class") not in ("pydep", "pydep_api")]
    if others:
        conf = min(conf, 0.5)  # an environment failure of another class is in the same evidence
    msg = f"A Python dependency is missing or at an incompatible version ({_first([e])}): {why}"
    if dist:
        msg += f"; package {dist}" + (f" (installed {have})" if have else "")
    if pin:
        msg += f"; install {pin}, the version the evidence pins"
    return _out("fail", msg, ["log.errors", "packages", "vllm"], conf,
                remedies=["python.install-dependency"], package=dist, requirement=pin, installed=have)


# --------------------------------------------------------------------------- environment classes


def check_wsl(snap: Snapshot) -> Outcome | None:
    if not snap.value("host.wsl"):
        return None
    wsl_errs = _errors(snap, "device_not_ready", "pinned_memory_error", "vmm_unsupported")
    if wsl_errs:
        return _out("fail", f"Running under WSL2, the CUDA call fails in a way WSL2's GPU paravirtualisation causes "
                            f"({_first(wsl_errs)}): WSL2 limits pinned memory and has no CUDA VMM (expandable "
                            f"segments)", ["host.wsl", "log.errors"], 0.75)
    other = [e for e in _errors(snap) if e.get("signature") in ("cuda_oom", "nvcc_missing")]
    if other:
        return _out("warn", f"Running under WSL2; the failure ({_first(other)}) is one WSL2 commonly causes",
                    ["host.wsl", "log.errors"], 0.35)
    if snap.value("log.wsl_pin_memory_off") and not _errors(snap):
        return _out("warn", "Running under WSL2, vLLM disabled pinned host memory (WSL2 limits it): host-to-GPU "
                            "copies (KV swap/offload, inputs) are slower than on native Linux",
                    ["host.wsl", "log.wsl_pin_memory_off"], 0.45)
    return passed("WSL2 detected; no WSL2-specific failure in the evidence", evidence=["host.wsl"])


def _mig_markers(snap: Snapshot) -> list[str]:
    marks = [str(m) for m in (snap.value("log.mig") or [])]
    env = snap.value("host.env")
    if isinstance(env, dict) and "MIG-" in str(env.get("CUDA_VISIBLE_DEVICES", "")):
        marks.append(f"CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES')}")
    for i, g in snap.gpus():
        mig = g.get("mig")
        if isinstance(mig, dict) and (mig.get("current") is True or str(mig.get("current", "")).lower() == "enabled"):
            marks.append(f"gpu{i} MIG mode enabled")
        if " MIG " in f" {g.get('name', '')} ":
            marks.append(f"gpu{i} is a MIG device")
    return marks


def check_mig(snap: Snapshot) -> Outcome | None:
    uuid = _errors(snap, "mig_uuid_as_index")
    if uuid:
        return _out("fail", f"A MIG instance is addressed by its UUID where an integer device index is expected "
                            f"({_first(uuid)}): expose exactly one MIG slice to the process (container device "
                            f"isolation) so that it appears as device 0", ["log.errors", "log.mig", "host.env"], 0.85,
                    remedies=["gpu.mig-guidance"])
    marks = _mig_markers(snap)
    if not marks:
        return None
    errs = _errors(snap)
    if errs:
        return _out("fail", f"The failing setup uses MIG ({'; '.join(marks[:3])}) and fails ({_first(errs)}): vLLM "
                            f"needs one MIG slice per process (exposed as the only device), not MIG UUIDs or several "
                            f"slices", ["log.mig", "host.env"] + _gpu_evidence(snap), 0.7,
                    remedies=["gpu.mig-guidance"])
    return _out("warn", f"The evidence involves MIG ({'; '.join(marks[:3])}); vLLM supports one slice per process "
                        f"only", ["log.mig", "host.env"] + _gpu_evidence(snap), 0.5, remedies=["gpu.mig-guidance"])


def check_nccl_version(snap: Snapshot) -> Outcome | None:
    too_old = _errors(snap, "nccl_build_too_old")
    if too_old:
        ver0 = snap.value("nccl.version")
        nccl0 = snap.mapping("log.nccl")
        what = f"NCCL {ver0}" + (f" (built for CUDA {nccl0.get('cuda')})" if nccl0.get("cuda") else "") if ver0 \
            else "The NCCL in use"
        return _out("fail", f"{what} is too old for the CUDA runtime or driver in use: NCCL says so itself "
                            f"({_first(too_old)}); an old system NCCL or a wheel of another CUDA was picked up",
                    ["log.errors", "nccl.version", "log.nccl"], 0.8, remedies=["nccl.upgrade"])
    ver = snap.value("nccl.version")
    nccl = snap.value("log.nccl") if isinstance(snap.value("log.nccl"), dict) else {}
    vt = version_tuple(str(ver)) if ver else None
    if vt is None:
        return None
    problems = []
    for cc in _gpu_ccs(snap):
        req = arch_requirements(f"{cc[0]}.{cc[1]}")
        need = version_tuple(getattr(req, "nccl_min", None)) if req is not None else None
        if need and vt < need:
            problems.append(f"NCCL {ver} is older than {'.'.join(map(str, need))} needed for compute capability "
                            f"{cc[0]}.{cc[1]}")
    built = version_tuple(nccl.get("cuda")) if nccl.get("cuda") else None
    rt = _runtime_cuda(snap)
    if built and rt and built[0] < rt[0]:
        problems.append(f"NCCL {ver} is built for CUDA {nccl.get('cuda')} but the runtime is CUDA "
                        f"{'.'.join(map(str, rt))}")
    problems = list(dict.fromkeys(problems))
    if not problems:
        return passed(f"NCCL {ver} fits the GPUs and CUDA runtime shown", evidence=["nccl.version"])
    errs = _errors(snap, "nccl_error", "collective_hang")
    if errs:
        return _out("fail", f"{'; '.join(problems)}, and NCCL fails ({_first(errs)})",
                    ["nccl.version", "log.nccl", "log.errors"] + _gpu_evidence(snap), 0.8, remedies=["nccl.upgrade"])
    return _out("warn", "; ".join(problems), ["nccl.version", "log.nccl"] + _gpu_evidence(snap), 0.55,
                remedies=["nccl.upgrade"])


def _setup_stall(snap: Snapshot) -> str | None:
    """A multi-GPU start-up whose log stops inside NCCL / custom all-reduce set-up with no error at all."""
    prog = snap.mapping("log.progress")
    nccl = snap.mapping("log.nccl")
    last = prog.get("last_line")
    if not isinstance(last, int) or prog.get("ready_line") or prog.get("errors"):
        return None
    marks = [v for v in (nccl.get("last_info_line"), nccl.get("custom_allreduce_line")) if isinstance(v, int)]
    if marks and last - max(marks) <= 8:
        return f"the log stops at line {last}, {last - max(marks)} line(s) after NCCL / custom all-reduce set-up, " \
               f"with no error and the engine never ready"
    return None


def check_nccl_p2p(snap: Snapshot) -> Outcome | None:
    p2p = _errors(snap, "p2p_unsupported", "cuda_ipc_failure", "iommu_fault")
    if p2p:
        return _out("fail", f"GPU peer-to-peer access fails ({_first(p2p)}): disable NCCL P2P and vLLM's custom "
                            f"all-reduce, or fix IOMMU/ACS", ["log.errors", "host.gpu_topology"], 0.75)
    hang = _errors(snap, "collective_hang")
    nvlink = _has_nvlink(snap)
    multi = _gpu_count(snap) > 1 or _tp(snap) > 1
    if not hang and (multi or nvlink is False):
        # the engine stopped producing output: a collective stall only where several GPUs talk
        hang = _errors(snap, "engine_stall")
    stall = _setup_stall(snap) if not hang and (multi or nvlink is False) else None
    if stall:
        transports = snap.mapping("log.nccl").get("transports") or []
        via = f" (NCCL channels via {', '.join(map(str, transports))})" if transports else ""
        conf = 0.6 if nvlink is False or any(str(t).startswith("P2P") for t in transports) else 0.45
        return _out("fail", f"Several GPUs stall while setting up communication: {stall}{via}. On GPUs linked "
                            f"through PCIe the direct P2P path (IOMMU/ACS, platforms without P2P) is the usual cause",
                    ["log.progress", "log.nccl", "host.gpu_topology"] + _gpu_evidence(snap), conf)
    if not hang:
        return None
    if nvlink is False:
        return _out("fail", f"NCCL collectives hang ({_first(hang)}) on GPUs linked only through PCIe (no NVLink): the "
                            f"direct P2P path is the usual cause (IOMMU/ACS, consumer platforms)",
                    ["log.errors", "host.gpu_topology"] + _gpu_evidence(snap), 0.75)
    if nvlink is None:
        return _out("fail", f"NCCL collectives hang ({_first(hang)}); with no link topology in the evidence, PCIe P2P "
                            f"is the usual cause", ["log.errors"], 0.5 if multi else 0.4)
    return None


def check_nccl_env(snap: Snapshot) -> Outcome | None:
    errs = _errors(snap, "nccl_env_invalid")
    if errs:
        return _out("fail", f"An NCCL_* setting is invalid ({_first(errs)})", ["log.errors", "host.env"], 0.75)
    nccl_errs = _errors(snap, "nccl_error", "collective_hang")
    env = dict(snap.mapping("host.env"))
    env.update({k: v for k, v in (snap.mapping("log.nccl").get("env") or {}).items() if isinstance(k, str)})
    risky = ("NCCL_BUFFSIZE", "NCCL_SOCKET_IFNAME", "NCCL_IB_HCA", "NCCL_NET", "NCCL_PROTO", "NCCL_ALGO",
             "NCCL_NTHREADS", "NCCL_MAX_NCHANNELS", "NCCL_MIN_NCHANNELS", "NCCL_CUMEM_ENABLE")
    if nccl_errs and env:
        set_vars = [f"{k}={env[k]}" for k in env if k in risky]
        if set_vars:
            names = [k for k in env if k in risky]
            return _out("warn", f"NCCL fails ({_first(nccl_errs)}) with tuning variables set: {', '.join(set_vars)}; "
                                f"unset them and retry with NCCL's defaults", ["log.errors", "host.env", "log.nccl"],
                        0.45, variables=names, values={k: str(env[k]) for k in names})
    return None


def _in_container(snap: Snapshot) -> bool:
    return bool(snap.value("log.container_hint") or snap.value("host.container") or snap.has("config.docker_run")
                or snap.has("config.compose"))


def _shm_from_container(snap: Snapshot) -> Outcome | None:
    """NCCL's 'unhandled system error' with several GPUs inside a container and no NCCL_* tuning in the evidence:
    the container's /dev/shm (Docker's 64 MiB default) is the usual cause."""
    sys_errs = [e for e in _errors(snap, "nccl_error") if "system error" in str(e.get("text", "")).lower()
                or "system_error" in str(e.get("text", "")).lower()]
    if not sys_errs or not _in_container(snap) or (_gpu_count(snap) < 2 and _tp(snap) < 2):
        return None
    env = dict(snap.mapping("host.env"))
    env.update(snap.mapping("log.nccl").get("env") or {})
    if any(str(k).startswith("NCCL_") and k not in ("NCCL_DEBUG", "NCCL_DEBUG_SUBSYS") for k in env):
        return None  # NCCL_* variables are set: BWD-ENV-005 judges them first
    return _out("fail", f"NCCL fails with a system error ({_first(sys_errs)}) while several GPUs run inside a "
                        f"container: NCCL's shared-memory transport needs more than Docker's default 64 MiB /dev/shm "
                        f"(--ipc=host or --shm-size)", ["log.errors", "host.container", "log.container_hint"], 0.55)


def check_shm(snap: Snapshot) -> Outcome | None:
    size = snap.value("host.shm_bytes")
    errs = _errors(snap, "shm_error")
    small = isinstance(size, int) and size < (1 << 30)
    if not small and not errs:
        return _shm_from_container(snap)
    multi = _gpu_count(snap) > 1 or _tp(snap) > 1
    if small and (errs or multi):
        return _out("fail", f"/dev/shm is {size >> 20} MiB, too small for NCCL/vLLM shared-memory IPC"
                    + (f" ({_first(errs)})" if errs else " with several GPUs in use"),
                    ["host.shm_bytes", "log.errors"], 0.8)
    if errs:
        return _out("fail", f"A shared-memory segment could not be created ({_first(errs)}): /dev/shm is too small",
                    ["log.errors"], 0.65)
    if not small:
        return None
    return _out("warn", f"/dev/shm is {size >> 20} MiB (Docker's default 64 MiB); vLLM and NCCL need more",
                ["host.shm_bytes"], 0.5)


def check_container(snap: Snapshot) -> Outcome | None:
    weights = {"container_no_gpu_driver": 0.85, "container_unknown_runtime": 0.85, "container_cli_error": 0.6,
               "container_gpu_missing": 0.6,
               "nvml_unknown_error": 0.6, "no_nvidia_driver": 0.55, "no_cuda_device": 0.4}
    errs = _errors(snap, *weights)
    if not errs:
        return None
    if _errors(snap, "nvml_driver_mismatch", "cuda_driver_mismatch"):
        errs = [e for e in errs if e["signature"] not in ("container_cli_error",)]
        if not errs:
            return None
    torch = snap.value("torch")
    if isinstance(torch, dict) and torch.get("variant") == "cpu" and all(e["signature"] == "no_cuda_device"
                                                                         for e in errs):
        return None
    conf = max(weights[e["signature"]] for e in errs)
    return _out("fail", f"The container does not get the GPU: the NVIDIA container runtime/toolkit is missing or "
                        f"misconfigured ({_first(errs)})", ["log.errors"], conf)


def check_memory_contention(snap: Snapshot) -> Outcome | None:
    errs = _errors(snap, "insufficient_free_memory")
    oom_other = [e for e in _errors(snap, "cuda_oom") if e.get("other_processes")]
    if errs or oom_other:
        first = errs or oom_other
        return _out("fail", f"Other processes hold GPU memory that vLLM expected to be free ({_first(first)})",
                    ["log.errors"] + _gpu_evidence(snap), 0.75)
    mem_errs = _errors(snap, "cuda_oom", "kv_no_memory", "kv_too_small", "model_load_oom")
    if not mem_errs:
        return None
    busy = []
    for i, g in snap.gpus():
        procs = g.get("processes") or []
        used = g.get("memory_used_mib")
        total = g.get("memory_total_mib")
        if procs and isinstance(used, int) and isinstance(total, int) and total and used / total > 0.1:
            busy.append(f"gpu{i}: {used} of {total} MiB used by {len(procs)} process(es)")
    if busy:
        return _out("fail", f"GPU memory is already in use ({'; '.join(busy)}) and vLLM runs out of memory "
                            f"({_first(mem_errs)})", ["log.errors"] + _gpu_evidence(snap), 0.65)
    return None


def check_gpu_health(snap: Snapshot) -> Outcome | None:
    errs = [e for e in _errors(snap, "xid", "gpu_lost") if e.get("env_class") == "gpu_health"]
    if errs:
        return _out("fail", f"The GPU reports a hardware/driver fault ({_first(errs)}): reset or service the GPU",
                    ["log.errors"] + _gpu_evidence(snap), 0.8)
    for i, g in snap.gpus():
        act = str(g.get("recovery_action") or "")
        if act and act.lower() not in ("none", "n/a"):
            return _out("fail", f"gpu{i} asks for recovery action '{act}'", [f"gpu.{i}"], 0.8)
    tp = snap.mapping("log.throughput")
    top = tp.get("generation_tps_max")
    cfg = snap.mapping("vllm.config")
    offload = any(k in str(snap.value("log.non_default_args") or "") for k in ("cpu_offload", "offload"))
    if isinstance(top, (int, float)) and top < SLOW_DECODE_TPS and int(tp.get("samples") or 0) >= 2 \
            and not _errors(snap) and str(cfg.get("device") or "cuda") != "cpu" and not offload and not _cpu_build(snap):
        return _out("warn", f"With requests running, generation never exceeds {top:g} tokens/s over "
                            f"{tp.get('samples')} metrics samples: far below what any supported GPU does even for one "
                            f"request, and no error is logged. A GPU that is throttled, degraded or needs a reset "
                            f"behaves like this: check nvidia-smi -q (Clocks Event Reasons, GPU Reset Status / Reset "
                            f"Required, Remapped Rows) and the kernel log for Xid events",
                    ["log.throughput"] + _gpu_evidence(snap), 0.45)
    return None


# --------------------------------------------------------------------------- registration


def _spec(cid: str, title: str, func: Any, cause: str | None, remedies: list[str], doc: str, conf: float,
          needs: list[str] | None = None, needs_any: list[str] | None = None, tags: tuple[str, ...] = ()) -> CheckSpec:
    return CheckSpec(id=cid, title=title, func=func, needs=needs if needs is not None else LOG_NEEDS,
                     needs_any=needs_any or [], level="quick", tags=("logs", "evidence") + tags, doc=doc,
                     root_cause=cause, remedies=remedies, confidence=conf)


@hookimpl
def bwdoctor_checks() -> list[CheckSpec]:
    return [
        _spec("BWD-LOG-001", "PyTorch has kernels for the GPU (log evidence)", check_torch_arch,
              "arch_not_in_torch_wheel", ["torch.reinstall-cuda-variant"],
              "Reads PyTorch's own warning 'sm_XXX is not compatible with the current PyTorch installation' (with the "
              "arch list it prints), or compares the GPU's compute capability with the torch build's CUDA version. "
              "A torch without the GPU's SASS fails every kernel with 'no kernel image'. Fix: install a torch CUDA "
              "variant that covers the GPU (cu128+ for Blackwell).", 0.9, needs=[],
              needs_any=["log.errors", "torch"]),
        _spec("BWD-LOG-002", "vLLM's compiled kernels cover the GPU (log evidence)", check_vllm_arch,
              "arch_not_in_vllm_wheel", ["vllm.install-supported"],
              "'no kernel image is available' or 'No compiled <kernel> for capability N' when PyTorch itself covers "
              "the GPU points at vLLM's extensions: builds before 0.9.0 have no sm_100, before 0.9.2 no sm_120 "
              "(wheel inspection, facts.md 2e); Pascal (< 7.0) is not built. Confidence is moderate unless the vLLM "
              "version and GPU are known. A 'No compiled' message for an arch vLLM is built for is a vLLM kernel gap "
              "and carries no environment root cause. A GPU below compute capability 7.0 fails even without an "
              "error in the evidence. Fix: install a vLLM release built for the GPU.", 0.55, needs=[],
              needs_any=["log.errors", "gpu.*"]),
        _spec("BWD-LOG-003", "The driver is new enough for the CUDA runtime (log evidence)", check_driver_old,
              "driver_too_old_for_cuda", ["driver.upgrade"],
              "Messages that prove the driver is older than the CUDA runtime: PyTorch's 'driver on your system is too "
              "old (found version 12080)', 'CUDA driver version is insufficient', nvidia-container-cli's unsatisfied "
              "'cuda>=X', Error 804 (forward compatibility on a non-datacenter GPU), unsupported PTX toolchain. Fix: "
              "upgrade the driver (R570+ for CUDA 12.8, R580+ for CUDA 13) or use a matching image.", 0.85),
        _spec("BWD-LOG-004", "Driver libraries match the kernel module (log evidence)", check_driver_mismatch,
              "driver_library_mismatch", ["driver.reload", "driver.remove-compat"],
              "'Failed to initialize NVML: Driver/library version mismatch' or CUDA Error 803: the user-space driver "
              "libraries differ from the loaded kernel module (an upgrade without reboot, stale compat libraries). "
              "Fix: reboot or reload the module; remove stale compat libraries.", 0.85),
        _spec("BWD-LOG-005", "vLLM's binary matches the installed torch/CUDA (log evidence)", check_abi,
              "torch_vllm_abi_mismatch", ["vllm.rebuild-for-torch", "vllm.install-supported"],
              "'libcudart.so.N: cannot open shared object file' (built for another CUDA major) or an undefined symbol "
              "in the c10/at/torch namespaces (built against another torch) prove an ABI mismatch. An undefined "
              "symbol of the extension's own functions is a build problem of that package and is reported without "
              "an environment root cause. Fix: install the vLLM build for the installed torch, or rebuild.", 0.7),
        _spec("BWD-LOG-006", "JIT kernel builds work (FlashInfer, log evidence)", check_flashinfer_jit,
              "flashinfer_jit_toolchain", ["toolkit.cuda-home", "flashinfer.align"],
              "FlashInfer JIT failures: 'No supported CUDA architectures found for major versions' (nvcc older than "
              "12.9 for SM12x), nvcc missing or CUDA_HOME unset, ninja build failures, a fused-MoE module built "
              "without the needed variant. Confidence rises when the toolkit version in the evidence is older than "
              "the GPU or torch needs. Fix: point CUDA_HOME at a new enough toolkit or install the prebuilt "
              "flashinfer-cubin/jit-cache packages matching flashinfer-python.", 0.6),
        _spec("BWD-LOG-007", "Triton's ptxas knows the GPU target (log evidence)", check_ptxas,
              "triton_ptxas_toolchain", ["triton.ptxas"],
              "ptxas 'Value sm_XXXa is not defined for option gpu-name', 'PTX .version X does not support .target' "
              "or LLVM 'not a recognized processor': the ptxas/PTX ISA is older than the GPU (Triton < 3.3 on "
              "sm_120, < 3.6 on sm_121). Fix: a Triton with a newer bundled ptxas or TRITON_PTXAS_PATH to a CUDA "
              "12.9+ ptxas.", 0.8),
        _spec("BWD-LOG-008", "An attention backend supports this GPU and model (log evidence)", check_attention,
              "attention_backend_unsupported", ["vllm.attention-backend"],
              "Backend refusals: 'XFormers does not support attention logits soft capping', 'FlashAttention only "
              "supports Ampere GPUs or newer', 'No valid attention backend found', 'Selected backend ... is not "
              "valid'. Fix: choose a backend the GPU supports, or run on newer hardware.", 0.7),
        _spec("BWD-LOG-009", "FP8 kernels run only where the GPU has FP8 (log evidence)", check_fp8,
              "fp8_unsupported_on_gpu", ["vllm.fp8-fallback"],
              "Triton 'type fp8e4nv not supported in this architecture' or vLLM 'quantization method fp8 is not "
              "supported ... Minimum capability': an FP8 kernel on a GPU without native FP8 (CC < 8.9, e.g. A100). "
              "Fix: the Marlin weight-only FP8 path, another quantization, or FP8-capable hardware.", 0.8),
        _spec("BWD-LOG-010", "FP4 kernels exist for the GPU (log evidence)", check_fp4, "fp4_kernel_arch_mismatch",
              ["vllm.install-supported"],
              "NVFP4/MXFP4 failures ('No compiled ... capability 120' in an FP4 context, FP4 method below minimum "
              "capability): the installed vLLM/FlashInfer/CUTLASS build has FP4 kernels only for SM100 or none for "
              "this GPU. Fix: a newer vLLM with SM12x FP4 kernels, or another quantization.", 0.7),
        _spec("BWD-LOG-011", "The model dtype is supported by the GPU (log evidence)", check_dtype,
              "dtype_unsupported_on_gpu", [],
              "bfloat16 needs compute capability 8.0+: 'Bfloat16 is only supported on GPUs with compute capability of "
              "at least 8.0', or the engine config's dtype=bfloat16 on an older GPU. No automatic remedy: pass "
              "--dtype half (a serving argument bwdoctor does not rewrite).", 0.8, needs=[],
              needs_any=["log.errors", "vllm.config"]),
        _spec("BWD-LOG-012", "The memory settings leave room for the KV cache (log evidence)", check_kv_cache,
              "kv_cache_oom", ["vllm.memory-settings"],
              "'No available memory for the cache blocks', 'max seq len ... larger than ... KV cache', a negative KV "
              "reserve or zero GPU blocks in memory profiling, or a CUDA OOM with no other process holding memory. "
              "Fix: lower max_model_len, adjust gpu_memory_utilization, quantize, or add GPUs.", 0.75, needs=[],
              needs_any=["log.errors", "log.kv_cache"]),
        _spec("BWD-LOG-013", "NVSwitch systems have the Fabric Manager (log evidence)", check_fabric_manager,
              "fabric_manager_missing", ["fabric-manager.install"],
              "CUDA Error 802 'system not yet initialized' on HGX/DGX systems means the NVIDIA Fabric Manager is not "
              "installed or running. Fix: install and start nvidia-fabricmanager matching the driver.", 0.75),
        _spec("BWD-LOG-014", "Failures in the log are environment problems", check_other_failures, None, [],
              "Reports failures whose messages name no environment class (a Python exception inside vLLM or the "
              "model, structured-output errors, illegal memory access): they do not blame the machine. No automatic "
              "remedy: the cause is in application code.", 0.2),
        _spec("BWD-LOG-015", "The Python packages the stack imports are installed at compatible versions",
              check_python_deps, "python_dependency_broken", ["python.install-dependency"],
              "ModuleNotFoundError/ImportError for a module vLLM or a kernel library it loads imports (the knowledge "
              "base maps import names to distributions: tvm_ffi is apache-tvm-ffi), 'cannot import name' across "
              "packages, AttributeError on a module's missing API, a TypeError where one package calls another, pip "
              "resolver conflicts and version checks at import. Names the package and, where vLLM's metadata or "
              "pip's resolver pins it, the version to install. A compiled extension that does not load is "
              "BWD-LOG-005's (ABI), not this. Fix: pip install the pinned version.", 0.75),
        _spec("BWD-ENV-001", "WSL2 limits do not cause the failure", check_wsl, "wsl2", ["wsl.guidance"],
              "Under WSL2 (markers: microsoft-standard-WSL kernel, /usr/lib/wsl/lib, Docker Desktop), 'device not "
              "ready', pinned-memory and CUDA VMM/expandable-segments failures come from WSL2's GPU "
              "paravirtualisation. Fix: disable expandable segments and pinned memory, or run on native Linux.", 0.75,
              needs=["host.wsl"]),
        _spec("BWD-ENV-002", "MIG is used the way vLLM supports", check_mig, "mig", ["gpu.mig-guidance"],
              "MIG markers (MIG UUIDs in CUDA_VISIBLE_DEVICES, MIG devices or mode in nvidia-smi, MIG in the report) "
              "with a failure: vLLM needs one MIG slice per process exposed as the only device; several slices or "
              "UUID addressing fail. Fix: isolate one slice per container/process.", 0.7, needs=[],
              needs_any=["log.mig", "host.env", "gpu.*"]),
        _spec("BWD-ENV-003", "NCCL is new enough for the GPU and CUDA runtime", check_nccl_version,
              "nccl_version_mismatch", ["nccl.upgrade"],
              "Compares the NCCL version in the evidence (NCCL banner, libnccl package version, nvidia-nccl wheel) "
              "with the minimum for each GPU's architecture (knowledge base) and NCCL's CUDA build with the runtime's "
              "CUDA major. Fails when NCCL also errors in the log, or when NCCL itself says its build is too old for the "
              "CUDA runtime/driver. Fix: upgrade NCCL / use the wheel's NCCL.", 0.8,
              needs=[], needs_any=["nccl.version", "log.errors"]),
        _spec("BWD-ENV-004", "GPU peer-to-peer works for NCCL", check_nccl_p2p, "nccl_p2p", ["nccl.p2p-disable"],
              "Peer access errors, or NCCL collectives that hang on GPUs linked only through PCIe (nvidia-smi topo "
              "PHB/NODE/SYS, no NVLink): IOMMU/ACS or platform P2P problems. Fix: NCCL_P2P_DISABLE=1 and "
              "--disable-custom-all-reduce, or fix IOMMU/ACS in BIOS/kernel. Also a multi-GPU start-up whose log "
              "stops right after NCCL / custom all-reduce set-up with no error (a stall), IOMMU page faults and CUDA "
              "IPC failures.", 0.75, needs=[], needs_any=["log.errors", "log.progress"]),
        _spec("BWD-ENV-005", "NCCL_* settings are valid", check_nccl_env, "nccl_env_misconfig", ["nccl.env-fix"],
              "NCCL warnings about invalid NCCL_* values or missing socket interfaces, or NCCL failures with tuning "
              "variables set. Fix: remove or correct the NCCL_* variables.", 0.75),
        _spec("BWD-ENV-006", "/dev/shm is large enough", check_shm, "shm_too_small",
              ["compose.ipc-host", "compose.shm-size"],
              "Ray's '/dev/shm has only N bytes available', ncclShmOpen / shared-memory segment errors, bus errors "
              "in workers: Docker's default 64 MiB /dev/shm is too small for tensor parallelism. Fix: --ipc=host or "
              "--shm-size.", 0.8, needs=[], needs_any=["log.errors", "host.shm_bytes"]),
        _spec("BWD-ENV-007", "The container gets the GPU (container runtime)", check_container, "container_runtime",
              ["container.toolkit"],
              "'could not select device driver \"\" with capabilities: [[gpu]]', 'unknown runtime nvidia', "
              "nvidia-container-cli errors, NVML 'Unknown Error' in a container, no CUDA device: the NVIDIA "
              "container toolkit is missing or not configured. Fix: install and configure nvidia-container-toolkit "
              "(nvidia-ctk runtime configure) and pass --gpus / CDI devices.", 0.8),
        _spec("BWD-ENV-008", "No other process holds the GPU memory vLLM needs", check_memory_contention,
              "gpu_memory_contention", ["gpu.free-memory"],
              "'Free memory on device ... is less than desired GPU memory utilization', memory-profiling errors, "
              "CUDA OOM naming other processes, or nvidia-smi showing memory in use when vLLM runs out. Fix: stop the "
              "other processes or lower gpu_memory_utilization.", 0.75),
        _spec("BWD-ENV-009", "The GPU is healthy (log evidence)", check_gpu_health, "gpu_health", ["gpu.advisory"],
              "Hardware/driver XIDs (48, 63, 64, 74, 79, 92, 94, 95, 119, ...: facts.md 5c), 'GPU has fallen off the "
              "bus', uncorrectable ECC errors, or a pending recovery action: software settings are not the cause. "
              "Generation far below any GPU's speed (under 2 tokens/s with requests running) with no error warns. "
              "Advice only: reset or service the GPU.", 0.8, needs=[], needs_any=["log.errors", "gpu.*",
                                                                                  "log.throughput"]),
    ]

