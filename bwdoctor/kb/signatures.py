"""Failure signatures as data: ``signatures.json`` (schema: ``schema/signatures.schema.json``).

One table maps an error text to a signature, the environment class it points at, the root cause
a classifier with no other facts names, and the remedies. The log parser, the smoke generation's
failure classifier and the probes' CUDA error kinds all read it. The file is validated strictly on
first use (an unknown or missing field, a bad label or a pattern that does not compile raises
:class:`SignatureTableError`) and each pattern is compiled once, lazily: importing this module
reads nothing.

Public API::

    signatures() -> tuple[Signature, ...]        # table order (the first match wins in classify)
    compiled() -> tuple[tuple[Signature, re.Pattern[str]], ...]
    captures(sig, match) -> tuple               # the groups of the wording that matched
    trigger_words() -> tuple[str, ...]            # union of every signature's pre-filter words
    classify(text) -> Signature | None            # first signature naming a root cause that matches
    probe_kind(text) -> str                       # "no_kernel_image", "driver_too_old", ... or "other"
    probe_kinds() -> dict[str, ProbeKind]
    python_package("tvm_ffi") -> "apache-tvm-ffi"   # None: not a module the serving stack imports
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from bwdoctor.types import ROOT_CAUSES

__all__ = ["PLACEHOLDERS", "ProbeKind", "Signature", "SignatureTableError", "captures", "classify", "compiled", "probe_kind",
           "probe_kinds", "python_package", "signatures", "trigger_words", "validate"]

_PATH = Path(__file__).resolve().parent / "signatures.json"

# env_class values that are not labels: the checks resolve them against the other facts.
PLACEHOLDERS = ("arch", "memory", "nccl", "nccl_hang", "kernel", "quant", "abi", "wsl", "xid", "pydep", "pydep_api")

_SIG_FIELDS = {"id": str, "patterns": list, "ignore_case": bool, "env_class": (str, type(None)),
               "root_cause": (str, type(None)), "remedies": list, "probe_kind": (str, type(None)),
               "meaning": str, "triggers": list, "examples": list}
_KIND_FIELDS = {"root_cause": (str, type(None)), "remedies": list, "meaning": str}
_TOP_FIELDS = {"schema", "description", "sources", "probe_kinds", "python_packages", "signatures"}


class SignatureTableError(ValueError):
    """The signature table is malformed (names the entry and the field)."""


@dataclass(frozen=True)
class Signature:
    id: str
    patterns: tuple[str, ...]
    ignore_case: bool
    env_class: str | None
    root_cause: str | None
    remedies: tuple[str, ...]
    probe_kind: str | None
    meaning: str
    triggers: tuple[str, ...]
    examples: tuple[str, ...]

    @property
    def pattern(self) -> str:
        """The wording classes as one alternation (group numbers as in each wording, in order)."""
        return "|".join(f"(?:{p})" for p in self.patterns)


@dataclass(frozen=True)
class ProbeKind:
    name: str
    root_cause: str | None
    remedies: tuple[str, ...]
    meaning: str


def _fields(where: str, raw: Any, spec: dict[str, Any]) -> None:
    if not isinstance(raw, dict):
        raise SignatureTableError(f"{where}: must be an object")
    unknown = sorted(set(raw) - set(spec))
    missing = sorted(set(spec) - set(raw))
    if unknown or missing:
        raise SignatureTableError(f"{where}: unknown fields {unknown}, missing fields {missing}")
    for key, typ in spec.items():
        if not isinstance(raw[key], typ):
            raise SignatureTableError(f"{where}.{key}: wrong type {type(raw[key]).__name__}")


def _strings(where: str, items: list[Any], nonempty: bool = True) -> tuple[str, ...]:
    if nonempty and not items:
        raise SignatureTableError(f"{where}: must not be empty")
    if not all(isinstance(x, str) and x for x in items):
        raise SignatureTableError(f"{where}: must hold non-empty strings")
    return tuple(items)


def validate(doc: Any, compile_patterns: bool = True) -> tuple[tuple[Signature, ...], dict[str, ProbeKind], dict[str, str]]:
    """Check a loaded table strictly and build its entries (raises :class:`SignatureTableError`).

    ``compile_patterns=False`` (the runtime loader) leaves the regular expressions to
    :func:`compiled`, which compiles each signature once and names the one that does not compile."""
    if not isinstance(doc, dict):
        raise SignatureTableError("top level must be an object")
    if set(doc) != _TOP_FIELDS:
        raise SignatureTableError(f"top-level fields must be {sorted(_TOP_FIELDS)}, got {sorted(doc)}")
    if doc["schema"] != 1:
        raise SignatureTableError(f"unknown schema {doc['schema']!r}")
    pkgs = doc["python_packages"]
    if not isinstance(pkgs, dict) or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in pkgs.items()):
        raise SignatureTableError("python_packages: must map import names to distribution names")
    kinds: dict[str, ProbeKind] = {}
    if not isinstance(doc["probe_kinds"], dict) or "other" not in doc["probe_kinds"]:
        raise SignatureTableError("probe_kinds: must be an object with an 'other' kind")
    for name, raw in doc["probe_kinds"].items():
        _fields(f"probe_kinds.{name}", raw, _KIND_FIELDS)
        if raw["root_cause"] is not None and raw["root_cause"] not in ROOT_CAUSES:
            raise SignatureTableError(f"probe_kinds.{name}.root_cause: unknown label {raw['root_cause']!r}")
        kinds[name] = ProbeKind(name, raw["root_cause"], _strings(f"probe_kinds.{name}.remedies", raw["remedies"],
                                                                  nonempty=bool(raw["root_cause"])), raw["meaning"])
    if not isinstance(doc["signatures"], list) or not doc["signatures"]:
        raise SignatureTableError("signatures: must be a non-empty list")
    out: list[Signature] = []
    seen: set[str] = set()
    for i, raw in enumerate(doc["signatures"]):
        where = f"signatures[{i}]" + (f" ({raw.get('id')})" if isinstance(raw, dict) else "")
        _fields(where, raw, _SIG_FIELDS)
        sid = raw["id"]
        if not re.fullmatch(r"[a-z][a-z0-9_]*", sid) or sid in seen:
            raise SignatureTableError(f"{where}.id: must be a unique snake_case name")
        seen.add(sid)
        env, rc, kind = raw["env_class"], raw["root_cause"], raw["probe_kind"]
        if env is not None and env not in ROOT_CAUSES and env not in PLACEHOLDERS:
            raise SignatureTableError(f"{where}.env_class: {env!r} is neither a label nor a placeholder")
        if rc is not None and (rc not in ROOT_CAUSES or rc == "none_env_ok"):
            raise SignatureTableError(f"{where}.root_cause: unknown label {rc!r}")
        if kind is not None and kind not in kinds:
            raise SignatureTableError(f"{where}.probe_kind: unknown kind {kind!r}")
        triggers = _strings(f"{where}.triggers", raw["triggers"])
        if any(t != t.lower() for t in triggers):
            raise SignatureTableError(f"{where}.triggers: must be lower case")
        patterns = _strings(f"{where}.patterns", raw["patterns"])
        if compile_patterns:
            _compile_each(where, patterns, re.I if raw["ignore_case"] else 0)
        out.append(Signature(sid, patterns, raw["ignore_case"], env, rc,
                             _strings(f"{where}.remedies", raw["remedies"], nonempty=False), kind, raw["meaning"],
                             triggers, _strings(f"{where}.examples", raw["examples"])))
    return tuple(out), kinds, {k: v for k, v in pkgs.items() if not k.startswith("_")}


@cache
def _table() -> tuple[tuple[Signature, ...], dict[str, ProbeKind], dict[str, str]]:
    from bwdoctor.kb import _schema

    try:
        doc = _schema.load("signatures", _PATH)  # the shared strict schema check of every knowledge-base file
    except _schema.KnowledgeBaseError as exc:
        raise SignatureTableError(str(exc)) from None
    return validate(doc, compile_patterns=False)


def python_package(module: str | None) -> str | None:
    """The PyPI distribution of a serving-stack module (``tvm_ffi`` -> ``apache-tvm-ffi``), or None when the
    module is not one the stack is known to import."""
    if not module:
        return None
    table = _table()[2]
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        if name in table:
            return table[name]
    return None


def signatures() -> tuple[Signature, ...]:
    return _table()[0]


def probe_kinds() -> dict[str, ProbeKind]:
    return dict(_table()[1])


def _compile_each(where: str, patterns: tuple[str, ...] | list[str], flags: int) -> None:
    for p in patterns:
        try:
            re.compile(p, flags)
        except re.error as exc:
            raise SignatureTableError(f"{where}.patterns: {p!r} does not compile: {exc}") from None


@cache
def compiled() -> tuple[tuple[Signature, re.Pattern[str]], ...]:
    """Each signature with its wordings compiled as one alternation (compiled once, on first use)."""
    return tuple((sig, pattern_of(sig)) for sig in signatures())


_PATTERNS: dict[str, re.Pattern[str]] = {}


def pattern_of(sig: Signature) -> re.Pattern[str]:
    """One signature's wordings compiled as one alternation, the first time that row is tried (a log
    scan compiles only the rows whose trigger words its lines contain).

    A wording that does not compile is reported by the signature it belongs to; the row is not
    compiled a second time wording by wording when its alternation compiles."""
    rx = _PATTERNS.get(sig.id)
    if rx is not None:
        return rx
    flags = re.I if sig.ignore_case else 0
    try:
        rx = _PATTERNS[sig.id] = re.compile(sig.pattern, flags | re.M)
    except re.error:
        _compile_each(f"signatures ({sig.id})", sig.patterns, flags)
        raise
    return rx


@cache
def _group_ranges(sig_id: str) -> tuple[tuple[int, int], ...]:
    sig = next(s for s in signatures() if s.id == sig_id)
    out = []
    first = 1
    for p in sig.patterns:
        n = re.compile(p).groups
        out.append((first, first + n))
        first += n
    return tuple(out)


def captures(sig: Signature, m: re.Match[str]) -> tuple[str | None, ...]:
    """The groups of the wording that matched, numbered from 0 within that wording."""
    for lo, hi in _group_ranges(sig.id):
        if hi > lo and any(m.group(k) is not None for k in range(lo, hi)):
            return tuple(m.group(k) for k in range(lo, hi))
    return ()


@cache
def trigger_words() -> tuple[str, ...]:
    return tuple(dict.fromkeys(t for s in signatures() for t in s.triggers))


def classify(text: str | None) -> Signature | None:
    """The first signature (table order) that names a root cause and matches ``text``."""
    if not text:
        return None
    for sig, rx in compiled():
        if sig.root_cause and rx.search(text):
            return sig
    return None


def probe_kind(text: str | None) -> str:
    """The probe error kind of a CUDA/torch error text (``other`` when none matches)."""
    if not text:
        return "other"
    for sig, rx in compiled():
        if sig.probe_kind and rx.search(text):
            return sig.probe_kind
    return "other"
