"""The knowledge base: GPU specifications and software requirements per architecture.

The data lives in JSON files next to this module (``gpus.json``, ``arch.json``); every entry
carries its ``sources``. Files are read lazily on first use and cached, so importing this module
costs nothing (no heavy imports: only the standard library).

Public API::

    gpus() -> list[GpuSpec]
    find_gpu(name=None, pci_device_id=None) -> GpuSpec | None
    resolve_target("rtx-pro-6000" | "sm_120" | "12.0" | "B200") -> {"query", "name", "compute_capability", "gpu"}
    arch_requirements("12.0") -> ArchRequirements | None
    vllm_supports("6.1") -> False   # no vLLM release has kernels below compute capability 7.0
    architectures() -> list[ArchRequirements]
    cuda_min_driver("12.8") -> "570.26"           # driver the toolkit shipped with (strict floor)
    cuda_compat_min_driver("12.8") -> "525.60.13" # minor-version-compatibility floor for the major
    forward_compat_supported(gpu) -> True | False | None
    version_tuple("580.159.04") -> (580, 159, 4)
    normalize_cc("sm_90a") / normalize_cc((9, 0)) / normalize_cc("90") -> "9.0"
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

__all__ = [
    "ArchRequirements", "GpuSpec", "arch_requirements", "architectures", "cuda_compat_min_driver",
    "cuda_min_driver", "find_gpu", "forward_compat_supported", "gpus", "normalize_cc", "resolve_target",
    "version_tuple", "driver_at_least", "vllm_supports", "VLLM_MIN_COMPUTE_CAPABILITY",
]

# vLLM's CUDA builds need compute capability 7.0 or newer (vLLM GPU installation docs; every PyPI wheel's
# lowest SASS is sm_70, sm_75 from 0.20).
VLLM_MIN_COMPUTE_CAPABILITY = "7.0"

_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class GpuSpec:
    """One GPU product. ``nvlink`` is False or ``{"links": n|None, "bandwidth_gbs": x, "version": v,
    "bridge": bool}``. TFLOPS are dense (no sparsity), None when not known."""

    key: str
    name: str
    aliases: tuple[str, ...]
    compute_capability: str
    arch: str
    memory_type: str
    memory_gib: float
    memory_bandwidth_gbs: float
    nvlink: Any
    pcie_gen: int | None
    pcie_lanes: int | None
    power_w: int | None
    fp8: bool
    fp4: bool
    mig_max_instances: int | None
    pci_device_ids: tuple[str, ...]
    bf16_dense_tflops: float | None
    fp8_dense_tflops: float | None
    fp4_dense_tflops: float | None
    sources: tuple[str, ...]
    fp16_dense_tflops: float | None = None  # FP16 tensor rate, for GPUs without BF16 (Volta, Turing) or where quoted
    segment: str = ""  # datacenter | workstation | geforce | embedded
    form_factor: str = ""
    boost_clock_mhz: int | None = None
    mig_profiles: tuple[str, ...] = ()
    min_driver: str | None = None
    ecc: bool | None = None
    forward_compat: bool | None = None
    nvml_memory_total_mib: int | None = None
    confidence: str = "high"
    notes: str = ""

    @property
    def has_nvlink(self) -> bool:
        return bool(self.nvlink)

    @property
    def nvlink_bandwidth_gbs(self) -> float | None:
        return self.nvlink.get("bandwidth_gbs") if isinstance(self.nvlink, dict) else None

    @property
    def nvlink_bridge(self) -> bool:
        """NVLink only through an optional bridge (PCIe cards such as H100 PCIe / NVL)."""
        return isinstance(self.nvlink, dict) and bool(self.nvlink.get("bridge"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k in self.__dataclass_fields__:
            v = getattr(self, k)
            out[k] = list(v) if isinstance(v, tuple) else v
        return out


@dataclass(frozen=True)
class ArchRequirements:
    """Software requirements of one compute capability. ``vllm_max``/``torch_max`` are exclusive /
    inclusive upper bounds (None = none known); ``torch_cuda_variants``: PyTorch CUDA variants whose
    wheels carry SASS that runs on this architecture."""

    compute_capability: str
    sm: str
    arch_name: str
    min_driver: str | None
    min_cuda: str | None
    torch_min: str | None
    torch_cuda_variants: tuple[str, ...]
    vllm_min: str | None
    flashinfer_min: str | None
    triton_min: str | None
    nccl_min: str | None
    sources: tuple[str, ...]
    max_cuda_major: int | None = None
    torch_max: str | None = None
    vllm_max: str | None = None
    vllm_supported: bool = True
    flashinfer_supported: bool = True
    fp8: bool = False
    fp4: bool = False
    bf16: bool = True
    example_gpus: tuple[str, ...] = field(default_factory=tuple)
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k in self.__dataclass_fields__:
            v = getattr(self, k)
            out[k] = list(v) if isinstance(v, tuple) else v
        return out


# ----------------------------------------------------------------------------------- loading


def _load(name: str) -> dict[str, Any]:
    with open(_DIR / name, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{name}: top level must be an object")
    return data


def _tuple(v: Any) -> tuple:
    return tuple(v) if isinstance(v, (list, tuple)) else ()


@cache
def _gpus() -> tuple[GpuSpec, ...]:
    out = []
    fields = GpuSpec.__dataclass_fields__
    for raw in _load("gpus.json")["gpus"]:
        kw = {k: v for k, v in raw.items() if k in fields}
        for k in ("aliases", "pci_device_ids", "sources", "mig_profiles"):
            kw[k] = _tuple(raw.get(k))
        kw["pci_device_ids"] = tuple(_norm_pci(p) or p for p in kw["pci_device_ids"])
        out.append(GpuSpec(**kw))
    return tuple(out)


@cache
def _arch_doc() -> dict[str, Any]:
    return _load("arch.json")


@cache
def _archs() -> tuple[ArchRequirements, ...]:
    out = []
    fields = ArchRequirements.__dataclass_fields__
    for raw in _arch_doc()["architectures"]:
        kw = {k: v for k, v in raw.items() if k in fields}
        for k in ("torch_cuda_variants", "sources", "example_gpus"):
            kw[k] = _tuple(raw.get(k))
        out.append(ArchRequirements(**kw))
    return tuple(out)


def gpus() -> list[GpuSpec]:
    """Every GPU in the knowledge base."""
    return list(_gpus())


def architectures() -> list[ArchRequirements]:
    """The requirement matrix, one row per compute capability."""
    return list(_archs())


# ----------------------------------------------------------------------------------- helpers


def version_tuple(text: Any) -> tuple[int, ...]:
    """Numeric parts of a dotted version ("580.159.04" -> (580, 159, 4); "2.7.0+cu128" -> (2, 7, 0)).
    Returns () when there is no leading number."""
    if text is None:
        return ()
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", str(text))
    if not m:
        return ()
    return tuple(int(p) for p in m.group(1).split("."))


def driver_at_least(version: Any, minimum: Any) -> bool | None:
    """Compare driver versions numerically; None when either is unparseable."""
    a, b = version_tuple(version), version_tuple(minimum)
    if not a or not b:
        return None
    n = max(len(a), len(b))
    return a + (0,) * (n - len(a)) >= b + (0,) * (n - len(b))


_SM_RE = re.compile(r"^(?:sm|compute|arch|cc)[_\- ]?(\d{2,3})[afp]?$")


def normalize_cc(value: Any) -> str | None:
    """A compute capability in the canonical "M.m" form, from 9.0, "9.0", (9, 0), "sm_90a",
    "compute_120", "120", "12.0" ... or None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2:
        try:
            return f"{int(value[0])}.{int(value[1])}"
        except (TypeError, ValueError):
            return None
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, int):
        value = str(value)
    s = str(value).strip().lower()
    m = re.fullmatch(r"(\d{1,2})\.(\d)", s)
    if m:
        return f"{int(m.group(1))}.{int(m.group(2))}"
    m = _SM_RE.fullmatch(s)
    digits = m.group(1) if m else (s if re.fullmatch(r"\d{2,3}", s) else None)
    if digits is None:
        return None
    return f"{int(digits[:-1])}.{int(digits[-1])}"


def _norm_name(text: str) -> str:
    s = text.lower().replace("nvidia", "").replace("geforce", "").replace("tesla", "")
    return re.sub(r"[^a-z0-9]+", "", s)


def _norm_pci(value: Any) -> str | None:
    """"0x2BB110DE" / "2bb1" / 0x2330 / 590352606 -> "0x2bb1"."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        n = value
    else:
        s = str(value).strip().lower()
        if not s:
            return None
        try:
            n = int(s, 16) if not s.isdigit() or s.startswith("0") or len(s) <= 4 else int(s)
        except ValueError:
            return None
    if n > 0xFFFF:
        n >>= 16
    return f"0x{n:04x}"


# Words that, following a known product name, make it another product with other specifications.
_OTHER_PRODUCT_SUFFIXES = ("ti", "super", "laptop", "mobile", "maxq", "withmaxq", "embedded", "nano", "nx")


def _strip_mig(name: str) -> str:
    return re.split(r"\s+MIG\s+\d+g\.", name, maxsplit=1)[0]


def find_gpu(name: str | None = None, pci_device_id: Any = None) -> GpuSpec | None:
    """The GpuSpec for an NVML name ("NVIDIA H100 80GB HBM3"), a MIG device name, a short name
    ("RTX 5090"), a key ("b200") or a PCI device id ("0x2bb1", "0x2BB110DE"). The PCI id wins
    when both are given and it is known."""
    if pci_device_id is not None:
        pid = _norm_pci(pci_device_id)
        if pid:
            for g in _gpus():
                if pid in g.pci_device_ids:
                    return g
    if not name or not str(name).strip():
        return None
    raw = _strip_mig(str(name).strip())
    key = raw.lower()
    for g in _gpus():
        if key == g.key or key == g.name.lower():
            return g
    norm = _norm_name(raw)
    if not norm:
        return None
    for g in _gpus():
        if norm == _norm_name(g.name) or norm == _norm_name(g.key) or any(norm == _norm_name(a) for a in g.aliases):
            return g
    # Longest alias or full name contained in the given name (e.g. vendor suffixes), unless the text
    # right after it names a different product ("RTX 3080" inside "RTX 3080 Ti", "RTX 4080 SUPER",
    # "RTX 3080 Laptop GPU").
    best: tuple[int, GpuSpec] | None = None
    for g in _gpus():
        for cand in (g.name, *g.aliases):
            c = _norm_name(cand)
            if len(c) < 4 or (best is not None and len(c) <= best[0]):
                continue
            at = norm.find(c)
            while at >= 0 and norm[at + len(c):].startswith(_OTHER_PRODUCT_SUFFIXES):
                at = norm.find(c, at + 1)
            if at >= 0:
                best = (len(c), g)
    return best[1] if best else None


def arch_requirements(cc: Any) -> ArchRequirements | None:
    """Requirements for a compute capability ("12.0", "sm_120", (12, 0)); None when unknown."""
    norm = normalize_cc(cc)
    if norm is None:
        return None
    for a in _archs():
        if a.compute_capability == norm:
            return a
    return None


def vllm_supports(cc: Any) -> bool | None:
    """Whether any vLLM release supports a compute capability: False below 7.0 (Pascal and older: no
    vLLM build has their kernels) or where the requirement row says so, True where a row says so,
    None when the capability is unreadable or unknown and not below 7.0."""
    norm = normalize_cc(cc)
    if norm is None:
        return None
    if version_tuple(norm) < version_tuple(VLLM_MIN_COMPUTE_CAPABILITY):
        return False
    req = arch_requirements(norm)
    return None if req is None else bool(req.vllm_supported)


def resolve_target(query: str) -> dict[str, Any]:
    """Resolve ``--target``: a GPU key/name/alias ("rtx-pro-6000", "B200", "NVIDIA L40S") or an
    architecture ("sm_120", "sm_120a", "12.0", "120"). Raises ValueError when unknown."""
    if query is None or not str(query).strip():
        raise ValueError("empty target")
    q = str(query).strip()
    g = find_gpu(q)
    if g is not None:
        return {"query": q, "name": g.name, "compute_capability": g.compute_capability, "gpu": g.key}
    cc = normalize_cc(q)
    if cc is not None:
        req = arch_requirements(cc)
        if req is None:
            known = ", ".join(a.compute_capability for a in _archs())
            raise ValueError(f"unknown compute capability {cc!r} (known: {known})")
        return {"query": q, "name": f"{req.arch_name} ({req.sm})", "compute_capability": cc, "gpu": None}
    keys = ", ".join(g.key for g in _gpus())
    raise ValueError(f"unknown target {q!r}: give a GPU ({keys}) or an architecture (sm_120, 12.0)")


def _cuda_key(v: Any) -> tuple[int, ...]:
    t = version_tuple(v)[:3]
    return t + (0,) * (3 - len(t)) if t else ()


def cuda_min_driver(cuda_version: Any) -> str | None:
    """The Linux driver a CUDA toolkit/runtime version shipped with ("12.8" -> "570.26",
    "12.8.1" -> "570.124.06", "13.0" -> "580.65.06"). For a version between table rows the
    nearest lower row of the same major applies; None when unknown or older than the table."""
    want = _cuda_key(cuda_version)
    if not want:
        return None
    best: tuple[tuple[int, ...], str] | None = None
    for ver, drv in _arch_doc()["cuda_toolkit_drivers"]["table"]:
        t = _cuda_key(ver)
        if t[0] == want[0] and t <= want and (best is None or t > best[0]):
            best = (t, drv)
    return best[1] if best else None


def cuda_compat_min_driver(cuda_version: Any) -> str | None:
    """Minor-version compatibility floor: the oldest driver that runs any CUDA <major>.x
    application ("12.8" -> "525.60.13", "13.0" -> "580.65.06"); None when unknown."""
    t = version_tuple(cuda_version)
    if not t:
        return None
    return _arch_doc()["cuda_minor_compat"]["floors"].get(str(t[0]))


def forward_compat_supported(gpu: GpuSpec | str | None) -> bool | None:
    """Whether the cuda-compat (forward compatibility) package can work on this GPU: True for
    data-centre parts, False for GeForce and ordinary workstation cards, None when unknown."""
    spec = gpu if isinstance(gpu, GpuSpec) else (find_gpu(gpu) if gpu else None)
    if spec is None:
        return None
    if spec.forward_compat is not None:
        return spec.forward_compat
    return _arch_doc()["forward_compat"]["segments"].get(spec.segment)


def forward_compat_info() -> dict[str, Any]:
    """The forward-compatibility rule with its sources."""
    return dict(_arch_doc()["forward_compat"])


def cuda_driver_table() -> list[tuple[str, str]]:
    """``[(cuda_version, min_driver), ...]`` as in the CUDA release notes."""
    return [(v, d) for v, d in _arch_doc()["cuda_toolkit_drivers"]["table"]]
