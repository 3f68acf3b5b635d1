"""One resolution layer: versions, compute capabilities, GPU identity and the GPUs being judged.

Every plugin and remedy asks these questions here instead of parsing text itself, so the same
input gets the same answer everywhere. Nothing here raises on bad input: a value that cannot be
read resolves to ``None`` (or an empty tuple/list).

Versions::

    parse_version("v0.9.0"), parse_version("2.7.0+cu128"), parse_version("570.86.16") -> Version | None
    base_version("2.7.0+cu128") -> Version("2.7.0")
    local_variant("2.7.0+cu128") -> "cu128"
    version_tuple("580.159.04") -> (580, 159, 4)
    compare("0.10.1.1", "0.10.1") -> 1;  at_least("2.8.0+cu128", "2.8") -> True
    cuda_of_variant("cu128") -> "12.8";  variant_of_cuda("12.8.1") -> "cu128"

Compute capabilities::

    cc("sm_120a") == cc("12.0") == cc("(12, 0)") == cc((12, 0)) == cc("SM120a") == "12.0"
    cc("compute_90") -> "9.0";  cc_tuple("sm_100f") -> (10, 0);  sm("8.6") -> "sm_86"

GPU identity::

    gpu_spec(name="NVIDIA RTX PRO 6000 Blac...")  -> the knowledge base's GpuSpec (unique prefix)
    gpu_spec(pci_device_id="0x2BB110DE"), gpu_spec(key="b200")
    family_cc("Tesla P100-PCIE-16GB") -> "6.0"   (GPU families in bwdoctor/kb/families.json)

The GPUs being judged::

    judged_gpus(snapshot) -> [JudgedGpu, ...]   # live or recorded gpu.<i>, else --target

The vLLM release (checks, the diagnosis and the remedies ask the same functions)::

    vllm_bounds(snapshot) -> ("0.9.2", None, None)      # releases with kernels for every judged GPU
    recommended_vllm(snapshot) -> ("0.33.0", "why")     # newest of those whose CUDA build the driver runs
    vllm_in_use(snapshot, prefer_config=True) -> ("0.6.2", "the configuration's pin", ["config.vllm_pin"])
    vllm_release(snapshot) -> VllmRelease(current="0.6.2", target="0.33.0", ...)  # .advice: "0.33.0"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from packaging.version import Version

    from bwdoctor.kb import GpuSpec
    from bwdoctor.types import Snapshot

__all__ = [
    "JudgedGpu", "VllmRelease", "at_least", "base_version", "cc", "cc_key", "cc_tuple", "compare", "cuda_of_variant",
    "family_cc", "find_version", "gpu_cc", "gpu_spec", "host_platform", "in_range", "judged_gpus", "local_variant",
    "parse_version", "platform_of", "recommended_vllm", "short_version", "sm", "variant_of_cuda", "version_tuple",
    "cuda_compat_driver", "driver_version", "vllm_bounds", "vllm_in_use", "vllm_release",
]


def _known(value: Any) -> bool:
    from bwdoctor.types import known

    return known(value)


# ----------------------------------------------------------------------------------- versions

# A PEP 440 version at the start of the text, with an optional local part ("+cu128").
_VERSION_AT_START = re.compile(
    r"\s*[vV]?(\d+(?:\.\d+)*(?:[-_.]?(?:a|b|rc|alpha|beta|c|pre|preview)\d*)?(?:[-_.]?(?:post|rev|r)\d*)?"
    r"(?:[-_.]?dev\d*)?)(\+[A-Za-z0-9]+(?:[-_.][A-Za-z0-9]+)*)?")
_VERSION_ANYWHERE = re.compile(r"\d+(?:\.\d+)+")
_LOCAL_VARIANT = re.compile(r"^(cu\d{2,3}|cpu|rocm[\d.]*\d|xpu)\b", re.I)


@lru_cache(maxsize=4096)
def _parse(text: str) -> Version | None:
    from packaging.version import InvalidVersion, Version

    m = _VERSION_AT_START.match(text)
    if not m:
        return None
    for candidate in ((m.group(1) + (m.group(2) or "")), m.group(1)):
        try:
            return Version(candidate)
        except InvalidVersion:
            continue
    return None


def parse_version(text: Any) -> Version | None:
    """A version from text such as ``0.9.0``, ``v0.9.0``, ``0.10.1.1``, ``2.7.0+cu128``, ``3.5.0rc1``,
    ``570.86.16`` (a driver) or ``12.8.93`` (nvcc); trailing words are ignored ("2.7.0 (cu128)").
    The local part (``+cu128``) is kept; None when the text does not start with a version."""
    from packaging.version import Version

    if isinstance(text, Version):
        return text
    if text is None or isinstance(text, bool) or not _known(text):
        return None
    if isinstance(text, int):
        text = str(text)
    if not isinstance(text, str):
        text = str(text)
    return _parse(text.strip()[:200])


def base_version(text: Any) -> Version | None:
    """The public release without local, dev or post parts: ``2.7.0+cu128`` -> ``2.7.0``."""
    from packaging.version import Version

    v = parse_version(text)
    return Version(v.base_version) if v is not None else None


def local_variant(text: Any) -> str | None:
    """The build variant in a version's local part: ``2.7.0+cu128`` -> ``cu128``, ``2.5.1+rocm6.2`` ->
    ``rocm6.2``, ``2.7.0+cpu`` -> ``cpu``; None when there is none."""
    if text is None or not _known(text):
        return None
    s = str(text)
    if "+" not in s:
        return None
    m = _LOCAL_VARIANT.match(s.split("+", 1)[1].strip())
    return m.group(1).lower() if m else None


def version_tuple(text: Any) -> tuple[int, ...]:
    """The numeric release parts of a version (``"580.159.04"`` -> ``(580, 159, 4)``,
    ``"2.7.0+cu128"`` -> ``(2, 7, 0)``); ``()`` when the text does not start with a number."""
    if isinstance(text, (tuple, list)):
        try:
            return tuple(int(p) for p in text)
        except (TypeError, ValueError):
            return ()
    v = parse_version(text)
    if v is not None:
        return tuple(v.release)
    m = re.match(r"\s*[vV]?(\d+(?:\.\d+)*)", str(text)) if text is not None else None
    return tuple(int(p) for p in m.group(1).split(".")) if m else ()


def find_version(text: Any) -> str | None:
    """The first dotted version anywhere in a text (``"CUDA Version: 12.8"`` -> ``"12.8"``)."""
    if text is None:
        return None
    m = _VERSION_ANYWHERE.search(str(text))
    return m.group(0) if m else None


def short_version(text: Any, parts: int = 2) -> str | None:
    """The first ``parts`` components of the first version in a text (``"12.4.131"`` -> ``"12.4"``)."""
    found = find_version(text)
    return ".".join(found.split(".")[:parts]) if found else None


def compare(a: Any, b: Any) -> int | None:
    """-1, 0 or 1 comparing two versions' public releases (``0.9.0+cu128`` equals ``0.9.0``; missing
    trailing parts count as 0); None when either is unreadable."""
    va, vb = base_version(a), base_version(b)
    if va is None or vb is None:
        return None
    return (va > vb) - (va < vb)


def at_least(have: Any, need: Any) -> bool | None:
    """Whether version ``have`` is at least ``need`` (public releases compared); None when unreadable."""
    c = compare(have, need)
    return None if c is None else c >= 0


def in_range(version: Any, first: Any, last: Any) -> bool | None:
    """Whether a version lies in the inclusive range ``[first, last]`` (``last`` None: no upper end);
    None when the version or ``first`` is unreadable. Compares public releases."""
    lo = at_least(version, first)
    if lo is None:
        return None
    if not lo:
        return False
    if last is None:
        return True
    hi = compare(version, last)
    return None if hi is None else hi <= 0


def cuda_of_variant(variant: Any) -> str | None:
    """``"cu128"`` -> ``"12.8"``, ``"cu92"`` -> ``"9.2"``; None for ``cpu``, ``rocm6.2`` and the like."""
    m = re.fullmatch(r"cu(\d+)(\d)", str(variant or "").strip().lower())
    return f"{int(m.group(1))}.{m.group(2)}" if m else None


def variant_of_cuda(cuda: Any) -> str | None:
    """``"12.8"`` / ``"12.8.1"`` -> ``"cu128"``."""
    m = re.match(r"^\s*(\d+)\.(\d+)", str(cuda or ""))
    return f"cu{m.group(1)}{m.group(2)}" if m else None


# ----------------------------------------------------------------------------------- compute capability

_CC_PREFIXED = re.compile(r"(?:sm|compute|arch|cc)[_\- ]?(\d{2,3})[afp]?")
_CC_DOTTED = re.compile(r"(\d{1,2})\.(\d)")
_CC_PAIR = re.compile(r"\(\s*(\d{1,2})\s*,\s*(\d{1,2})\s*\)")


def cc_tuple(value: Any) -> tuple[int, int] | None:
    """A compute capability as ``(major, minor)`` from ``"12.0"``, ``12.0``, ``(12, 0)``, ``"(12, 0)"``,
    ``"sm_120a"``, ``"SM120a"``, ``"compute_90"``, ``"sm_100f"``, ``"120"`` or ``90``; None otherwise."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            return None
        try:
            return int(value[0]), int(value[1])
        except (TypeError, ValueError):
            return None
    if isinstance(value, float):
        value = f"{value:.1f}"
    s = str(value).strip().lower()
    for rx in (_CC_DOTTED, _CC_PAIR):
        m = rx.fullmatch(s)
        if m:
            return int(m.group(1)), int(m.group(2))
    m = _CC_PREFIXED.fullmatch(s)
    digits = m.group(1) if m else (s if re.fullmatch(r"\d{1,3}", s) else None)
    if digits is None:
        return None
    if len(digits) == 1:
        return int(digits), 0
    return int(digits[:-1]), int(digits[-1])


def cc(value: Any) -> str | None:
    """A compute capability in the canonical ``"M.m"`` form (see :func:`cc_tuple`), or None."""
    t = cc_tuple(value)
    return f"{t[0]}.{t[1]}" if t else None


def sm(value: Any) -> str | None:
    """``"12.0"`` -> ``"sm_120"``; None when the value is not a compute capability."""
    t = cc_tuple(value)
    return f"sm_{t[0]}{t[1]}" if t else None


def cc_key(value: Any) -> tuple[int, int]:
    """Sort key for compute capabilities; unreadable ones sort first."""
    return cc_tuple(value) or (-1, -1)


# ----------------------------------------------------------------------------------- GPU identity


def _kb() -> Any:
    from bwdoctor import kb

    return kb


def _spec_by_key(key: str) -> GpuSpec | None:
    for g in _kb().gpus():
        if g.key == key:
            return g
    return None


@lru_cache(maxsize=1024)
def _spec_by_name(name: str) -> GpuSpec | None:
    kb = _kb()
    clean = name.strip()
    truncated = clean.endswith("...") or clean.endswith("\u2026")
    clean = clean.rstrip(".\u2026").strip()
    if not clean:
        return None
    spec = kb.find_gpu(name=clean)
    if spec is not None and not truncated:
        return spec
    if truncated or len(clean) >= 18:
        # nvidia-smi cuts long names ("NVIDIA RTX PRO 6000 Blac..."): a prefix of exactly one product.
        low = clean.lower()
        hits = [g for g in kb.gpus() if any(c and c.lower().startswith(low) for c in (g.name, *g.aliases))]
        keys = {h.key for h in hits}
        if len(keys) == 1:
            return hits[0]
        if spec is not None and spec.key in keys:
            return spec
        if hits:
            return None  # ambiguous prefix: several products
    return spec


def gpu_spec(name: Any = None, pci_device_id: Any = None, key: Any = None) -> GpuSpec | None:
    """The knowledge base's GpuSpec for a key (``"b200"``), a PCI device id (``"0x2bb1"``,
    ``"0x2BB110DE"``: it wins when known), or a name: an NVML name, a MIG device name, a short name
    (``"RTX 5090"``) or an nvidia-smi-truncated name (``"NVIDIA RTX PRO 6000 Blac..."``, matched when
    the prefix names exactly one product). None when unknown."""
    kb = _kb()
    if isinstance(key, str) and key:
        spec = _spec_by_key(key) or kb.find_gpu(name=key)
        if spec is not None:
            return spec
    if pci_device_id is not None and _known(pci_device_id):
        spec = kb.find_gpu(pci_device_id=pci_device_id)
        if spec is not None:
            return spec
    if isinstance(name, str) and name.strip() and _known(name):
        return _spec_by_name(name)
    return None


def family_cc(name: Any) -> str | None:
    """The compute capability of an NVIDIA product family when the knowledge base has no entry for
    the product (``"Tesla P100-PCIE-16GB"`` -> ``"6.0"``); rules in ``bwdoctor/kb/families.json``."""
    if not isinstance(name, str) or not name.strip():
        return None
    return _kb().family_cc(name)


def gpu_cc(gpu: Any) -> tuple[str | None, GpuSpec | None, str | None]:
    """``(compute capability, GpuSpec, where the capability came from)`` for a ``gpu.<i>`` or
    ``target`` dict: the dict's own ``compute_capability`` first, else the knowledge base (by key,
    PCI id, name), else the product family; ``(None, spec-or-None, None)`` when unknown."""
    if not isinstance(gpu, dict):
        return None, None, None
    name = gpu.get("name") if isinstance(gpu.get("name"), str) else None
    spec = gpu_spec(name=name, pci_device_id=gpu.get("pci_device_id"),
                    key=gpu.get("gpu") if isinstance(gpu.get("gpu"), str) else gpu.get("kb_key"))
    own = cc(gpu.get("compute_capability")) if _known(gpu.get("compute_capability")) else None
    if own:
        return own, spec, str(gpu.get("cc_source") or "fact")
    if spec is not None:
        return spec.compute_capability, spec, "knowledge base"
    fam = family_cc(name)
    if fam:
        return fam, None, "GPU family"
    return None, None, None


# ----------------------------------------------------------------------------------- platform

_PLATFORMS = {"x86_64": "x86_64", "amd64": "x86_64", "x64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64",
              "sbsa": "aarch64"}


def platform_of(text: Any) -> str | None:
    """``"x86_64"`` or ``"aarch64"`` from a machine name (``arm64``, ``amd64``, ``linux/arm64``); None
    otherwise."""
    if not isinstance(text, str) or not text.strip():
        return None
    s = text.strip().lower().rsplit("/", 1)[-1]
    return _PLATFORMS.get(s)


def host_platform(snap: Snapshot) -> str | None:
    """The CPU architecture of the host being judged (``host.arch``), normalised; None when unknown."""
    return platform_of(snap.value("host.arch"))


# ----------------------------------------------------------------------------------- judged GPUs


@dataclass(frozen=True)
class JudgedGpu:
    """One GPU a check judges: a ``gpu.<i>`` fact (live or recorded) or the ``--target``."""

    index: int | None  # None for the --target
    key: str  # the fact key: "gpu.0" or "target"
    name: str | None
    cc: str | None
    spec: GpuSpec | None
    origin: str  # "gpu" (a gpu.<i> fact, live or recorded) or "target"
    cc_source: str | None
    platform: str | None  # host CPU architecture: "x86_64", "aarch64" or None when unknown
    fact: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    source: str = ""  # the fact's provenance: "nvml" (live), "nvidia-smi:line 9" (recorded), "cli:--target"

    @property
    def subject(self) -> str:
        return "target" if self.index is None else f"gpu{self.index}"

    @property
    def is_target(self) -> bool:
        return self.index is None

    @property
    def sm(self) -> str | None:
        return sm(self.cc)

    @property
    def display_name(self) -> str:
        return self.name or (self.spec.name if self.spec is not None else None) or "unknown GPU"


def _source(snap: Snapshot, key: str) -> str:
    f = snap.facts.get(key)
    return str(getattr(f, "source", "") or "")


def _gpu_platform(snap: Snapshot, spec: GpuSpec | None) -> str | None:
    return host_platform(snap) or (spec.host_platform if spec is not None else None)


def judged_gpus(snap: Snapshot, *, usable_only: bool = True, need_cc: bool = True,
                distinct_cc: bool = False) -> list[JudgedGpu]:
    """The GPUs a check judges: every ``gpu.<i>`` fact (live or recorded), else the ``target``.

    ``usable_only`` leaves out GPUs that are lost or answered with an error; ``need_cc`` leaves out
    GPUs whose compute capability nothing resolves (then, with none left, the ``target`` is used);
    ``distinct_cc`` keeps the first GPU of each compute capability (8 identical GPUs: one)."""
    out: list[JudgedGpu] = []
    for i, g in snap.gpus():
        if usable_only and (g.get("lost") or g.get("error")):
            continue
        ccv, spec, how = gpu_cc(g)
        if need_cc and ccv is None:
            continue
        name = g.get("name") if isinstance(g.get("name"), str) and _known(g.get("name")) else None
        out.append(JudgedGpu(index=i, key=f"gpu.{i}", name=name, cc=ccv, spec=spec, origin="gpu", cc_source=how,
                             platform=_gpu_platform(snap, spec), fact=g, source=_source(snap, f"gpu.{i}")))
    if not out:
        t = snap.value("target")
        if isinstance(t, dict):
            ccv, spec, how = gpu_cc(t)
            if ccv is not None:
                name = t.get("name") or t.get("query")
                out.append(JudgedGpu(index=None, key="target", name=str(name) if name else None, cc=ccv, spec=spec,
                                     origin="target", cc_source=how, platform=_gpu_platform(snap, spec), fact=t,
                                     source=_source(snap, "target")))
    if distinct_cc:
        seen: dict[Any, JudgedGpu] = {}
        for j in out:
            seen.setdefault((j.cc, j.platform), j)
        out = list(seen.values())
    return out


_NAME_SEPARATORS = re.compile(r"[-_.]+")


def canonical_name(name: str) -> str:
    """A distribution's canonical name (PEP 503: ``Flash_Attn`` and ``flash.attn`` are ``flash-attn``),
    as ``packaging.utils.canonicalize_name`` gives it, without importing packaging's tag machinery."""
    return _NAME_SEPARATORS.sub("-", name).lower()


# ----------------------------------------------------------------------------------- the vLLM release


def _public(text: Any) -> Version | None:
    from packaging.version import Version

    v = parse_version(text)
    return Version(v.public) if v is not None else None


def driver_version(snap: Snapshot) -> Version | None:
    """The NVIDIA driver of the host being judged (``driver.version``), None when unknown."""
    return _public(snap.value("driver.version"))


def cuda_compat_driver(cuda: Any) -> str | None:
    """The oldest driver that runs a CUDA runtime (minor-version compatibility within a major, else
    the driver the toolkit shipped with); None when unknown."""
    if not cuda or not _known(cuda):
        return None
    kb = _kb()
    try:
        return kb.cuda_compat_min_driver(str(cuda)) or kb.cuda_min_driver(str(cuda))  # type: ignore[no-any-return]
    except (KeyError, TypeError, ValueError):
        return None


def vllm_bounds(snap: Snapshot) -> tuple[str | None, str | None, str | None]:
    """``(first, last, unsupported cc)``: the vLLM releases (inclusive) with kernels for every judged
    GPU on its host platform (the knowledge base's ``arch.json`` ranges); ``unsupported`` names a
    capability no release supports."""
    lo: str | None = None
    hi: str | None = None
    kb = _kb()
    for j in judged_gpus(snap, distinct_cc=True):
        rng = kb.vllm_range(j.cc, j.platform)
        if rng is None:
            continue
        if rng.first is None:
            if rng.established:
                return None, None, j.cc
            continue
        if lo is None or compare(rng.first, lo) == 1:
            lo = rng.first
        if rng.last is not None and (hi is None or compare(rng.last, hi) == -1):
            hi = rng.last
    return lo, hi, None


def recommended_vllm(snap: Snapshot) -> tuple[str | None, str]:
    """``(release, why)``: the newest vLLM release bwdoctor knows that has kernels for every judged
    GPU (:func:`vllm_bounds`) and whose CUDA build the driver runs (``driver.version``, when known);
    ``(None, why)`` when no release fits."""
    from bwdoctor.kb import vllm as kbv

    versions = [v for v in kbv.known_versions() if (pv := _public(v)) is not None and not pv.is_prerelease]
    first, last, unsupported = vllm_bounds(snap)
    if unsupported:
        return None, f"vLLM does not support compute capability {unsupported}"
    lo, hi = _public(first), _public(last)
    have = driver_version(snap)
    best = None
    for v in versions:
        pv = _public(v)
        if pv is None or (lo and pv < lo) or (hi and pv > hi):
            continue
        if have is not None:
            floor = _public(cuda_compat_driver(kbv.build_cuda_for(v)))
            if floor and have < floor:
                continue
        best = v
    why = []
    if lo:
        why.append(f"first release with kernels for this GPU: {lo}")
    if hi:
        why.append(f"last release for it: {hi}")
    if have is not None:
        why.append(f"its CUDA build must run on driver {str(snap.value('driver.version')).strip()}")
    if best is None and have is not None and why:
        why.append("no release fits")
    return best, "; ".join(why)


def vllm_in_use(snap: Snapshot, prefer_config: bool = True) -> tuple[str | None, str, list[str]]:
    """``(version, how it is known, evidence keys)`` of the vLLM in use: the configuration's pin
    (``config.vllm_pin``), the installed ``vllm/envs.py`` (``vllm.env_vars``) or the reported vLLM
    (``vllm``), else the engine config's or the package list's; ``prefer_config`` puts the pin first
    (judging configuration files), else after the installed and reported versions."""
    def field_of(key: str) -> Any:
        v = snap.value(key)
        return v.get("version") if isinstance(v, dict) else None

    pk = snap.value("packages")
    listed = pk.get("vllm") if isinstance(pk, dict) else None
    order = [(field_of("config.vllm_pin"), "the configuration's pin", "config.vllm_pin"),
             (field_of("vllm.env_vars"), "installed", "vllm.env_vars"),
             (field_of("vllm"), "reported", "vllm")]
    if not prefer_config:
        order = order[1:] + order[:1]
    order += [(field_of("vllm.config"), "reported", "vllm.config"),
              (listed.get("version") if isinstance(listed, dict) else None, "installed", "packages")]
    for ver, how, key in order:
        if isinstance(ver, str) and _public(ver) is not None:
            return ver, how, [key]
    return None, "unknown", []


@dataclass(frozen=True)
class VllmRelease:
    """The vLLM release a configuration or environment runs, and the one a fix moves it to.

    ``target`` is set when a fix replaces the release: the one in use has no kernels for a judged GPU
    (older than the first or newer than the last release with them), or, for a configuration, its
    base image's CUDA predates the GPU (the base image becomes the official image of ``target``).
    Advice that depends on the release (flag names, variables) is phrased for :attr:`advice`."""

    current: str | None
    current_from: str  # "the configuration's pin", "installed", "reported" or "unknown"
    target: str | None
    why: str  # why it moves and how the target was chosen ("" when nothing moves it)
    evidence: tuple[str, ...] = ()
    reason: str = ""  # why it moves, in a few words: "vLLM 0.6.2 has no kernels for the GPU"

    @property
    def moves(self) -> bool:
        return self.target is not None and (self.current is None or compare(self.current, self.target) != 0)

    @property
    def advice(self) -> str | None:
        """The release advice is for: the one a fix moves to, else the one in use."""
        return self.target if self.moves else self.current


def _base_image_too_old(snap: Snapshot) -> str | None:
    """Why the configuration's base image (``config.base_image``) predates a judged GPU, or None."""
    img = snap.value("config.base_image")
    cuda = img.get("cuda_version") if isinstance(img, dict) else None
    if not cuda:
        return None
    kb = _kb()
    for j in judged_gpus(snap, distinct_cc=True):
        req = kb.arch_requirements(j.cc)
        need = getattr(req, "min_cuda", None) if req is not None else None
        if need and compare(cuda, need) == -1:
            return f"its base image's CUDA {cuda} predates compute capability {j.cc} (needs {need})"
    return None


def vllm_release(snap: Snapshot, prefer_config: bool = True) -> VllmRelease:
    """The vLLM release in use (:func:`vllm_in_use`) and the one a fix moves it to
    (:func:`recommended_vllm`), see :class:`VllmRelease`. Nothing moves when the GPUs or their
    ranges are unknown, or when no release fits."""
    current, how, keys = vllm_in_use(snap, prefer_config)
    first, last, unsupported = vllm_bounds(snap)
    reason = short = None
    if current is not None and not unsupported:
        if first and at_least(current, first) is False:
            reason = f"vLLM {current} predates {first}, the first release with kernels for the GPU"
            short = f"vLLM {current} has no kernels for the GPU"
        elif last and compare(current, last) == 1:
            reason = f"vLLM {current} is later than {last}, the last release with kernels for the GPU"
            short = f"vLLM {current} has no kernels for the GPU"
    if reason is None and prefer_config and not unsupported:
        reason = _base_image_too_old(snap)
        if reason:
            keys = keys + ["config.base_image"]
            short = "the base image predates the GPU"
    if reason is None:
        return VllmRelease(current, how, None, "", tuple(keys))
    target, why = recommended_vllm(snap)
    if target is None:
        return VllmRelease(current, how, None, f"{reason}, and no release fits ({why})", tuple(keys), short or "")
    return VllmRelease(current, how, target, f"{reason}; {target} is the newest that fits ({why})", tuple(keys),
                       short or "")
