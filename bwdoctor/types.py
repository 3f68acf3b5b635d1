"""Core data types: facts, snapshots, specs, findings, fix plans, reports.

Everything here is plain data that round-trips through JSON losslessly. Values stored in
facts must be JSON types (str, int, float, bool, None, list, dict with str keys) or
:class:`Unsupported`, which marks a field the source could not answer (NVML's NotSupported)
so that it is never mistaken for zero.
"""

from __future__ import annotations

import bisect
import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeGuard, TypeVar, cast

SNAPSHOT_SCHEMA_VERSION = 1
REPORT_SCHEMA_VERSION = 1

STATUSES = ("pass", "warn", "fail", "skip", "error")
SEVERITIES = ("info", "low", "medium", "high", "critical")
LEVELS = ("quick", "standard", "full")

ROOT_CAUSES = (
    "arch_not_in_torch_wheel",
    "arch_not_in_vllm_wheel",
    "driver_too_old_for_cuda",
    "driver_library_mismatch",
    "torch_vllm_abi_mismatch",
    "flashinfer_jit_toolchain",
    "triton_ptxas_toolchain",
    "attention_backend_unsupported",
    "fp8_unsupported_on_gpu",
    "fp4_kernel_arch_mismatch",
    "dtype_unsupported_on_gpu",
    "kv_cache_oom",
    "gpu_memory_contention",
    "nccl_p2p",
    "nccl_version_mismatch",
    "nccl_env_misconfig",
    "shm_too_small",
    "container_runtime",
    "wsl2",
    "mig",
    "fabric_manager_missing",
    "gpu_health",
    "python_dependency_broken",
    "none_env_ok",
)

CHECK_ID_RE = re.compile(r"^BWD-[A-Z][A-Z0-9]{1,11}-\d{3}$")


def level_rank(level: str) -> int:
    """Position of a level in quick < standard < full."""
    return LEVELS.index(level)


# --------------------------------------------------------------------------- facts


class Unsupported:
    """A value the source answered "not supported" (or could not answer) for.

    Serialised as ``{"__unsupported__": reason}`` so that it survives JSON round trips.
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str = "not supported") -> None:
        self.reason = str(reason)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unsupported) and other.reason == self.reason

    def __hash__(self) -> int:
        return hash(("Unsupported", self.reason))

    def __repr__(self) -> str:
        return f"Unsupported({self.reason!r})"

    def __bool__(self) -> bool:
        return False


def is_unsupported(value: Any) -> bool:
    return isinstance(value, Unsupported)


_T = TypeVar("_T")


def known(value: _T | Unsupported | None) -> TypeGuard[_T]:
    """True when a value is present and not :class:`Unsupported` (type checkers then know it is neither)."""
    return value is not None and not isinstance(value, Unsupported)


def to_jsonable(value: Any) -> Any:
    """Convert a fact value to plain JSON types (tuples become lists)."""
    if isinstance(value, Unsupported):
        return {"__unsupported__": value.reason}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [to_jsonable(v) for v in items]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"fact values must be JSON types, got {type(value).__name__}")


def from_jsonable(value: Any) -> Any:
    """Inverse of :func:`to_jsonable`."""
    if isinstance(value, dict):
        if set(value) == {"__unsupported__"}:
            return Unsupported(value["__unsupported__"])
        return {k: from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    return value


STATED = -1  # Fact.rank: written by a person in prose
INFERRED = -2  # Fact.rank: derived from other facts through the knowledge base
# the share of a check's confidence that survives when the weakest fact it judged has this rank
RANK_FACTOR = {0: 1.0, STATED: 0.8, INFERRED: 0.7}


@dataclass
class Fact:
    """One piece of knowledge about the machine, with where it came from.

    ``key`` is a dotted name (``driver.version``, ``gpu.0``, ``packages``); ``source`` is the
    provenance (``nvml``, ``collect_env:line 37``, ``vllm-log:line 812``).

    ``rank`` says how directly the source knows it: 0 (the default) for a machine or a tool's
    output (NVML, collect_env, nvidia-smi, pip list, a log line), ``STATED`` for what a person
    wrote in prose ("vLLM version: 0.13.0"), ``INFERRED`` for what follows from other facts through
    the knowledge base (the torch a vLLM release pins). A fact never replaces one of higher rank; the
    disagreement is kept in the snapshot's ``meta["conflicts"]``. Not serialised: a stored
    snapshot is already reconciled.
    """

    key: str
    value: Any
    source: str
    rank: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        self.value = from_jsonable(to_jsonable(self.value))

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": to_jsonable(self.value), "source": self.source}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fact:
        return cls(key=str(data["key"]), value=from_jsonable(data.get("value")), source=str(data.get("source", "")))


@dataclass
class Missing:
    """Yielded by a collector or parser beside its facts: facts matching ``pattern`` (``gpu.*``)
    could not be had, and why ("NVIDIA driver not loaded"). Checks needing them skip with it."""

    pattern: str
    reason: str


class Snapshot:
    """All facts of one run, keyed by name, plus the reasons why some are missing.

    ``missing`` maps a fact key or a key pattern (``gpu.*``) to the reason it could not be
    collected ("NVIDIA driver not loaded"); checks that need such a fact are skipped with it.
    """

    def __init__(self, facts: Iterable[Fact | Missing] = (), missing: Mapping[str, str] | None = None,
                 meta: Mapping[str, Any] | None = None) -> None:
        self.facts: dict[str, Fact] = {}
        self.missing: dict[str, str] = dict(missing or {})
        self.meta: dict[str, Any] = dict(meta or {})
        for f in facts:
            if isinstance(f, Missing):
                self.mark_missing(f.pattern, f.reason)
            else:
                self.add(f)

    # -- writing
    def add(self, fact: Fact) -> None:
        """Add a fact. A dict value merges into an existing dict value of the same key (new
        entries win); anything else replaces it. A fact of lower ``rank`` (stated in prose,
        inferred) never overwrites a value of higher rank, only fills what is absent; a
        replaced or refused differing value is recorded in ``meta["conflicts"]``."""
        old = self.facts.get(fact.key)
        if old is None:
            self.facts[fact.key] = fact
            return
        rank = max(old.rank, fact.rank)
        if isinstance(old.value, dict) and isinstance(fact.value, dict):
            ident = next((k for k in self.IDENTITY_FIELDS if old.value.get(k) is not None
                          and fact.value.get(k) is not None and old.value[k] != fact.value[k]), None)
            if ident is not None:
                # another version or product: the other fields describe that one, so they are not mixed
                self._conflict(f"{fact.key}.{ident}", old, old.value[ident], fact, fact.value[ident])
                if fact.rank >= old.rank:
                    self.facts[fact.key] = Fact(fact.key, dict(fact.value), fact.source, rank)
                return
            merged = dict(old.value)
            took = False  # the new fact supplied a field that stays
            for k, v in fact.value.items():
                if k in merged and merged[k] is not None and v is not None and merged[k] != v:
                    self._conflict(f"{fact.key}.{k}", old, merged[k], fact, v)
                    if fact.rank < old.rank:
                        continue
                elif k in merged and merged[k] is not None and fact.rank < old.rank:
                    continue
                took = took or merged.get(k) != v
                merged[k] = v
            kept_old = any(k not in fact.value for k in old.value)
            # the merged value is only as direct as the weakest source that still supplies part of it
            if took and kept_old:
                rank = min(old.rank, fact.rank)
            elif took:
                rank = fact.rank
            else:
                rank = old.rank
            src = old.source if old.source == fact.source else f"{old.source}; {fact.source}"
            self.facts[fact.key] = Fact(fact.key, merged, src, rank)
            return
        if old.value != fact.value and old.value is not None and fact.value is not None:
            self._conflict(fact.key, old, old.value, fact, fact.value)
        if fact.rank >= old.rank:
            self.facts[fact.key] = Fact(fact.key, fact.value, fact.source, rank)

    def disagree(self, fact: Fact) -> None:
        """Record where ``fact`` (not added) disagrees with the value held for its key."""
        old = self.facts.get(fact.key)
        if old is None or old.value is None or fact.value is None:
            return
        if isinstance(old.value, dict) and isinstance(fact.value, dict):
            for k, v in fact.value.items():
                if old.value.get(k) is not None and v is not None and old.value[k] != v:
                    self._conflict(f"{fact.key}.{k}", old, old.value[k], Fact(fact.key, v, fact.source, -99), v)
        elif old.value != fact.value:
            self._conflict(fact.key, old, old.value, Fact(fact.key, fact.value, fact.source, -99), fact.value)

    CONFLICT_FIELDS_IGNORED = ("cc_source", "source", "file", "line", "kb_key")
    IDENTITY_FIELDS = ("version",)

    def _conflict(self, key: str, old: Fact, old_value: Any, new: Fact, new_value: Any) -> None:
        if key.rsplit(".", 1)[-1] in self.CONFLICT_FIELDS_IGNORED or isinstance(old_value, (dict, list)):
            return
        if old.source == new.source or old.source.endswith(new.source) or new.source.endswith(old.source):
            return  # one source updating what it said (a log's running counters), not two sources disagreeing
        kept_new = new.rank >= old.rank
        rows = self.meta.setdefault("conflicts", [])
        if not isinstance(rows, list) or len(rows) >= 100:
            return
        rows.append({"key": key,
                     "kept": to_jsonable(new_value if kept_new else old_value),
                     "kept_source": new.source if kept_new else old.source,
                     "other": to_jsonable(old_value if kept_new else new_value),
                     "other_source": old.source if kept_new else new.source})

    def set(self, key: str, value: Any, source: str) -> None:
        self.add(Fact(key, value, source))

    def mark_missing(self, pattern: str, reason: str) -> None:
        self.missing.setdefault(pattern, reason)

    # -- reading
    def __contains__(self, key: str) -> bool:
        return key in self.facts

    def __len__(self) -> int:
        return len(self.facts)

    def __iter__(self) -> Iterator[Fact]:
        return iter(self.facts.values())

    def get(self, key: str) -> Fact | None:
        return self.facts.get(key)

    def value(self, key: str, default: Any = None) -> Any:
        f = self.facts.get(key)
        return default if f is None else f.value

    def mapping(self, key: str) -> dict[str, Any]:
        """A fact's value when it is a dict, else ``{}`` (absent, or malformed in a stored report)."""
        v = self.value(key)
        return v if isinstance(v, dict) else {}

    def _sorted_keys(self) -> list[str]:
        """The fact keys in order, kept between calls while no key is added (facts are never
        removed), so that prefix look-ups cost a bisection instead of a scan of every fact."""
        cache = self.__dict__.get("_keys_cache")
        if cache is None or cache[0] != len(self.facts):
            cache = (len(self.facts), sorted(self.facts))
            self.__dict__["_keys_cache"] = cache
        return cache[1]

    def keys(self, prefix: str = "") -> list[str]:
        ordered = self._sorted_keys()
        if not prefix:
            return list(ordered)
        start = bisect.bisect_left(ordered, prefix)
        end = bisect.bisect_left(ordered, prefix[:-1] + chr(ord(prefix[-1]) + 1)) if prefix[-1] != "\U0010ffff" \
            else len(ordered)
        return ordered[start:end]

    def has(self, key: str) -> bool:
        """True when the key (or, for ``name.*``, any key under ``name.``) is present."""
        if key.endswith(".*"):
            return bool(self.keys(key[:-1]))
        return key in self.facts

    def why_missing(self, key: str) -> str:
        """The recorded reason a fact is absent, or a generic one."""
        if key in self.missing:
            return self.missing[key]
        if key.endswith(".*"):
            key = key[:-2]
        best = ""
        for pattern in self.missing:
            if not pattern.endswith("*"):
                continue
            stem = pattern[:-1]
            if (key.startswith(stem) or key + "." == stem) and len(pattern) > len(best):
                best = pattern
        if best:
            return self.missing[best]
        parts = key.split(".")
        for i in range(len(parts) - 1, 0, -1):
            pre = ".".join(parts[:i])
            if pre in self.missing:
                return self.missing[pre]
        return f"no facts about {plain_fact_name(key)} were collected or given"

    def judged_view(self) -> Snapshot:
        """The snapshot the checks judge. When the ``target`` fact replaces the GPUs (set from
        ``--target``), the GPUs present are hidden from the checks, so that the stack is judged as
        if the target were the machine's GPU; the report still records them."""
        target = self.value("target")
        if not (isinstance(target, dict) and target.get("replaces_gpus")):
            return self
        view = Snapshot(meta=self.meta)
        view.missing = dict(self.missing)
        for key, fact in self.facts.items():
            if key == "gpu.count" or key == "gpu.topology" or (key.startswith("gpu.") and key[4:].isdigit()):
                continue
            view.facts[key] = fact
        reason = (f"judging for --target {target.get('name') or target.get('query')} instead of the GPUs present "
                  f"(run without --target to check them)")
        view.missing["gpu.*"] = reason
        return view

    # -- GPU helpers shared by many checks
    def gpus(self) -> list[tuple[int, dict[str, Any]]]:
        """``[(index, gpu dict), ...]`` for the ``gpu.<i>`` facts, in index order."""
        out = []
        for k in self.keys("gpu."):
            parts = k.split(".")
            f = self.facts[k]
            if len(parts) == 2 and parts[1].isdigit() and isinstance(f.value, dict):
                out.append((int(parts[1]), f.value))
        return sorted(out, key=lambda t: t[0])

    # -- serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SNAPSHOT_SCHEMA_VERSION,
            "meta": to_jsonable(self.meta),
            "facts": [self.facts[k].to_dict() for k in sorted(self.facts)],
            "missing": dict(sorted(self.missing.items())),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        ver = data.get("schema_version")
        if not _is_version(ver) or ver > SNAPSHOT_SCHEMA_VERSION:
            raise ValueError(f"unsupported snapshot schema_version {ver!r} (this bwdoctor reads <= {SNAPSHOT_SCHEMA_VERSION})")
        facts = data.get("facts")
        if not isinstance(facts, list):
            raise ValueError("snapshot 'facts' must be a list")
        meta = data.get("meta") or {}
        if not isinstance(meta, dict):
            raise ValueError(f"snapshot 'meta' must be an object, got {_json_type(meta)}")
        snap = cls(meta=from_jsonable(meta))
        for i, raw in enumerate(facts):
            if not isinstance(raw, dict) or not isinstance(raw.get("key"), str) or not raw["key"]:
                raise ValueError(f"facts[{i}]: each fact needs a 'key' (a non-empty string)")
            snap.facts[raw["key"]] = Fact.from_dict(raw)
        missing = data.get("missing") or {}
        if not isinstance(missing, dict):
            raise ValueError("snapshot 'missing' must be an object")
        snap.missing = {str(k): str(v) for k, v in missing.items()}
        return snap

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        return cls.from_dict(json.loads(text))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and self.to_dict() == other.to_dict()


_PLAIN_FACTS = {
    "gpu": "the GPU", "driver": "the NVIDIA driver", "torch": "the installed PyTorch", "vllm": "the installed vLLM",
    "toolkit": "the CUDA toolkit", "nccl": "NCCL", "config": "the serving configuration", "log": "a vLLM log",
    "smoke": "the smoke generation", "probe": "the GPU probes", "host": "the host", "packages": "the installed packages",
    "target": "the --target GPU", "flashinfer": "FlashInfer", "triton": "Triton", "cudabin": "the CUDA binaries",
}


def plain_fact_name(key: str) -> str:
    """Words for a fact key in a message (``config.base_image`` → "the serving configuration
    (base image)"); the key itself is for ``-v``."""
    head, _, rest = key.partition(".")
    base = _PLAIN_FACTS.get(head, head.replace("_", " "))
    rest = rest.rstrip(".*").replace("_", " ").replace(".", " ")
    return f"{base} ({rest})" if rest and not rest.isdigit() else base


class Unavailable(Exception):
    """Raised by a collector or probe when its source does not exist on this machine
    (no NVIDIA driver, torch not installed). Not an error: the facts it would have produced
    are marked missing with this message, and checks needing them are skipped with it."""


# --------------------------------------------------------------------------- contexts


@dataclass
class RunOptions:
    """What the user asked for; collectors, parsers and checks may read it."""

    level: str = "quick"
    target: str | None = None
    model: str | None = None
    quantization: str | None = None
    endpoint: str | None = None
    smoke: bool = False
    verbose: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Evidence:
    """One evidence file given to ``analyze``. Parsers read it through these helpers, which
    decode bytes leniently (undecodable bytes become U+FFFD) and stream lines so that a huge
    log is read in bounded memory."""

    path: str
    name: str
    head: str  # the first bytes, decoded, for detection
    size: int
    read_from: str = ""
    """Where the bytes are when not at ``path`` (a pipe's contents spooled to a temporary file)."""

    LINE_LIMIT = 65536

    def lines(self) -> Iterator[str]:
        """Stream the file's lines without their newline, each cut at 64 KiB. Memory stays
        bounded even for a line of gigabytes without a newline (the rest of it is skipped)."""
        limit = self.LINE_LIMIT
        with open(self.read_from or self.path, "rb") as fh:
            while True:
                raw = fh.readline(limit)
                if not raw:
                    return
                if len(raw) >= limit and not raw.endswith(b"\n"):
                    while True:  # skip the rest of an over-long line
                        rest = fh.readline(1 << 20)
                        if not rest or rest.endswith(b"\n"):
                            break
                yield raw[:limit].decode("utf-8", errors="replace").rstrip("\r\n")

    def text(self, limit: int = 8 * 1024 * 1024) -> str:
        """The file's text up to ``limit`` bytes (for small config files)."""
        with open(self.read_from or self.path, "rb") as fh:
            return fh.read(limit).decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- specs

CollectorFunc = Callable[[RunOptions], Iterable[Fact]]
ParserFunc = Callable[[Evidence], Iterable[Fact]]


@dataclass
class CollectorSpec:
    """A collector reads the live machine and yields facts.

    ``provides``: fact keys or patterns (``gpu.*``) it produces, so that when it is
    unavailable or fails the checks that need them are skipped with the reason.
    ``isolate``: run in a child process that is killed at ``timeout`` (driver calls,
    importing heavy packages). The function and its results must then be picklable / JSON.
    """

    name: str
    func: CollectorFunc
    provides: Sequence[str] = ()
    level: str = "quick"
    isolate: bool = False
    timeout: float = 10.0
    doc: str = ""
    plugin: str = ""
    enabled: Callable[[RunOptions], bool] | None = None
    """When given, decides whether the collector runs (instead of comparing ``level``)."""
    off_reason: str = ""
    """Why its facts are missing when it does not run ("runs at --level full or with --smoke")."""


@dataclass
class ParserSpec:
    """A parser reads evidence files. ``detect(evidence) -> bool`` says whether the file (or
    part of a pasted blob) is of its kind; ``func(evidence)`` yields facts."""

    name: str
    func: ParserFunc
    detect: Callable[[Evidence], bool]
    provides: Sequence[str] = ()
    timeout: float = 30.0
    doc: str = ""
    plugin: str = ""
    guesses: bool = False
    """True for a parser that reads prose (issue text) rather than machine output: its facts are
    marked as guessed in reports, and a fact that machine output in the evidence also gives is
    taken from the machine output."""


@dataclass
class Outcome:
    """What a check function returns (one or several): the runner turns it into a Finding.

    ``evidence`` lists fact keys; the runner attaches those facts with their provenance.
    ``subject`` distinguishes several outcomes of one check (``gpu0``, a file path).
    """

    status: str
    message: str
    evidence: Sequence[str] = ()
    subject: str | None = None
    severity: str | None = None
    root_cause: str | None = None
    remedies: Sequence[str] | None = None
    confidence: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")


def passed(message: str, evidence: Sequence[str] = (), **kw: Any) -> Outcome:
    return Outcome("pass", message, evidence, **kw)


def warned(message: str, evidence: Sequence[str] = (), **kw: Any) -> Outcome:
    return Outcome("warn", message, evidence, **kw)


def failed(message: str, evidence: Sequence[str] = (), **kw: Any) -> Outcome:
    return Outcome("fail", message, evidence, **kw)


def skipped(message: str, evidence: Sequence[str] = (), **kw: Any) -> Outcome:
    return Outcome("skip", message, evidence, **kw)


CheckResult = Outcome | list[Outcome] | None
"""What a check function returns: one outcome, one per subject (a GPU, a file), or None (not applicable)."""
CheckFunc = Callable[["Snapshot"], "Outcome | Iterable[Outcome] | None"]


@dataclass
class CheckSpec:
    """A check: a pure function of the snapshot.

    ``needs``: fact keys that must all be present (``gpu.*`` = any GPU fact), else the check
    is skipped with the reason the fact is missing. ``needs_any``: at least one must be present.
    ``root_cause``: default label (see docs) for its fail/warn outcomes; ``remedies``: default
    remedy ids. ``confidence``: how strongly a failure of this check proves its root cause
    (1.0 = the environment itself proves it, ~0.5 = an error text resembles it).
    ``doc``: shown by ``bwdoctor explain``; say there why no remedy is automatic when
    ``remedies`` is empty and the check can fail or warn.
    """

    id: str
    title: str
    func: CheckFunc
    area: str = ""
    needs: Sequence[str] = ()
    needs_any: Sequence[str] = ()
    level: str = "quick"
    tags: Sequence[str] = ()
    doc: str = ""
    root_cause: str | None = None
    remedies: Sequence[str] = ()
    confidence: float = 0.8
    can_fail: bool = True
    timeout: float = 5.0
    plugin: str = ""

    def __post_init__(self) -> None:
        if not self.area:
            self.area = self.id.split("-")[1] if self.id.count("-") >= 2 else "CORE"


@dataclass
class FixStep:
    """One step of a fix plan.

    ``argv``: the command to run (list of arguments; rendered quoted). ``check``: a command
    whose success means the step is already done (idempotency). ``patch``: ``{"path": ...,
    "diff": unified diff}`` for edits to a user's file. ``advisory``: printed only, never run.
    """

    description: str
    argv: Sequence[str] | None = None
    check: Sequence[str] | None = None
    needs_root: bool = False
    undo: str = ""
    advisory: bool = False
    patch: dict[str, str] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "argv": list(self.argv) if self.argv is not None else None,
            "check": list(self.check) if self.check is not None else None,
            "needs_root": self.needs_root,
            "undo": self.undo,
            "advisory": self.advisory,
            "patch": dict(self.patch) if self.patch else None,
            "env": dict(self.env),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FixStep:
        for key in ("argv", "check"):
            value = d.get(key)
            if value is not None and not (isinstance(value, list) and all(isinstance(a, str) for a in value)):
                raise ValueError(f"step '{key}' must be a list of strings, got {_json_type(value)}")
        return cls(description=str(d["description"]), argv=d.get("argv"), check=d.get("check"),
                   needs_root=bool(d.get("needs_root")), undo=d.get("undo") or "",
                   advisory=bool(d.get("advisory")), patch=d.get("patch"), env=dict(d.get("env") or {}))


@dataclass
class FixPlan:
    remedy_id: str
    title: str
    finding_ids: list[str]
    steps: list[FixStep]
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"remedy_id": self.remedy_id, "title": self.title, "finding_ids": list(self.finding_ids),
                "steps": [s.to_dict() for s in self.steps], "notes": self.notes}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FixPlan:
        return cls(remedy_id=str(d["remedy_id"]), title=str(d["title"]),
                   finding_ids=[str(x) for x in _list(d, "finding_ids")],
                   steps=[FixStep.from_dict(_mapping(s, "an object", "a step")) for s in _list(d, "steps")],
                   notes=str(d.get("notes") or ""))


RemedyFunc = Callable[["Finding", "Snapshot"], "FixPlan | None"]


@dataclass
class RemedySpec:
    """A remedy turns a finding (fail/warn) into a FixPlan, or None when it does not apply."""

    id: str
    title: str
    func: RemedyFunc
    doc: str = ""
    timeout: float = 5.0
    plugin: str = ""


@dataclass
class ReporterSpec:
    """A reporter renders a Report as text: ``func(report, verbose) -> str``. ``color_func``, when
    given, renders the same for a colour terminal and is used instead when the report goes to one."""

    name: str
    func: Callable[[Report, int], str]
    doc: str = ""
    plugin: str = ""
    color_func: Callable[[Report, int], str] | None = None


# --------------------------------------------------------------------------- findings


@dataclass
class Finding:
    id: str
    title: str
    area: str
    status: str
    message: str
    severity: str = "info"
    subject: str | None = None
    evidence: list[Fact] = field(default_factory=list)
    root_cause: str | None = None
    remedies: list[str] = field(default_factory=list)
    confidence: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    plugin: str = ""

    @property
    def key(self) -> str:
        return self.id if not self.subject else f"{self.id}[{self.subject}]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "title": self.title, "area": self.area, "status": self.status,
            "severity": self.severity, "message": self.message, "subject": self.subject,
            "evidence": [e.to_dict() for e in self.evidence], "root_cause": self.root_cause,
            "remedies": list(self.remedies), "confidence": self.confidence,
            "details": to_jsonable(self.details), "duration_s": round(self.duration_s, 4),
            "plugin": self.plugin,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Finding:
        if not isinstance(d.get("id"), str) or not d["id"]:
            raise ValueError("a finding needs an 'id' (a non-empty string)")
        if d.get("status") not in STATUSES:
            raise ValueError(f"unknown finding status {d.get('status')!r} (one of {', '.join(STATUSES)})")
        details = d.get("details") or {}
        if not isinstance(details, dict):
            raise ValueError(f"finding 'details' must be an object, got {_json_type(details)}")
        return cls(id=d["id"], title=d.get("title", ""), area=d.get("area", ""), status=d["status"],
                   message=d.get("message", ""), severity=d.get("severity", "info"), subject=d.get("subject"),
                   evidence=[Fact.from_dict(_mapping(e, "an object", "evidence")) for e in _list(d, "evidence")],
                   root_cause=d.get("root_cause"), remedies=[str(r) for r in _list(d, "remedies")],
                   confidence=d.get("confidence"), details=from_jsonable(details),
                   duration_s=float(d.get("duration_s") or 0.0),
                   plugin=d.get("plugin", ""))


class Diagnosis(TypedDict):
    """One entry of a report's ``diagnosis``: a root cause the findings point at."""

    root_cause: str
    confidence: float
    findings: list[str]
    summary: str


@dataclass
class Report:
    """Everything one invocation found; every reporter renders this object."""

    mode: str  # live | from | analyze | snapshot
    snapshot: Snapshot
    findings: list[Finding] = field(default_factory=list)
    plans: list[FixPlan] = field(default_factory=list)
    diagnosis: list[Diagnosis] = field(default_factory=list)
    tool_version: str = ""
    created: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    plugins: list[dict[str, Any]] = field(default_factory=list)
    duration_s: float = 0.0

    def summary(self) -> dict[str, int]:
        counts = {s: 0 for s in STATUSES}
        for f in self.findings:
            counts[f.status] = counts.get(f.status, 0) + 1
        return counts

    def verdict(self) -> dict[str, Any]:
        """``{"status": "ready" | "not ready" | "could not tell", "reason", "findings"}``
        (see :mod:`bwdoctor.verdict`)."""
        from bwdoctor.verdict import compute

        return compute(self.findings, self.diagnosis, self.mode, self.options)

    def inspected(self) -> dict[str, Any]:
        """What this report judged: the Python environment (live runs), the input files, and the
        GPUs in words (or why none was seen)."""
        from bwdoctor.reporters import gpu_line

        env = self.snapshot.value("host.python_env")
        return {"python": to_jsonable(env) if isinstance(env, dict) else None, "inputs": list(self.inputs),
                "gpus": gpu_line(self)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "tool": {"name": "bwdoctor", "version": self.tool_version},
            "created": self.created,
            "mode": self.mode,
            "verdict": self.verdict(),
            "inspected": self.inspected(),
            "options": to_jsonable(self.options),
            "inputs": list(self.inputs),
            "summary": self.summary(),
            "diagnosis": to_jsonable(self.diagnosis),
            "findings": [f.to_dict() for f in self.findings],
            "plans": [p.to_dict() for p in self.plans],
            "plugins": to_jsonable(self.plugins),
            "duration_s": round(self.duration_s, 4),
            "snapshot": self.snapshot.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Report:
        """Read a report; a malformed one raises ValueError naming the part that is wrong
        (``findings[3]: missing 'status'``)."""
        if not isinstance(d, Mapping):
            raise ValueError("a report must be a JSON object")
        ver = d.get("schema_version")
        if not _is_version(ver) or ver > REPORT_SCHEMA_VERSION:
            raise ValueError(f"unsupported report schema_version {ver!r} (this bwdoctor reads 1 to {REPORT_SCHEMA_VERSION})")
        if "snapshot" not in d:
            raise ValueError("the report has no 'snapshot'")
        snapshot = _part("snapshot", lambda: Snapshot.from_dict(_mapping(d["snapshot"], "an object")))
        tool = d.get("tool") or {}
        return cls(
            mode=str(d.get("mode") or "live"), snapshot=snapshot,
            findings=_items(d, "findings", Finding.from_dict),
            plans=_items(d, "plans", FixPlan.from_dict),
            diagnosis=_items(d, "diagnosis", lambda x: cast(Diagnosis, dict(_mapping(x, "an object")))),
            tool_version=str(_mapping(tool, "an object", "tool").get("version", "")),
            created=str(d.get("created") or ""),
            options=dict(_mapping(d.get("options") or {}, "an object", "options")),
            inputs=[str(x) for x in _list(d, "inputs")], plugins=_items(d, "plugins", lambda x: dict(_mapping(x, "an object"))),
            duration_s=_part("duration_s", lambda: float(d.get("duration_s") or 0.0)),
        )


def _is_version(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _mapping(value: Any, what: str, where: str = "") -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where + ': ' if where else ''}expected {what}, got {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _list(d: Mapping[str, Any], key: str) -> list[Any]:
    value = d.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"'{key}' must be a list, got {_json_type(value)}")
    return value


def _part(where: str, build: Callable[[], Any]) -> Any:
    """Run ``build``; turn a KeyError/TypeError/... from malformed data into a ValueError
    that names ``where``."""
    try:
        return build()
    except KeyError as exc:
        raise ValueError(f"{where}: missing {exc}") from None
    except (TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def _items(d: Mapping[str, Any], key: str, build: Callable[[Any], Any]) -> list[Any]:
    out = []
    for i, item in enumerate(_list(d, key)):
        out.append(_part(f"{key}[{i}]", functools.partial(_build_item, build, item)))
    return out


def _build_item(build: Callable[[Any], Any], item: Any) -> Any:
    return build(_mapping(item, "an object"))
