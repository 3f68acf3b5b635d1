"""The knowledge base: GPU specifications and software requirements per architecture.

The data lives in JSON files next to this module (``gpus.json``, ``arch.json``, ``drivers.json``,
``families.json``, ...); every entry carries its ``sources``, and every file is checked against its
JSON Schema in ``schema/`` when it is loaded: an unknown or missing field raises
:class:`KnowledgeBaseError` instead of being dropped. Files are read lazily on first use and cached, so importing this module
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

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Any

from bwdoctor.kb import _schema
from bwdoctor.kb._schema import KnowledgeBaseError

__all__ = [
    "ArchRequirements", "GpuSpec", "arch_requirements", "architectures", "cuda_compat_min_driver",
    "cuda_min_driver", "find_gpu", "forward_compat_supported", "gpus", "normalize_cc", "resolve_target",
    "version_tuple", "driver_at_least", "vllm_supports", "VLLM_MIN_COMPUTE_CAPABILITY", "VllmRange", "vllm_range",
    "family_cc", "driver_lists_gpu", "driver_branches", "recommended_driver_branches", "KnowledgeBaseError",
    "PLATFORMS", "quantization", "quant_kind", "native_fp8", "native_fp4", "marlin_fallback",
    "feature_driver_floors", "torch_pypi_cuda", "torch_index_variants", "torch_pypi_variant", "flashinfer_pin_for",
    "nvml_enums",
]


def __getattr__(name: str) -> Any:
    if name == "VLLM_MIN_COMPUTE_CAPABILITY":
        return _vllm_min_cc()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _vllm_min_cc() -> str:
    """The lowest compute capability some vLLM release has kernels for (arch.json ``vllm`` ranges:
    7.0, every PyPI wheel's lowest SASS being sm_70 up to 0.19.1)."""
    from bwdoctor.resolve import cc_key

    have = [a.compute_capability for a in _archs() if a.vllm_supported]
    return min(have, key=cc_key)



@dataclass(frozen=True)
class GpuSpec:
    """One GPU product. ``nvlink`` is False or ``{"links": n|None, "bandwidth_gbs": x, "version": v,
    "bridge": bool}``. TFLOPS are dense (no sparsity), None when not known. ``first_listed_driver`` is
    the first driver whose README lists the product, not a numeric floor (see
    :func:`driver_lists_gpu`)."""

    key: str
    name: str
    aliases: tuple[str, ...]
    compute_capability: str
    arch: str
    segment: str
    form_factor: str
    host_platform: str | None  # the CPU architecture of every host the GPU comes in; None = several
    memory_type: str
    memory_gib: float
    memory_bandwidth_gbs: float | None
    nvlink: Any
    pcie_gen: int | None
    pcie_lanes: int | None
    power_w: int | None
    boost_clock_mhz: int | None
    mig_max_instances: int | None
    mig_profiles: tuple[str, ...]
    fp8: bool
    fp4: bool
    pci_device_ids: tuple[str, ...]
    bf16_dense_tflops: float | None
    fp8_dense_tflops: float | None
    fp4_dense_tflops: float | None
    first_listed_driver: str | None
    first_listed_driver_by_pci: Mapping[str, str]
    ecc: bool | None
    forward_compat: bool | None
    nvml_memory_total_mib: int | None
    confidence: str
    notes: str
    sources: tuple[str, ...]
    fp16_dense_tflops: float | None = None  # FP16 tensor rate, for GPUs without BF16 (Volta, Turing) or where quoted

    @property
    def min_driver(self) -> str | None:
        """The first driver that lists the product (kept under its old name; not a numeric floor)."""
        return self.first_listed_driver

    def first_listed_for(self, pci_device_id: Any = None) -> str | None:
        """The first driver that lists this PCI device id (a variant can be listed later than the
        product's first id); the product's when the id is unknown."""
        pid = _norm_pci(pci_device_id) if pci_device_id is not None else None
        if pid and pid in self.first_listed_driver_by_pci:
            return self.first_listed_driver_by_pci[pid]
        return self.first_listed_driver

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
            out[k] = list(v) if isinstance(v, tuple) else (dict(v) if isinstance(v, Mapping) else v)
        out["min_driver"] = self.first_listed_driver
        return out


PLATFORMS = ("x86_64", "aarch64")


@dataclass(frozen=True)
class VllmRange:
    """The vLLM PyPI releases with kernels for one compute capability on one host platform, both
    ends INCLUSIVE: ``first`` None = no release (``established``) or not known; ``last`` None = the
    newest release still has them."""

    platform: str
    first: str | None
    last: str | None
    established: bool
    note: str
    sources: tuple[str, ...]

    @property
    def supported(self) -> bool | None:
        if self.first is not None:
            return True
        return False if self.established else None

    def contains(self, version: Any) -> bool | None:
        """Whether a vLLM version has kernels here; None when the version or the range is unknown."""
        if self.first is None:
            return False if self.established else None
        from bwdoctor.resolve import in_range

        return in_range(version, self.first, self.last)


@dataclass(frozen=True)
class ArchRequirements:
    """Software requirements of one compute capability. ``torch_max`` is inclusive (None = none
    known); ``vllm`` holds the inclusive vLLM release range per host platform; ``torch_cuda_variants``:
    PyTorch CUDA variants whose wheels carry SASS that runs on this architecture."""

    compute_capability: str
    sm: str
    arch_name: str
    example_gpus: tuple[str, ...]
    min_driver: str | None
    min_cuda: str | None
    max_cuda_major: int | None
    torch_min: str | None
    torch_max: str | None
    torch_cuda_variants: tuple[str, ...]
    vllm: Mapping[str, VllmRange]
    flashinfer_min: str | None
    flashinfer_supported: bool
    triton_min: str | None
    nccl_min: str | None
    fp8: bool
    fp4: bool
    bf16: bool
    notes: str
    sources: tuple[str, ...]

    def vllm_range(self, platform: str | None = None) -> VllmRange:
        """The vLLM range on a host platform (``x86_64`` when None or unknown: its floors are the
        PyPI wheels' first)."""
        return self.vllm.get(platform or "x86_64") or self.vllm["x86_64"]

    @property
    def vllm_min(self) -> str | None:
        """First vLLM release with kernels for this capability on x86_64 (inclusive)."""
        return self.vllm_range().first

    @property
    def vllm_last(self) -> str | None:
        """Last vLLM release with kernels for this capability on x86_64 (inclusive); None = newest."""
        return self.vllm_range().last

    @property
    def vllm_supported(self) -> bool | None:
        """True when some vLLM release has kernels, False when established that none has, else None."""
        states = [r.supported for r in self.vllm.values()]
        if any(s is True for s in states):
            return True
        return False if all(s is False for s in states) else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k in self.__dataclass_fields__:
            v = getattr(self, k)
            if k == "vllm":
                out[k] = {p: {"first": r.first, "last": r.last} for p, r in v.items()}
                first = next(iter(v.values()))
                out[k].update(established=first.established, note=first.note, sources=list(first.sources))
                continue
            out[k] = list(v) if isinstance(v, tuple) else v
        out["vllm_min"], out["vllm_last"], out["vllm_supported"] = self.vllm_min, self.vllm_last, self.vllm_supported
        return out


# ----------------------------------------------------------------------------------- loading


def _load(name: str) -> dict[str, Any]:
    """``<name>.json`` checked strictly against ``schema/<name>.schema.json``."""
    return _schema.load(name.removesuffix(".json"))


@cache
def _gpus() -> tuple[GpuSpec, ...]:
    out = []
    for raw in _load("gpus")["gpus"]:
        kw = dict(raw)
        for k in ("aliases", "sources", "mig_profiles"):
            kw[k] = tuple(raw[k])
        kw["pci_device_ids"] = tuple(_norm_pci(p) or p for p in raw["pci_device_ids"])
        kw["first_listed_driver_by_pci"] = MappingProxyType(dict(raw["first_listed_driver_by_pci"]))
        out.append(GpuSpec(**kw))
    return tuple(out)


@cache
def _drivers_doc() -> dict[str, Any]:
    return _load("drivers")


@cache
def _archs() -> tuple[ArchRequirements, ...]:
    out = []
    for raw in _load("arch")["architectures"]:
        kw = dict(raw)
        for k in ("torch_cuda_variants", "sources", "example_gpus"):
            kw[k] = tuple(raw[k])
        v = raw["vllm"]
        kw["vllm"] = MappingProxyType({
            p: VllmRange(platform=p, first=v[p]["first"], last=v[p]["last"], established=v["established"],
                         note=v["note"], sources=tuple(v["sources"])) for p in PLATFORMS})
        out.append(ArchRequirements(**kw))
    return tuple(out)


@cache
def _families() -> tuple[tuple[re.Pattern[str], str], ...]:
    doc = _load("families")
    return tuple((re.compile(f["pattern"], re.I), f["compute_capability"]) for f in doc["families"])


@cache
def _family_guard() -> tuple[re.Pattern[str], re.Pattern[str]]:
    doc = _load("families")
    return re.compile(doc["name_words"], re.I), re.compile(doc["bare_model"])


def family_cc(name: str) -> str | None:
    """Compute capability of an NVIDIA GPU from its product-family name when the GPU table has no
    entry for it (``"Tesla P100-PCIE-16GB"`` -> ``"6.0"``); None otherwise. Rules: ``families.json``."""
    if not name:
        return None
    text = str(name).replace("_", " ")
    words, bare = _family_guard()
    if not words.search(text) and not bare.fullmatch(text):
        return None
    for rx, cc in _families():
        if rx.search(text):
            return cc
    return None


def gpus() -> list[GpuSpec]:
    """Every GPU in the knowledge base."""
    return list(_gpus())


def architectures() -> list[ArchRequirements]:
    """The requirement matrix, one row per compute capability."""
    return list(_archs())


# ----------------------------------------------------------------------------------- helpers


def version_tuple(text: Any) -> tuple[int, ...]:
    """Numeric parts of a dotted version ("580.159.04" -> (580, 159, 4); "2.7.0+cu128" -> (2, 7, 0)).
    Returns () when there is no leading number. (:func:`bwdoctor.resolve.version_tuple`.)"""
    from bwdoctor.resolve import version_tuple as _vt

    return _vt(text)


def driver_at_least(version: Any, minimum: Any) -> bool | None:
    """Compare driver versions numerically; None when either is unparseable. A numeric comparison
    says nothing about whether a driver lists a GPU: see :func:`driver_lists_gpu`."""
    from bwdoctor.resolve import at_least

    return at_least(version, minimum)


def normalize_cc(value: Any) -> str | None:
    """A compute capability in the canonical "M.m" form, from 9.0, "9.0", (9, 0), "sm_90a",
    "compute_120", "120", "12.0" ... or None. (:func:`bwdoctor.resolve.cc`.)"""
    from bwdoctor.resolve import cc

    return cc(value)


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
    vLLM build has their kernels) or where the requirement row establishes it, True where a row
    names a first release, None when the capability is unreadable or unknown and not below 7.0."""
    norm = normalize_cc(cc)
    if norm is None:
        return None
    if version_tuple(norm) < version_tuple(_vllm_min_cc()):
        return False
    req = arch_requirements(norm)
    return None if req is None else req.vllm_supported


def vllm_range(cc: Any, platform: str | None = None) -> VllmRange | None:
    """The inclusive range of vLLM PyPI releases with kernels for a compute capability on a host
    platform (``x86_64``/``aarch64``; None: x86_64), or None when the capability is unknown."""
    req = arch_requirements(cc)
    return req.vllm_range(platform) if req is not None else None


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
    for ver, drv in _drivers_doc()["cuda_toolkit_drivers"]["table"]:
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
    return _drivers_doc()["cuda_minor_compat"]["floors"].get(str(t[0]))


def forward_compat_supported(gpu: GpuSpec | str | None) -> bool | None:
    """Whether the cuda-compat (forward compatibility) package can work on this GPU: True for
    data-centre parts, False for GeForce and ordinary workstation cards, None when unknown."""
    spec = gpu if isinstance(gpu, GpuSpec) else (find_gpu(gpu) if gpu else None)
    if spec is None:
        return None
    if spec.forward_compat is not None:
        return spec.forward_compat
    return _drivers_doc()["forward_compat"]["segments"].get(spec.segment)


def forward_compat_info() -> dict[str, Any]:
    """The forward-compatibility rule with its sources."""
    return dict(_drivers_doc()["forward_compat"])


def cuda_driver_table() -> list[tuple[str, str]]:
    """``[(cuda_version, min_driver), ...]`` as in the CUDA release notes."""
    return [(v, d) for v, d in _drivers_doc()["cuda_toolkit_drivers"]["table"]]


def driver_branches() -> dict[str, Any]:
    """The driver branch lifecycle: ``{"branches": {"580": "LTSB, ..."}, "recommended": [580, ...],
    "sources": [...]}``."""
    return dict(_drivers_doc()["driver_branches"])


def recommended_driver_branches() -> tuple[int, ...]:
    """The driver branches a fix plan installs, oldest first."""
    return tuple(_drivers_doc()["driver_branches"]["recommended"])


def driver_lists_gpu(driver: Any, gpu: GpuSpec | None, pci_device_id: Any = None) -> tuple[bool | None, str]:
    """Whether a driver version lists (drives) a GPU, with the reason.

    ``first_listed_driver`` is the first driver whose README lists the product, not a numeric floor:
    a driver below it does not list the GPU (False); a driver known not to list it although it is
    numerically later (``drivers.json`` known_gaps) is False too; otherwise a later driver is taken
    to list it (True). None when the driver or the GPU's first-listed driver is unknown."""
    from bwdoctor.resolve import at_least, compare

    if gpu is None:
        return None, "GPU not in the knowledge base"
    first = gpu.first_listed_for(pci_device_id)
    if first is None:
        return None, "no first-listed driver recorded"
    pid = _norm_pci(pci_device_id) if pci_device_id is not None else None
    ids = {pid} if pid else set(gpu.pci_device_ids)
    for row in _drivers_doc()["known_gaps"]["rows"]:
        if compare(driver, row["driver"]) == 0 and ids and ids <= set(row["pci_device_ids"]):
            return False, f"driver {row['driver']} does not list it although it is later than {first}: {row['note']}"
    ok = at_least(driver, first)
    if ok is None:
        return None, "driver version unreadable"
    if not ok:
        return False, f"first listed in driver {first}"
    return True, f"first listed in driver {first}"


# ----------------------------------------------------------------------------------- quantization


@cache
def _quant_doc() -> dict[str, Any]:
    return _load("quantization")


def quantization() -> dict[str, Any]:
    """``quantization.json``: ``{"fp8": {...}, "fp4": {...}}`` with thresholds, method names and sources."""
    return {k: dict(v) if isinstance(v, dict) else v for k, v in _quant_doc().items()}


def quant_kind(text: Any) -> str | None:
    """``"fp4"``, ``"fp8"`` or None for a quantization method or a quantization_config text: exact
    method names first, then config markers; FP4 names before FP8 names (``modelopt_fp4`` is FP4)."""
    if text is None:
        return None
    low = str(text).strip().lower()
    if not low:
        return None
    doc = _quant_doc()
    for kind in ("fp4", "fp8"):
        if low in doc[kind]["quantization_methods"]:
            return kind
    for kind in ("fp4", "fp8"):
        if any(m in low for m in doc[kind]["config_markers"]) or any(
                len(m) >= 3 and m in low for m in doc[kind]["quantization_methods"]):
            return kind
    return None


def _native(kind: str, cc: Any) -> bool | None:
    from bwdoctor.resolve import cc_key, cc_tuple

    t = cc_tuple(cc)
    if t is None:
        return None
    req = arch_requirements(t)
    if req is not None:
        return bool(getattr(req, kind))
    return cc_key(t) >= cc_key(_quant_doc()[kind]["native_min_cc"])


def native_fp8(cc: Any) -> bool | None:
    """FP8 tensor cores (vLLM's ``supports_fp8()``): the arch row's ``fp8`` flag, else capability >=
    ``quantization.json`` fp8.native_min_cc (8.9); None when unreadable."""
    return _native("fp8", cc)


def native_fp4(cc: Any) -> bool | None:
    """FP4 tensor cores: the arch row's ``fp4`` flag, else capability >= fp4.native_min_cc (10.0)."""
    return _native("fp4", cc)


def marlin_fallback(kind: str, cc: Any) -> bool | None:
    """Whether vLLM's weight-only Marlin path can run ``kind`` (``fp8``/``fp4``) checkpoints on ``cc``."""
    from bwdoctor.resolve import cc_key, cc_tuple

    t = cc_tuple(cc)
    if t is None:
        return None
    return cc_key(t) >= cc_key(_quant_doc()[kind]["marlin_min_cc"])


def feature_driver_floors(kind: str, gpu: GpuSpec | None) -> list[dict[str, Any]]:
    """Driver floors of a feature (``"mig"``) that apply to a GPU (``drivers.json`` feature_floors)."""
    if gpu is None:
        return []
    return [dict(r) for r in _drivers_doc()["feature_floors"]["rows"]
            if r["kind"] == kind and r["arch"] == gpu.arch and gpu.segment in r["segments"]]


# ----------------------------------------------------------------------------------- torch, FlashInfer


@cache
def _torch_doc() -> dict[str, Any]:
    return _load("torch")


def torch_pypi_cuda(torch_version: Any) -> str | None:
    """The CUDA of the default PyPI wheel of a torch release (``2.6.0`` -> ``12.4``; ``torch.json``)."""
    from bwdoctor.resolve import base_version, compare

    v = base_version(torch_version)
    if v is None:
        return None
    best = None
    for row in _torch_doc()["pypi_default"]:
        if compare(row["from"], v) != 1:
            best = row["cuda"]
    return best


def torch_index_variants() -> dict[str, tuple[str, ...]]:
    """``{"2.8": ("cu126", "cu128", "cu129"), ...}``: the CUDA variants download.pytorch.org publishes."""
    return {k: tuple(v) for k, v in _torch_doc()["index_variants"].items()}


def torch_first_with_cuda(cuda: str) -> tuple[str | None, str | None]:
    """The first torch minor published with a CUDA ``cuda`` build on download.pytorch.org, and the first
    release whose default PyPI wheel is built with that CUDA or newer (``"12.8"`` -> ``("2.7", "2.8.0")``)."""
    from bwdoctor.resolve import compare, variant_of_cuda, version_tuple

    variant = variant_of_cuda(cuda)
    index = sorted((m for m, vs in torch_index_variants().items() if variant in vs), key=version_tuple)
    default = next((row["from"] for row in _torch_doc()["pypi_default"] if compare(row["cuda"], cuda) != -1), None)
    return (index[0] if index else None), default


def ccs_with_nvlink_links(links: int) -> tuple[str, ...]:
    """The compute capabilities of the knowledge base's GPUs with ``links`` NVLinks per GPU: what an
    ``NV<links>`` entry of ``nvidia-smi topo -m`` allows the GPUs to be (NV18 -> 9.0, 10.0, 10.3)."""
    from bwdoctor.resolve import version_tuple

    ccs = {g.compute_capability for g in gpus() if isinstance(g.nvlink, dict) and g.nvlink.get("links") == links}
    return tuple(sorted(ccs, key=version_tuple))


def torch_pypi_variant(minor: str) -> str | None:
    """The CUDA variant of the default PyPI wheel of a torch minor (``"2.8"`` -> ``"cu128"``)."""
    from bwdoctor.resolve import variant_of_cuda

    cuda = torch_pypi_cuda(f"{minor}.0")
    return variant_of_cuda(cuda) if cuda else None


@cache
def _flashinfer_doc() -> dict[str, Any]:
    return _load("flashinfer")


def flashinfer_pin_for(vllm_version: Any) -> str | None:
    """The flashinfer-python a vLLM release pins (``flashinfer.json``); None before 0.10.1 or when unreadable."""
    from bwdoctor.resolve import base_version, compare

    v = base_version(vllm_version)
    if v is None:
        return None
    best = None
    for row in _flashinfer_doc()["vllm_pins"]:
        if compare(row["from"], v) != 1:
            best = row["flashinfer"]
    return best


# ----------------------------------------------------------------------------------- NVML


@cache
def nvml_enums() -> dict[str, Any]:
    """``nvml.json``: NVML enumerations with integer keys (``{"compute_modes": {0: "default", ...},
    "clock_event_reasons": {0x1: ("gpu_idle", meaning, costs_performance, smi_label), ...}, ...}``)."""
    doc = _load("nvml")
    out: dict[str, Any] = {}
    for k, v in doc.items():
        if k == "clock_event_reasons":
            out[k] = {int(r["bit"], 16): (r["name"], r["meaning"], r["costs_performance"], r["smi_label"]) for r in v}
        elif k in ("idle_bit",):
            out[k] = int(v, 16)
        elif k == "severe_reason_bits":
            out[k] = tuple(int(b, 16) for b in v)
        elif isinstance(v, dict) and k != "topology_help":
            out[k] = {int(n): name for n, name in v.items()}
        else:
            out[k] = v
    return out
