"""The runner: collectors / parsers → Snapshot → checks → Findings → remedies → FixPlans.

Every plugin-provided function runs with a deadline. Collectors marked ``isolate`` run in
child processes (started together, so their deadlines overlap), everything else in a
deadline-bounded thread. A failure costs one ``error`` finding.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bwdoctor.hostchecks import CORE_CHECKS, reported_by_host
from bwdoctor.isolation import CallResult, ChildCall, call_with_deadline
from bwdoctor.manager import PluginManager, Registry
from bwdoctor.types import (
    INFERRED,
    RANK_FACTOR,
    CheckSpec,
    CollectorFunc,
    CollectorSpec,
    Evidence,
    Fact,
    Finding,
    FixPlan,
    Missing,
    Outcome,
    ParserFunc,
    RunOptions,
    Snapshot,
    Unavailable,
    level_rank,
    to_jsonable,
)

MAX_EVIDENCE_FILES = 500
HEAD_BYTES = 1024 * 1024


def _core_finding(cid: str, status: str, message: str, subject: str | None = None, plugin: str = "",
                  details: dict[str, Any] | None = None) -> Finding:
    title = CORE_CHECKS[cid][0]
    sev = {"error": "high", "skip": "info", "warn": "medium"}.get(status, "info")
    return Finding(id=cid, title=title, area="CORE", status=status, message=message, severity=sev,
                   subject=subject, plugin=plugin, details=details or {})


MAX_GPUS = 256  # more than any one machine has (an NVL72 rack is 72): past it a report is crafted or merged


def bound_gpus(snap: Snapshot, limit: int = MAX_GPUS) -> tuple[Snapshot, list[Finding]]:
    """At most ``limit`` ``gpu.<i>`` facts (the lowest indices) go on to the checks, so that the
    work a report costs stays linear in its size; one finding says how many were left out."""
    gpu_keys = [k for k in snap.keys("gpu.") if k[4:].isdigit()]
    if len(gpu_keys) <= limit:
        return snap, []
    keep = set(sorted(gpu_keys, key=lambda k: int(k[4:]))[:limit])
    bounded = Snapshot(meta=snap.meta, missing=snap.missing)
    for key, fact in snap.facts.items():
        if key in keep or not (key.startswith("gpu.") and key[4:].isdigit()) and key != "gpu.topology":
            bounded.facts[key] = fact
    bounded.meta["gpus_left_out"] = len(gpu_keys) - limit
    return bounded, [_core_finding("BWD-CORE-007", "warn", f"the facts list {len(gpu_keys)} GPUs, more than one "
                                   f"machine has: the first {limit} are judged, {len(gpu_keys) - limit} are left out",
                                   subject="gpu")]


def plugin_findings(manager: PluginManager) -> list[Finding]:
    out = []
    manager.registry()
    for p in manager.problems:
        cid = "BWD-CORE-002" if p.kind == "duplicate" else "BWD-CORE-001"
        out.append(_core_finding(cid, "error", p.message, subject=p.plugin, plugin=p.plugin,
                                 details={"distribution": p.distribution, "kind": p.kind, "hook": p.hook,
                                          "traceback": p.detail[-4000:]}))
    return out


# ------------------------------------------------------------------------------ collect


def _collector_runs(spec: CollectorSpec, options: RunOptions) -> bool:
    if spec.enabled is not None:
        try:
            return bool(spec.enabled(options))
        except Exception:
            return False
    return level_rank(spec.level) <= level_rank(options.level)


def _facts_from(value: Any, source_name: str) -> list[Fact | Missing]:
    facts: list[Fact | Missing] = []
    for item in value or []:
        if isinstance(item, (Fact, Missing)):
            facts.append(item)
        else:
            raise TypeError(f"{source_name} yielded {type(item).__name__}, expected Fact or Missing")
    return facts


def _add(snap: Snapshot, item: Fact | Missing) -> None:
    if isinstance(item, Missing):
        snap.mark_missing(item.pattern, item.reason)
    else:
        snap.add(item)


def _collect_one(func: CollectorFunc, options: RunOptions) -> list[Fact]:
    return list(func(options) or [])


def collect(registry: Registry, options: RunOptions, snapshot: Snapshot | None = None) -> tuple[Snapshot, list[Finding]]:
    """Run every collector enabled at this level. Isolated ones run concurrently in children."""
    snap = snapshot or Snapshot()
    findings: list[Finding] = []
    children: list[tuple[CollectorSpec, ChildCall]] = []
    inline: list[CollectorSpec] = []
    for spec in registry.collectors:
        if not _collector_runs(spec, options):
            if spec.off_reason:
                reason = spec.off_reason
            elif spec.enabled is not None:
                reason = f"'{spec.name}' was not asked for in this run (see 'bwdoctor run --help')"
            else:
                reason = f"'{spec.name}' runs at --level {spec.level} (this run: --level {options.level})"
            for pat in spec.provides:
                snap.mark_missing(pat, reason)
            continue
        if spec.isolate:
            children.append((spec, ChildCall(_collect_one, (spec.func, options), spec.timeout)))
        else:
            inline.append(spec)
    # inline collectors run one after another while the children work: they are CPU-bound Python, and
    # threads only fight over the GIL (measured: slower than in sequence)
    results: list[tuple[CollectorSpec, CallResult]] = []
    for spec in inline:
        results.append((spec, call_with_deadline(_collect_one, (spec.func, options), spec.timeout)))
    for spec, child in children:
        results.append((spec, child.result()))
    timings: dict[str, float] = {}
    for spec, res in results:
        timings[spec.name] = round(res.duration_s, 4)
        if res.ok:
            try:
                for fact in _facts_from(res.value, spec.name):
                    _add(snap, fact)
            except Exception as exc:
                findings.append(_core_finding("BWD-CORE-003", "error", f"collector '{spec.name}' returned bad facts: {exc}",
                                              subject=spec.name, plugin=spec.plugin))
            continue
        if isinstance(res.exception, Unavailable):
            for pat in spec.provides:
                snap.mark_missing(pat, str(res.exception))
            continue
        for pat in spec.provides:
            snap.mark_missing(pat, f"collector '{spec.name}' failed: {res.error}")
        findings.append(_core_finding("BWD-CORE-003", "error", f"collector '{spec.name}' failed: {res.error}",
                                      subject=spec.name, plugin=spec.plugin,
                                      details={"traceback": res.trace[-4000:], "timed_out": res.timed_out}))
    snap.meta.setdefault("collector_seconds", {}).update(timings)
    findings += _parse_collected_evidence(registry, snap)
    for pspec in registry.parsers:
        for pat in pspec.provides:
            if not snap.has(pat):
                snap.mark_missing(pat, f"comes from evidence files ({pspec.name}): give them to 'bwdoctor analyze'")
    return snap, findings


def _parse_collected_evidence(registry: Registry, snap: Snapshot) -> list[Finding]:
    """Text a collector captured as ``evidence.<name>`` (the log of a failed smoke generation) goes
    through the same parsers as a file given to ``analyze``, so its failure signatures become facts."""
    texts = [(k, snap.value(k)) for k in snap.keys("evidence.")]
    texts = [(k, v) for k, v in texts if isinstance(v, str) and v.strip()]
    if not texts:
        return []
    findings: list[Finding] = []
    with tempfile.TemporaryDirectory(prefix="bwdoctor-evidence-") as tmp:
        for key, text in texts:
            path = Path(tmp) / (re.sub(r"[^A-Za-z0-9_.-]", "_", key[len("evidence."):]) or "evidence")
            path.write_text(text, encoding="utf-8", errors="replace")
            _, found = parse(registry, [str(path)], snap)
            findings += [f for f in found if f.id != "BWD-CORE-006"]
    snap.meta.pop("evidence", None)
    return findings


# ------------------------------------------------------------------------------ parse


MAX_PIPE_BYTES = 2 * 1024 * 1024 * 1024
PIPE_IDLE_S = 30.0


def _walk(path: Path, out: list[Path], notes: list[tuple[str, str]]) -> bool:
    """Append the regular files under ``path`` (hidden folders skipped) to ``out``; False once
    more than :data:`MAX_EVIDENCE_FILES` were found (the walk stops there)."""
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") or d in (".env",))
        for name in sorted(files):
            file = Path(root) / name
            try:
                regular = file.is_file()
            except OSError:
                regular = False
            if not regular:
                notes.append((str(file), "not a regular file (a pipe, socket, device or broken link): not read"))
                continue
            out.append(file)
            if len(out) > MAX_EVIDENCE_FILES:
                return False
    return True


def iter_evidence_paths(paths: Sequence[str], notes: list[tuple[str, str]] | None = None) -> list[Path]:
    """Files named directly, and the regular files inside named folders (walked, hidden ones
    skipped), at most :data:`MAX_EVIDENCE_FILES`. Why a path was left out goes to ``notes``."""
    notes = notes if notes is not None else []
    out: list[Path] = []
    complete = True
    for p in paths:
        path = Path(p)
        if path.is_dir():
            complete = _walk(path, out, notes)
        else:
            out.append(path)
        if not complete or len(out) > MAX_EVIDENCE_FILES:
            complete = False
            break
    if not complete:
        notes.append((", ".join(str(p) for p in paths)[:200],
                      f"more than {MAX_EVIDENCE_FILES} files were given: only the first {MAX_EVIDENCE_FILES} were read"))
    return out[:MAX_EVIDENCE_FILES]


def load_evidence(path: Path, read_from: str = "") -> Evidence:
    """The evidence file at ``path`` (its bytes from ``read_from`` when given: a spooled pipe).
    Only regular files are opened: a FIFO or a device named here would block or never end."""
    source = read_from or str(path)
    fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise OSError(errno.EINVAL, f"{kind}: not read", str(path))
        with os.fdopen(fd, "rb", closefd=False) as fh:
            head = fh.read(HEAD_BYTES)
    finally:
        os.close(fd)
    return Evidence(path=str(path), name=path.name, head=head.decode("utf-8", errors="replace"),
                    size=st.st_size, read_from=read_from)


def _spool_pipe(path: Path, directory: str) -> tuple[str, str]:
    """Copy what arrives through a pipe (``analyze <(docker logs vllm)``) to a temporary file,
    at most :data:`MAX_PIPE_BYTES`, giving up after :data:`PIPE_IDLE_S` seconds without data.
    Returns the file and a note ("" when all of it was read)."""
    import select

    fd_out, tmp = tempfile.mkstemp(prefix="pipe-", dir=directory)
    note = ""
    fd = os.open(str(path), os.O_RDONLY | os.O_NONBLOCK)
    try:
        total = 0
        while True:
            try:  # a FIFO without a writer reads as EOF at once; one with a silent writer blocks
                chunk = os.read(fd, 1 << 20)
            except BlockingIOError:
                ready, _, _ = select.select([fd], [], [], PIPE_IDLE_S)
                if not ready:
                    note = f"nothing arrived through the pipe for {PIPE_IDLE_S:g} s: read what came until then"
                    break
                continue
            if not chunk:
                break
            if total + len(chunk) > MAX_PIPE_BYTES:
                chunk = chunk[: MAX_PIPE_BYTES - total]
                note = f"more than {MAX_PIPE_BYTES >> 30} GiB arrived through the pipe: only the first were read"
            os.write(fd_out, chunk)
            total += len(chunk)
            if note:
                break
    finally:
        os.close(fd)
        os.close(fd_out)
    return tmp, note


def _consume(func: ParserFunc, ev: Evidence, out: list[Any]) -> list[Any]:
    """Run a parser, collecting what it yields as it yields it (kept if it then runs out of time)."""
    for item in func(ev) or []:
        out.append(item)
    return out


def parse(registry: Registry, paths: Sequence[str], snapshot: Snapshot | None = None) -> tuple[Snapshot, list[Finding]]:
    """Run every parser that recognises each evidence file."""
    snap = snapshot or Snapshot()
    with tempfile.TemporaryDirectory(prefix="bwdoctor-") as spool:
        findings = _parse_into(registry, paths, snap, spool)
    for spec in registry.parsers:
        for pat in spec.provides:
            if not snap.has(pat):
                snap.mark_missing(pat, "not found in the evidence given")
    return snap, findings


class MixedMachines(ValueError):
    """The evidence files describe different machines (different GPUs or driver versions)."""

    def __init__(self, groups: list[tuple[str, list[str]]]) -> None:
        self.groups = groups
        desc = "; ".join(f"{label}: {', '.join(files)}" for label, files in groups)
        super().__init__(f"the evidence describes {len(groups)} different machines ({desc}); analyze the files "
                         f"of one machine at a time")


def _gpu_names(facts: Sequence[Fact]) -> set[str]:
    names = set()
    for f in facts:
        parts = f.key.split(".")
        if len(parts) == 2 and parts[0] == "gpu" and parts[1].isdigit() and isinstance(f.value, dict):
            name = f.value.get("name")
            if isinstance(name, str) and name.strip():
                names.add(" ".join(name.split()))
    return names


def _same_name(a: str, b: str) -> bool:
    """Equal GPU names, a name cut by nvidia-smi ("NVIDIA RTX PRO 6000 Blac...") matching its full form."""
    a, b = a.lower(), b.lower()
    if a == b:
        return True
    for cut, full in ((a, b), (b, a)):
        stem = cut.rstrip(".…").rstrip()
        if stem != cut and len(stem) >= 12 and full.startswith(stem):
            return True
    return False


def _identity(facts: Sequence[Fact]) -> tuple[str | None, set[str]]:
    driver = next((str(f.value) for f in facts if f.key == "driver.version" and isinstance(f.value, str)), None)
    return driver, _gpu_names(facts)


def _conflict(a: tuple[str | None, set[str]], b: tuple[str | None, set[str]]) -> bool:
    if a[0] and b[0] and a[0] != b[0]:
        return True
    if a[1] and b[1]:
        return not (all(any(_same_name(x, y) for y in b[1]) for x in a[1])
                    and all(any(_same_name(x, y) for y in a[1]) for x in b[1]))
    return False


def machine_groups(per_file: Sequence[tuple[str, Sequence[Fact]]]) -> list[tuple[str, list[str]]]:
    """The evidence files grouped by the machine they describe (GPU models and driver version from
    machine output; files that name neither join any group). One group: one machine."""
    groups: list[tuple[tuple[str | None, set[str]], list[str]]] = []
    for path, facts in per_file:
        ident = _identity(facts)
        if not ident[0] and not ident[1]:
            continue
        for i, (gid, files) in enumerate(groups):
            if not _conflict(gid, ident):
                files.append(path)
                groups[i] = ((gid[0] or ident[0], gid[1] | ident[1]), files)
                break
        else:
            groups.append((ident, [path]))
    out = []
    for (driver, names), files in groups:
        label = " + ".join(sorted(names)) or "GPU not named"
        if driver:
            label += f", driver {driver}"
        out.append((label, files))
    return out


def _parse_into(registry: Registry, paths: Sequence[str], snap: Snapshot, spool: str) -> list[Finding]:
    findings: list[Finding] = []
    inputs = []
    notes: list[tuple[str, str]] = []
    files = iter_evidence_paths(paths, notes)
    for subject, note in notes:
        findings.append(_core_finding("BWD-CORE-006", "skip", f"{subject}: {note}", subject=subject))
    machine: list[tuple[Fact | Missing, str]] = []  # from machine output, in file order
    prose: list[tuple[Fact | Missing, str]] = []  # from parsers of prose
    per_file: list[tuple[str, list[Fact]]] = []
    for path in files:
        try:
            mode = os.stat(path).st_mode
            read_from = ""
            if stat.S_ISFIFO(mode):
                read_from, note = _spool_pipe(path, spool)
                if note:
                    findings.append(_core_finding("BWD-CORE-006", "skip", f"{path}: {note}", subject=str(path)))
            ev = load_evidence(path, read_from)
        except OSError as exc:
            findings.append(_core_finding("BWD-CORE-006", "skip", f"could not read {path}: {exc.strerror or exc}",
                                          subject=str(path)))
            continue
        used = []
        own: list[Fact] = []
        from bwdoctor.progress import report as progress

        for spec in registry.parsers:
            det = call_with_deadline(spec.detect, (ev,), 5.0)
            if not det.ok:
                findings.append(_core_finding("BWD-CORE-004", "error", f"parser '{spec.name}' failed to inspect "
                                              f"{path}: {det.error}", subject=f"{spec.name}:{path.name}",
                                              plugin=spec.plugin))
                continue
            if not det.value:
                continue
            box: list[Any] = []
            progress(f"{path.name} ({ev.size / 2**20:.0f} MiB): {spec.name}")
            res = call_with_deadline(_consume, (spec.func, ev, box), spec.timeout)
            value = res.value
            if not res.ok:
                kept = list(box) if res.timed_out else []  # what a generator yielded before its deadline
                note = f" (kept the {len(kept)} fact(s) it gave before the deadline)" if kept else ""
                findings.append(_core_finding("BWD-CORE-004", "error", f"parser '{spec.name}' failed on {path}: "
                                              f"{res.error}{note}", subject=f"{spec.name}:{path.name}",
                                              plugin=spec.plugin, details={"traceback": res.trace[-4000:]}))
                if not kept:
                    continue
                value = kept
            try:
                items = _facts_from(value, spec.name)
            except Exception as exc:
                findings.append(_core_finding("BWD-CORE-004", "error", f"parser '{spec.name}' returned bad facts: "
                                              f"{exc}", subject=f"{spec.name}:{path.name}", plugin=spec.plugin))
                continue
            (prose if getattr(spec, "guesses", False) else machine).extend((item, str(path)) for item in items)
            if not getattr(spec, "guesses", False):
                own += [i for i in items if isinstance(i, Fact)]
            used.append(spec.name)
        per_file.append((str(path), own))
        inputs.append({"path": str(path), "size": ev.size, "parsers": used})
        if not used:
            findings.append(_core_finding("BWD-CORE-006", "skip", f"no parser recognised {path}", subject=str(path)))
    groups = machine_groups(per_file)
    if len(groups) > 1:
        raise MixedMachines(groups)
    origins: dict[str, list[str]] = snap.meta.setdefault("origins", {})
    for item, origin in machine:
        _add(snap, item)
        if isinstance(item, Fact) and origin not in origins.setdefault(item.key, []):
            origins[item.key].append(origin)
    # Prose ("we run an RTX PRO 6000") fills in only what machine output does not give.
    has_gpu = any(k == "gpu.count" or (k.startswith("gpu.") and k[4:].isdigit()) for k in snap.facts)
    guessed: dict[str, str] = snap.meta.setdefault("guessed", {})
    for item, origin in prose:
        if isinstance(item, Missing):
            _add(snap, item)
            continue
        is_gpu = item.key == "gpu.count" or (item.key.startswith("gpu.") and item.key[4:].isdigit())
        if item.key in snap.facts and item.key not in guessed or (is_gpu and has_gpu and item.key not in guessed):
            snap.disagree(item)  # not taken, but a different value is kept as a conflict
            continue
        _add(snap, item)
        guessed[item.key] = snap.facts[item.key].source
        if origin not in origins.setdefault(item.key, []):
            origins[item.key].append(origin)
    if not guessed:
        snap.meta.pop("guessed", None)
    snap.meta.setdefault("evidence", []).extend(inputs)
    return findings


# ------------------------------------------------------------------------------ checks


def matches(spec: CheckSpec, token: str) -> bool:
    """``--select``/``--skip`` matching: an id, an id prefix (BWD-GPU, GPU), an area or a tag."""
    t = token.strip()
    if not t:
        return False
    up = t.upper()
    if spec.id == up or spec.id.startswith(up if up.endswith("-") else up + "-") or spec.id.startswith(up):
        return True
    if not up.startswith("BWD-") and spec.id.startswith("BWD-" + up):
        return True
    if spec.area.upper() == up:
        return True
    return t.lower() in {x.lower() for x in spec.tags}


def select_checks(checks: Iterable[CheckSpec], level: str, select: Sequence[str] = (),
                  skip: Sequence[str] = ()) -> list[CheckSpec]:
    out = []
    for spec in checks:
        if spec.func is reported_by_host:  # the host emits these findings itself
            continue
        if level_rank(spec.level) > level_rank(level):
            continue
        if select and not any(matches(spec, t) for t in select):
            continue
        if skip and any(matches(spec, t) for t in skip):
            continue
        out.append(spec)
    return sorted(out, key=lambda s: s.id)


_DEFAULT_SEVERITY = {"fail": "high", "warn": "medium", "error": "high", "pass": "info", "skip": "info"}


def _basis(evidence: list[Fact]) -> tuple[float, dict[str, Any], str]:
    """How directly a verdict's facts are known (``Fact.rank``): the factor its confidence keeps,
    the details that record it, and a note for the message. A verdict on what a person stated, or
    on what the knowledge base infers from it, is weaker evidence than one on a tool's output."""
    # A person naming their GPU or OS is as good as a tool listing it; versions are what people get
    # wrong (the one they meant to install, the one on another machine).
    weighed = [f for f in evidence if not f.key.startswith(("gpu.", "host."))] or list(evidence)
    # (a verdict that rests on nothing but a GPU or host a person named is as strong as that statement)
    weakest = min((f.rank for f in weighed), default=0)
    if weakest >= 0:
        return 1.0, {}, ""
    notes = []
    for f in weighed:
        if f.rank >= 0:
            continue
        v = f.value if isinstance(f.value, dict) else {}
        reason = v.get("inferred") or v.get("cuda_inferred")
        how = "inferred" if f.rank <= INFERRED else "as stated"
        notes.append(str(reason) if reason else f"{f.key} {how} ({f.source.split(';')[0]})")
    basis = "inferred" if weakest <= INFERRED else "stated"
    return RANK_FACTOR.get(weakest, RANK_FACTOR[INFERRED]), {"basis": basis, "basis_facts": notes}, "; ".join(notes)


def _finding_from(spec: CheckSpec, o: Outcome, snap: Snapshot, duration: float) -> Finding:
    evidence = []
    for key in o.evidence:
        f = snap.get(key)
        if f is not None:
            evidence.append(f)
    problem = o.status in ("fail", "warn")
    confidence = (o.confidence if o.confidence is not None else spec.confidence) if problem else None
    message, details = o.message, o.details
    factor, extra, note = _basis(evidence)
    if extra:
        details = {**(details or {}), **extra}
        if problem:
            if confidence is not None:
                confidence = round(confidence * factor, 3)
            message = f"{message} [from the text: {note}]" if note else message
    return Finding(
        id=spec.id, title=spec.title, area=spec.area, status=o.status, message=message,
        severity=o.severity or _DEFAULT_SEVERITY[o.status], subject=o.subject, evidence=evidence,
        root_cause=(o.root_cause or spec.root_cause) if problem else None,
        remedies=list(o.remedies if o.remedies is not None else spec.remedies) if problem else [],
        confidence=confidence, details=details, duration_s=duration, plugin=spec.plugin,
    )


def run_check(spec: CheckSpec, snap: Snapshot) -> list[Finding]:
    for key in spec.needs:
        if not snap.has(key):
            return [Finding(id=spec.id, title=spec.title, area=spec.area, status="skip",
                            message=snap.why_missing(key), plugin=spec.plugin, details={"missing": key})]
    if spec.needs_any and not any(snap.has(k) for k in spec.needs_any):
        reason = snap.why_missing(spec.needs_any[0])
        return [Finding(id=spec.id, title=spec.title, area=spec.area, status="skip", message=reason, plugin=spec.plugin,
                        details={"missing": list(spec.needs_any)})]
    res = call_with_deadline(spec.func, (snap,), spec.timeout)
    if not res.ok:
        return [Finding(id=spec.id, title=spec.title, area=spec.area, status="error", severity="high",
                        message=f"the check itself failed: {res.error}", plugin=spec.plugin,
                        details={"traceback": res.trace[-4000:], "timed_out": res.timed_out},
                        duration_s=res.duration_s)]
    value = res.value
    if value is None:
        outcomes: list[Outcome] = []
    elif isinstance(value, Outcome):
        outcomes = [value]
    else:
        try:
            outcomes = list(value)
        except TypeError:
            outcomes = [value]
    bad = [o for o in outcomes if not isinstance(o, Outcome)]
    if bad:
        return [Finding(id=spec.id, title=spec.title, area=spec.area, status="error", severity="high",
                        message=f"the check returned {type(bad[0]).__name__}, expected Outcome", plugin=spec.plugin)]
    if not outcomes:
        return [Finding(id=spec.id, title=spec.title, area=spec.area, status="skip", message="not applicable here",
                        plugin=spec.plugin, duration_s=res.duration_s)]
    return [_finding_from(spec, o, snap, res.duration_s / len(outcomes)) for o in outcomes]


def run_checks(checks: Sequence[CheckSpec], snap: Snapshot) -> list[Finding]:
    findings: list[Finding] = []
    for spec in checks:
        findings.extend(run_check(spec, snap))
    return findings


# ------------------------------------------------------------------------------ remedies


def plan_remedies(registry: Registry, findings: Sequence[Finding], snap: Snapshot) -> tuple[list[FixPlan], list[Finding]]:
    """Apply each remedy a fail/warn finding names. Plans from one remedy for several findings
    are merged when they are identical."""
    by_id = {r.id: r for r in registry.remedies}
    plans: list[FixPlan] = []
    errors: list[Finding] = []
    seen: dict[str, FixPlan] = {}
    # what the findings of this run ask for: a remedy that edits a file once for several of them
    # (one combined diff) makes only these changes, so that --select limits what is applied
    snap.meta["remedies_wanted"] = sorted({r for f in findings if f.status in ("fail", "warn") for r in f.remedies})
    for f in findings:
        if f.status not in ("fail", "warn"):
            continue
        for rid in f.remedies:
            spec = by_id.get(rid)
            if spec is None:
                continue
            res = call_with_deadline(spec.func, (f, snap), spec.timeout)
            if not res.ok:
                errors.append(_core_finding("BWD-CORE-005", "error", f"remedy '{rid}' failed for {f.key}: {res.error}",
                                            subject=f"{rid}:{f.key}", plugin=spec.plugin,
                                            details={"traceback": res.trace[-4000:]}))
                continue
            plan = res.value
            if plan is None:
                continue
            if not isinstance(plan, FixPlan):
                errors.append(_core_finding("BWD-CORE-005", "error", f"remedy '{rid}' returned "
                                            f"{type(plan).__name__}, expected FixPlan", subject=rid, plugin=spec.plugin))
                continue
            sig = repr(to_jsonable({"r": plan.remedy_id, "s": [s.to_dict() for s in plan.steps]}))
            if sig in seen:
                for fid in plan.finding_ids or [f.key]:
                    if fid not in seen[sig].finding_ids:
                        seen[sig].finding_ids.append(fid)
                continue
            if not plan.finding_ids:
                plan.finding_ids = [f.key]
            seen[sig] = plan
            plans.append(plan)
    return plans, errors


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
