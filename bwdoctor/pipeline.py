"""The pipeline in one place: collect → parse → judge → remedy → diagnose → :class:`Report`.

Every caller (the command line, the tests, a child process) builds a report through
:func:`build_report` or through the stage functions below, which run plugin code through the
isolating executor in :mod:`bwdoctor.runner`:

* :func:`collect` reads the live machine (the collectors enabled at the run's level);
* :func:`parse` reads evidence files (every parser that recognises a file);
* :func:`judge` applies the ``--target`` and runs the selected checks on the judged view;
* :func:`remedy` turns fail/warn findings into fix plans;
* :func:`diagnose` ranks the findings' root causes.

Whatever plugin code prints meanwhile goes to standard error (:func:`plugin_output_to_stderr`),
so that a report written to standard output stays parseable. Input that cannot be used raises
:class:`~bwdoctor.files.BadInput` (an unreadable report) or :class:`BadOption` (an unknown
``--target``); the command line turns both into exit code 2.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bwdoctor.types import Diagnosis, Finding, FixPlan, Report, RunOptions, Snapshot

if TYPE_CHECKING:
    from bwdoctor.manager import PluginManager, Registry

MODES = ("live", "analyze", "snapshot")


class BadOption(ValueError):
    """An option value the pipeline cannot use (``--target`` names no known GPU)."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


@dataclass
class Request:
    """What to build a report from.

    ``mode``: ``live`` (collect from this machine), ``analyze`` (parse ``paths``) or ``snapshot``
    (collect, no checks); ``from_report`` (an earlier JSON report) replaces collecting and makes
    the mode ``from``. ``options`` are what collectors, parsers and checks may read.
    """

    mode: str = "live"
    options: RunOptions = field(default_factory=RunOptions)
    paths: Sequence[str] = ()
    from_report: str | None = None
    select: Sequence[str] = ()
    skip: Sequence[str] = ()
    fail_on: str = "fail"
    run_checks: bool = True
    show_progress: bool = False
    """Show a live status line on the terminal while slow collectors run."""
    progress_lines: bool = False
    """Without a terminal: one line per stage on stderr while slow steps run."""
    python: str | None = None
    """The Python environment to inspect (``--python``: a venv or conda folder, or an interpreter);
    None: this interpreter, or the one behind ``vllm`` on PATH when this one has no vLLM."""
    python_source: str = "--python"
    """Where ``python`` came from (``--python`` or ``BWDOCTOR_PYTHON``), as the report says it."""

    def recorded_options(self) -> dict[str, Any]:
        """The options a report records (``report.options``)."""
        o = self.options
        out: dict[str, Any] = {"level": o.level, "select": list(self.select), "skip": list(self.skip),
                               "target": o.target, "fail_on": self.fail_on}
        extra = {"smoke": o.smoke, "model": o.model, "quantization": o.quantization, "endpoint": o.endpoint,
                 "python": self.python, **{k: v for k, v in o.extra.items() if k not in INTERNAL_EXTRA}}
        out.update({k: v for k, v in extra.items() if v not in (None, False)})
        return out


INTERNAL_EXTRA = ("python_env", "site_packages", "python", "torch_python")
"""``RunOptions.extra`` keys the pipeline sets for the collectors (the inspected environment), not
options the user gave."""


# ----------------------------------------------------------------------------- stages


@contextlib.contextmanager
def plugin_output_to_stderr() -> Iterator[None]:
    """While plugin code runs, whatever it prints (Python ``print``, C libraries, child
    processes writing to descriptor 1) goes to standard error."""
    sys.stdout.flush()
    saved_py = sys.stdout
    try:
        saved_fd = os.dup(1)
    except OSError:
        saved_fd = -1
    try:
        if saved_fd >= 0:
            os.dup2(2, 1)
        sys.stdout = sys.stderr
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        sys.stdout = saved_py
        if saved_fd >= 0:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)


def plugin_problems(manager: PluginManager) -> list[Finding]:
    """One ``error`` finding per plugin that failed to load, declare or validate its hooks."""
    from bwdoctor import runner

    return runner.plugin_findings(manager)


def collect(registry: Registry, options: RunOptions, *, show_progress: bool = False,
            progress_lines: bool = False) -> tuple[Snapshot, list[Finding]]:
    """Run the collectors enabled for ``options`` (their failures become findings). With
    ``show_progress`` a status line on the terminal, with ``progress_lines`` one line per stage on
    stderr, say what runs and for how long."""
    from bwdoctor import runner

    if not (show_progress or progress_lines):
        return runner.collect(registry, options)
    from bwdoctor.progress import live_progress

    label = "collecting facts"
    with live_progress(True, ("bwdoctor: " + label) if show_progress else label, plain=not show_progress):
        return runner.collect(registry, options)


def parse(registry: Registry, paths: Sequence[str], snapshot: Snapshot | None = None) -> tuple[Snapshot, list[Finding]]:
    """Run every parser that recognises each evidence file (files or folders)."""
    from bwdoctor import runner

    return runner.parse(registry, list(paths), snapshot)


def resolve_target(query: str | None) -> dict[str, Any] | None:
    """The ``--target`` as the knowledge base resolves it, or None; :class:`BadOption` when unknown."""
    if not query:
        return None
    from bwdoctor import kb

    try:
        return dict(kb.resolve_target(query))
    except ValueError as exc:
        raise BadOption(str(exc), "--target") from None


def apply_target(snapshot: Snapshot, target: str | None, resolved: dict[str, Any] | None = None) -> None:
    """Record the ``--target`` GPU in the snapshot: checks then judge it instead of the GPUs present."""
    tgt = resolved if resolved is not None else resolve_target(target)
    if tgt is not None:
        tgt["replaces_gpus"] = True
        snapshot.set("target", tgt, f"--target {target}")


def judge(registry: Registry, snapshot: Snapshot, level: str = "quick", select: Sequence[str] = (),
          skip: Sequence[str] = ()) -> list[Finding]:
    """Run the checks selected at ``level`` on the judged view of the snapshot."""
    from bwdoctor import runner

    checks = runner.select_checks(registry.checks, level, select, skip)
    return runner.run_checks(checks, snapshot.judged_view())


def remedy(registry: Registry, findings: Sequence[Finding], snapshot: Snapshot) -> tuple[list[FixPlan], list[Finding]]:
    """Fix plans for the fail/warn findings, and an ``error`` finding per remedy that broke."""
    from bwdoctor import runner

    return runner.plan_remedies(registry, findings, snapshot.judged_view())


def diagnose(findings: Sequence[Finding]) -> list[Diagnosis]:
    """The root causes the findings point at, most likely first."""
    from bwdoctor.diagnosis import diagnose as rank

    return rank(findings)


BIG_EVIDENCE_BYTES = 64 * 1024 * 1024
"""Evidence at least this big (in all) shows progress while it is read."""


def read_evidence(registry: Registry, paths: Sequence[str], show_progress: bool = False,
                  progress_lines: bool = False) -> tuple[Snapshot, list[Finding], list[str]]:
    """The facts of the evidence named (files, folders, ``-`` for standard input, bwdoctor reports
    and snapshots), the findings about reading them, and the inputs read.

    :class:`~bwdoctor.files.BadInput` (exit 2) for a named input that cannot be used: unreadable,
    a device, an empty folder, a file no parser recognises, or evidence of different machines."""
    from bwdoctor.files import BadInput, check_named_inputs, is_bwdoctor_json, load_report
    from bwdoctor.runner import MixedMachines

    named = check_named_inputs(paths)
    stored = [p for p in named if is_bwdoctor_json(p)]
    evidence = [p for p in named if p not in stored]
    snap = Snapshot()
    for path in stored:  # a report or snapshot: its facts, as recorded
        old = load_report(path).snapshot
        for fact in old:
            snap.add(fact)
        for pattern, reason in old.missing.items():
            snap.mark_missing(pattern, reason)
        snap.meta.setdefault("evidence", []).append({"path": path, "size": os.path.getsize(path),
                                                     "parsers": ["bwdoctor-json"]})
    found: list[Finding] = []
    if evidence:
        from bwdoctor.progress import live_progress

        big = (show_progress or progress_lines) and _size_of(evidence) >= BIG_EVIDENCE_BYTES
        label = "reading evidence"
        try:
            with live_progress(big, ("bwdoctor: " + label) if show_progress else label, plain=not show_progress):
                snap, found = parse(registry, evidence, snap)
        except MixedMachines as exc:
            raise BadInput(str(exc)) from None
    read = {str(i.get("path")): i for i in snap.meta.get("evidence", []) if isinstance(i, dict)}
    for path in evidence:
        item = read.get(path)
        if item is not None and not item.get("parsers"):
            shown = "standard input" if path == "/dev/stdin" else path
            raise BadInput(f"no parser recognises {shown}: give raw collect_env, nvidia-smi or pip list output, a vLLM "
                           f"log, a Dockerfile, compose or .env file, or a bwdoctor report or snapshot")
    expand_gpu_names(snap)
    return snap, found, [str(i["path"]) for i in snap.meta.get("evidence", []) if isinstance(i, dict)]


def _size_of(paths: Sequence[str]) -> int:
    """Bytes in the regular files named and under the folders named (a pipe counts as big)."""
    import stat

    total = 0
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        if stat.S_ISFIFO(st.st_mode):
            return BIG_EVIDENCE_BYTES
        if stat.S_ISDIR(st.st_mode):
            for root, _, files in os.walk(p):
                for name in files:
                    with contextlib.suppress(OSError):
                        total += os.path.getsize(os.path.join(root, name))
        else:
            total += st.st_size
    return total


def expand_gpu_names(snap: Snapshot) -> None:
    """GPU names cut by nvidia-smi's table ("NVIDIA RTX PRO 6000 Blac...") in their full form from
    the knowledge base, noted as expanded (``name_as_seen``, ``name_expanded``). A prefix several
    products share keeps its name and gets the candidates (``name_candidates``)."""
    from bwdoctor import kb
    from bwdoctor.types import Fact

    for key in snap.keys("gpu."):
        fact = snap.get(key)
        if fact is None or not key[4:].isdigit() or not isinstance(fact.value, dict):
            continue
        name = fact.value.get("name")
        if not isinstance(name, str) or not name.rstrip().endswith(("...", "\u2026")):
            continue
        stem = name.rstrip().rstrip(".\u2026").strip()
        cands = sorted({g.name for g in kb.gpus() if g.name.lower().startswith(stem.lower())})
        if not cands:
            continue
        if len(cands) == 1:
            value = {**fact.value, "name": cands[0], "name_as_seen": name, "name_expanded": True}
            note = "name expanded from the knowledge base"
        else:  # the checks keep judging what the prefix tells; the report lists what it may be
            value = {**fact.value, "name_candidates": cands}
            note = "the name's candidates from the knowledge base"
        snap.facts[key] = Fact(key, value, f"{fact.source}; {note}")


def inspect_environment(request: Request) -> None:
    """Point the collectors at the Python environment to inspect (see :mod:`bwdoctor.pyenv`);
    :class:`BadOption` when ``--python`` names no usable interpreter."""
    from bwdoctor.pyenv import PythonEnvError, resolve

    try:
        resolve(request.python, request.python_source).apply(request.options.extra)
    except PythonEnvError as exc:
        raise BadOption(str(exc), "--python") from None


def unknown_selections(registry: Registry, select: Sequence[str]) -> list[str]:
    """The ``--select`` tokens that match no check (a typo in a CI gate should not pass unnoticed)."""
    from bwdoctor.runner import matches

    return [t for t in select if not any(matches(c, t) for c in registry.checks)]


# ----------------------------------------------------------------------------- the whole run


def build_report(manager: PluginManager, request: Request) -> Report:
    """Evidence or collectors → snapshot → checks → findings → remedies → diagnosis → Report
    (not yet redacted: see :func:`redacted`)."""
    with plugin_output_to_stderr():
        return _build(manager, request)


def _build(manager: PluginManager, request: Request) -> Report:
    from bwdoctor import __version__
    from bwdoctor.files import load_report

    start = time.perf_counter()
    registry = manager.registry()
    options = request.options
    target = resolve_target(options.target)  # an unknown target is a usage error before anything runs
    findings = plugin_problems(manager)
    mode = request.mode
    inputs: list[str] = []
    if request.from_report:
        snap = load_report(request.from_report).snapshot
        inputs.append(request.from_report)
        mode = "from"
    elif mode == "analyze":
        snap, found, inputs = read_evidence(registry, request.paths, request.show_progress, request.progress_lines)
        findings += found
    else:
        inspect_environment(request)
        slow = options.level != "quick" or options.smoke or bool(options.endpoint)
        snap, found = collect(registry, options, show_progress=slow and request.show_progress,
                              progress_lines=slow and request.progress_lines)
        findings += found
    apply_target(snap, options.target, target)
    plans: list[FixPlan] = []
    diagnosis: list[Diagnosis] = []
    if request.run_checks:
        # evidence files may come from any machine: every check that the evidence can feed runs
        level = options.level if mode != "analyze" else "full"
        from bwdoctor.verdict import enforce_requests

        findings += enforce_requests(judge(registry, snap, level, request.select, request.skip), request.select,
                                     options.smoke, options.endpoint)
        plans, broken = remedy(registry, findings, snap)
        findings += broken
        diagnosis = diagnose(findings)
    return Report(mode=mode, snapshot=snap, findings=findings, plans=plans, diagnosis=diagnosis,
                  tool_version=__version__,
                  created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  options=request.recorded_options(), inputs=inputs, plugins=manager.plugin_list(),
                  duration_s=time.perf_counter() - start)


def redacted(report: Report) -> Report:
    """The report with secrets removed: what every reporter and the fix script receive."""
    from bwdoctor.redact import redact_report_dict

    return Report.from_dict(redact_report_dict(report.to_dict()))
