"""The CUDA runtime majors an environment's nvidia-* wheels carry (shared by the package collector
and the pip/conda list parsers)."""

from __future__ import annotations

from typing import Any

from bwdoctor import lazy_regex
from bwdoctor.resolve import base_version

# CUDA runtime libraries proper (nvidia-<lib>-cuNN); DSL and tooling wheels that merely carry a cuNN
# suffix (nvidia-cutlass-dsl-libs-cu12, pulled in beside CUDA 13 stacks) load no second runtime.
CU_SUFFIX = lazy_regex(r"^nvidia-(?:cuda-runtime|cuda-nvrtc|cuda-cupti|cublas|cudnn|cufft|curand|cusolver|cusparse|"
                       r"cusparselt|nccl|nvjitlink|nvtx|nvshmem|cufile|npp|nvjpeg)-cu(\d+)$")
UNSUFFIXED_RUNTIME = ("nvidia-cuda-runtime", "nvidia-cublas", "nvidia-cuda-nvrtc")


def cuda_runtimes(versions: dict[str, Any]) -> dict[str, Any] | None:
    """``{"majors": [12, 13], "evidence": {"12": ["nvidia-cublas-cu12 12.4.5.8", ...]}}`` from
    installed distributions (canonical name -> version), or None when no CUDA runtime wheel is there."""
    evidence: dict[str, list[str]] = {}
    for name, version in versions.items():
        m = CU_SUFFIX.match(name)
        major = int(m.group(1)) if m else None
        if major is None and name in UNSUFFIXED_RUNTIME:
            v = base_version(version)
            major = v.release[0] if v else None
        if major is not None:
            evidence.setdefault(str(major), []).append(f"{name} {version}")
    if not evidence:
        return None
    return {"majors": sorted(int(k) for k in evidence), "evidence": evidence}
