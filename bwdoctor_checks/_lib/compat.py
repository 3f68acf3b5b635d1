"""CUDA binary compatibility: can this SASS run on, or this PTX be JIT-compiled for, a given GPU?

Rules (CUDA C++ Programming Guide, "Binary Compatibility" and "PTX Compatibility"; CUDA 12.9
"family-specific architecture features" blog, https://developer.nvidia.com/blog/nvidia-blackwell-and-nvidia-cuda-12-9-introduce-family-specific-architecture-features/):

* SASS ``sm_XY`` runs on compute capability ``X.Z`` when ``Z >= Y`` (same major, not-newer minor):
  sm_80 runs on 8.6 and 8.9; sm_100 on 10.3; sm_120 on 12.1; sm_100 never on 12.0.
* ``sm_XYa`` (architecture-specific) runs only on exactly ``X.Y``: sm_90a only on 9.0, sm_120a not on 12.1.
* ``sm_XYf`` (family-specific) runs on the later members of its family: sm_100f on 10.0 and 10.3,
  sm_103f on 10.3, sm_120f on 12.0 and 12.1 (the family of a major version, minors not older).
* PTX ``compute_XY`` can be JIT-compiled by the driver for any CC ``>= X.Y`` (also newer majors),
  provided the driver knows the target and the PTX ISA version; it costs a slow first start.
  ``compute_XYa`` PTX compiles only for ``X.Y``; ``compute_XYf`` only within its family.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bwdoctor_checks._lib.cudabin import parse_arch

NATIVE = "native"
PTX_JIT = "ptx-jit"
NO_KERNEL = "no-kernel"


def cc_tuple(cc: str | float | tuple[int, int]) -> tuple[int, int] | None:
    """``"12.0"`` / ``"sm_120"`` / ``12.0`` / ``(12, 0)`` -> ``(12, 0)`` (:func:`bwdoctor.resolve.cc_tuple`)."""
    from bwdoctor import resolve

    return resolve.cc_tuple(cc)


def cc_str(cc: tuple[int, int]) -> str:
    return f"{cc[0]}.{cc[1]}"


def sm_name(cc: tuple[int, int]) -> str:
    return f"sm_{cc[0]}{cc[1]}"


def sass_runs_on(arch: str, cc: str | tuple[int, int]) -> bool:
    """Does SASS ``arch`` (``sm_90a``) run on compute capability ``cc``?"""
    p = parse_arch(arch)
    c = cc_tuple(cc)
    if not p or p[0] != "sm" or c is None:
        return False
    major, minor = divmod(p[1], 10)
    if p[2] == "a":
        return (major, minor) == c
    # plain and family cubins: same major, device minor not older than the cubin's
    return c[0] == major and c[1] >= minor


def ptx_jits_to(arch: str, cc: str | tuple[int, int]) -> bool:
    """Can PTX ``arch`` (``compute_90``) be JIT-compiled for compute capability ``cc``?"""
    p = parse_arch(arch)
    c = cc_tuple(cc)
    if not p or p[0] != "compute" or c is None:
        return False
    major, minor = divmod(p[1], 10)
    if p[2] == "a":
        return (major, minor) == c
    if p[2] == "f":
        return c[0] == major and c[1] >= minor
    return c >= (major, minor)


@dataclass(frozen=True)
class Verdict:
    verdict: str  # native | ptx-jit | no-kernel
    cc: str
    sass: tuple[str, ...]  # SASS that runs on cc
    ptx: tuple[str, ...]  # PTX that can be JIT-compiled for cc

    @property
    def ok(self) -> bool:
        return self.verdict != NO_KERNEL


def verdict(sass: Iterable[str], ptx: Iterable[str], cc: str | tuple[int, int]) -> Verdict:
    """Native when some SASS runs on ``cc``, ptx-jit when only PTX can be compiled for it, else no-kernel."""
    c = cc_tuple(cc)
    if c is None:
        raise ValueError(f"not a compute capability: {cc!r}")
    s = tuple(a for a in sass if sass_runs_on(a, c))
    p = tuple(a for a in ptx if ptx_jits_to(a, c))
    v = NATIVE if s else (PTX_JIT if p else NO_KERNEL)
    return Verdict(v, cc_str(c), s, p)


def explain(component: str, sass: Iterable[str], ptx: Iterable[str], cc: str | tuple[int, int]) -> str:
    """One line a person reads: ``torch: no kernel for sm_120 (has sm_80, sm_90; PTX compute_90 cannot ...)``."""
    sass, ptx = list(sass), list(ptx)
    v = verdict(sass, ptx, cc)
    c = cc_tuple(cc)
    assert c is not None
    target = sm_name(c)
    if v.verdict == NATIVE:
        return f"{component}: native {', '.join(v.sass)} SASS runs on {target}"
    if v.verdict == PTX_JIT:
        return (f"{component}: no {target} SASS, but PTX {', '.join(v.ptx)} can be JIT-compiled for it "
                f"(slow first start; needs a driver that knows {target})")
    has = ", ".join(sass) if sass else "no SASS"
    if ptx:
        why = "; PTX " + ", ".join(ptx) + f" cannot be JIT-compiled for {target}"
    else:
        why = "; no PTX to JIT-compile"
    return f"{component}: no kernel for {target} (has {has}{why})"


def torch_gap(torch: dict[str, Any], scanned: dict[str, Any] | None, cc: str, torch_variants: Iterable[str]) -> str | None:
    """Why the torch of a snapshot has no kernels for ``cc`` (its scanned library, the arch list it
    printed, or its CUDA variant against the variants built for the architecture), or None when it
    has them or nothing tells. When torch cannot run on the GPU it fails first, before any vLLM
    kernel is launched."""
    if isinstance(scanned, dict) and scanned.get("files"):
        v = verdict(scanned.get("sass", []), scanned.get("ptx", []), cc)
        return f"torch's libraries have no kernel for {cc}" if v.verdict == NO_KERNEL else None
    archs = torch.get("arch_list")
    if isinstance(archs, list) and archs:
        v = verdict([a for a in archs if str(a).startswith("sm_")], [a for a in archs if str(a).startswith("compute_")],
                    cc)
        return f"torch's arch list ({' '.join(map(str, archs))}) has no kernel for {cc}" if v.verdict == NO_KERNEL \
            else None
    variant = torch.get("variant")
    variants = list(torch_variants or [])
    if variant and variants and str(variant).startswith("cu") and variant not in variants:
        return f"torch {torch.get('version')} is a {variant} build (CC {cc} needs one of {', '.join(variants)})"
    return None


def recommended_release(snap: Any) -> tuple[str | None, str]:
    """``(release, "the newest release with kernels for every GPU judged whose CUDA build driver X
    runs")``: the vLLM release the fix moves to (:func:`bwdoctor.resolve.recommended_vllm`), with
    the words that say why, for messages that name it; ``(None, "")`` when no release fits."""
    from bwdoctor import resolve

    rec, _ = resolve.recommended_vllm(snap)
    if rec is None:
        return None, ""
    drv = str(snap.value("driver.version")).strip() if resolve.driver_version(snap) is not None else None
    return rec, ("the newest release with kernels for every GPU judged"
                 + (f" whose CUDA build driver {drv} runs" if drv else ""))
