"""Shared text helpers for the evidence parsers and the log-signature checks.

Nothing here raises on bad input: every helper returns ``None`` (or an empty value) when the
text does not say what it looks for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
VERSION_RE = re.compile(r"\d+(?:\.\d+)+")

# torch local version: "2.6.0+cu124", "2.5.1+rocm6.2", "2.7.0+cpu"
TORCH_LOCAL_RE = re.compile(r"\+(cu\d{2,3}|cpu|rocm[\d.]+|xpu)\b", re.I)


def strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text)


def clip(text: str, limit: int = 400) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def torch_variant(version: str | None) -> str | None:
    """``"2.6.0+cu124"`` -> ``"cu124"``; ``None`` when the version has no local part."""
    if not version:
        return None
    m = TORCH_LOCAL_RE.search(version)
    return m.group(1).lower() if m else None


def cuda_from_variant(variant: str | None) -> str | None:
    """``"cu124"`` -> ``"12.4"``, ``"cu130"`` -> ``"13.0"``, ``"cu92"`` -> ``"9.2"``."""
    if not variant or not variant.startswith("cu"):
        return None
    digits = variant[2:]
    if not digits.isdigit() or len(digits) < 2:
        return None
    return f"{digits[:-1]}.{digits[-1]}"


def variant_from_cuda(cuda: str | None) -> str | None:
    """``"12.4"`` -> ``"cu124"``."""
    if not cuda:
        return None
    m = re.match(r"^(\d+)\.(\d+)", cuda.strip())
    return f"cu{m.group(1)}{m.group(2)}" if m else None


def torch_fact(version: str | None, cuda: str | None = None) -> dict[str, Any]:
    """The ``torch`` fact from a version string and, when known, the CUDA it was built with."""
    variant = torch_variant(version)
    cuda = short_version(cuda, 2) if cuda else None
    if cuda is None:
        cuda = cuda_from_variant(variant)
    if variant is None and cuda:
        variant = variant_from_cuda(cuda)
    return {"version": version, "cuda": cuda, "variant": variant}


def short_version(text: str | None, parts: int = 2) -> str | None:
    """First ``parts`` components of the first version in ``text`` (``"12.4.131"`` -> ``"12.4"``)."""
    if not text:
        return None
    m = VERSION_RE.search(text)
    if not m:
        return None
    return ".".join(m.group(0).split(".")[:parts])


def cuda_from_driver_int(value: int | str) -> str | None:
    """CUDA's integer driver version (``12080``) -> ``"12.8"``."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    if n < 1000 or n > 99999:
        return None
    return f"{n // 1000}.{(n % 1000) // 10}"


def cc_from_sm(sm: str | int | None) -> str | None:
    """``"sm_120"``/``"120"``/``"sm_90a"``/``86`` -> ``"12.0"``/``"9.0"``/``"8.6"`` (:func:`bwdoctor.resolve.cc`)."""
    from bwdoctor import resolve

    if sm is None:
        return None
    m = re.search(r"(\d{2,3})", str(sm))
    return resolve.cc(m.group(1)) if m else None


def cc_tuple(cc: str | None) -> tuple[int, int] | None:
    """``"12.0"`` -> ``(12, 0)`` (:func:`bwdoctor.resolve.cc_tuple`)."""
    from bwdoctor import resolve

    return resolve.cc_tuple(cc)


def version_tuple(text: str | None) -> tuple[int, ...] | None:
    """The numeric parts of the first version in a text (at most four), None when there is none
    (:func:`bwdoctor.resolve.find_version` and :func:`bwdoctor.resolve.version_tuple`)."""
    from bwdoctor import resolve

    if not text:
        return None
    found = resolve.find_version(text)
    if found is None:
        m2 = re.search(r"\d+", str(text))
        return (int(m2.group(0)),) if m2 else None
    return resolve.version_tuple(found)[:4]


def canonical_name(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def size_to_bytes(number: str, unit: str) -> int | None:
    try:
        value = float(number.replace(",", ""))
    except ValueError:
        return None
    unit = unit.strip().lower().rstrip("s")
    scale = {"b": 1, "byte": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 10 ** 6,
             "mib": 1 << 20, "g": 1 << 30, "gb": 10 ** 9, "gib": 1 << 30, "t": 1 << 40, "tb": 10 ** 12,
             "tib": 1 << 40}.get(unit)
    return int(value * scale) if scale else None


def to_float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(str(text).replace(",", "").strip())
    except ValueError:
        return None


def to_int(text: str | None) -> int | None:
    f = to_float(text)
    return int(f) if f is not None else None


# --------------------------------------------------------------------------- knowledge base


def _kb() -> Any:
    try:
        from bwdoctor import kb  # the knowledge base may be absent in a partial install
    except Exception:
        return None
    return kb


def gpu_lookup(name: str) -> tuple[str | None, str | None]:
    """``(compute_capability, kb key)`` for a GPU name, or ``(None, None)``
    (:func:`bwdoctor.resolve.gpu_spec`, which also matches names cut short by nvidia-smi, then
    :func:`bwdoctor.resolve.family_cc`)."""
    from bwdoctor import resolve

    if not name:
        return None, None
    try:
        spec = resolve.gpu_spec(name=name)
        if spec is not None:
            return spec.compute_capability, spec.key
        return resolve.family_cc(name.strip().rstrip(".").strip()), None
    except Exception:
        return None, None


def family_cc(name: str | None) -> str | None:
    """Compute capability of an NVIDIA GPU from its product name when only the family is known
    (``bwdoctor/kb/families.json`` through :func:`bwdoctor.resolve.family_cc`)."""
    from bwdoctor import resolve

    return resolve.family_cc(name)


@lru_cache(maxsize=1)
def gpu_names() -> tuple[tuple[str, str], ...]:
    """``((lower-case name or alias, canonical name), ...)`` from the knowledge base, longest first,
    for finding GPU names mentioned in free text."""
    kb = _kb()
    if kb is None:
        return ()
    out: dict[str, str] = {}
    try:
        for g in kb.gpus():
            for cand in [g.name, *list(getattr(g, "aliases", []) or [])]:
                if cand and len(cand) >= 4:
                    out[cand.lower()] = g.name
    except Exception:
        return ()
    return tuple(sorted(out.items(), key=lambda kv: -len(kv[0])))


def arch_requirements(cc: str | None) -> Any:
    kb = _kb()
    if kb is None or not cc:
        return None
    try:
        return kb.arch_requirements(cc)
    except Exception:
        return None


def gpu_spec(name: str | None = None, key: str | None = None) -> Any:
    kb = _kb()
    if kb is None:
        return None
    try:
        if key:
            for g in kb.gpus():
                if g.key == key:
                    return g
        if name:
            return kb.find_gpu(name=name)
    except Exception:
        return None
    return None


def gpu_entry(name: str | None, source: str, **extra: Any) -> dict[str, Any]:
    """A ``gpu.<i>`` dict for a GPU known only by name: the compute capability comes from the
    knowledge base (recorded in ``cc_source``)."""
    entry: dict[str, Any] = {}
    if name:
        entry["name"] = name.strip()
    cc = extra.pop("compute_capability", None)
    if cc:
        entry["compute_capability"] = cc
        entry["cc_source"] = source
    elif name:
        found, key = gpu_lookup(name)
        if found:
            entry["compute_capability"] = found
            entry["cc_source"] = "kb.find_gpu(name)" if key else "GPU family (developer.nvidia.com/cuda-gpus)"
        if key:
            entry["kb_key"] = key
    entry.update({k: v for k, v in extra.items() if v is not None})
    return entry


def first(iterable: Iterable[Any], default: Any = None) -> Any:
    for item in iterable:
        return item
    return default
