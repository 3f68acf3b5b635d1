"""The ``bwdoctor`` command line.

Exit codes (the CI contract):
  0  nothing at or above the --fail-on threshold
  1  findings at or above it (``error`` findings count as ``fail``)
  2  usage error, or an input file that cannot be read or is not valid
  3  internal error / could not run (e.g. the output file cannot be written)
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import click

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
FORMATS = ("console", "json", "markdown", "junit", "sarif")

EPILOG = """\b
Exit codes:
  0  nothing at or above the --fail-on threshold
  1  findings at or above it (error findings count as fail)
  2  usage error, or an input file that cannot be read or is invalid
  3  internal error / could not run
"""


class InputError(click.ClickException):
    """Bad input (unreadable or invalid file): exit 2."""

    exit_code = EXIT_USAGE


class CouldNotRun(click.ClickException):
    exit_code = EXIT_INTERNAL


# ----------------------------------------------------------------------------- helpers


def _manager(ctx: click.Context) -> Any:
    obj = ctx.find_root().ensure_object(dict)
    if obj.get("manager") is None:
        from bwdoctor.manager import PluginManager

        with _stdout_to_stderr():
            mgr = PluginManager(disabled=obj.get("disable", ()), plugin_dirs=obj.get("plugin_dirs", ()))
            mgr.registry()
        known = {p.get("name") for p in mgr.plugin_list()}
        unknown = [n for n in obj.get("disable", ()) if n not in known]
        if unknown:
            raise click.BadParameter(f"no plugin named {', '.join(repr(n) for n in unknown)} (see 'bwdoctor plugins')",
                                     param_hint="--disable")
        obj["manager"] = mgr
    return obj["manager"]


def _encodable(text: str) -> str:
    """Text that encodes as UTF-8: strings from the machine (file names with undecodable bytes,
    a report with lone surrogates) keep their odd characters as backslash escapes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def write_atomic(path: str, text: str, mode: int | None = None) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never a partial file.

    A symbolic link is followed (the file it names is replaced, the link stays). An existing
    target that is not a regular file (``/dev/stdout``, a FIFO, a device) is written to directly,
    never replaced; a FIFO nobody reads from is an error rather than a hang. An existing file
    this user may not write is not replaced."""
    data = _encodable(text).encode("utf-8")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory", path)
    special = os.path.abspath(path).startswith(("/dev/", "/proc/"))  # /dev/stdout, /proc/self/fd/N
    if st is not None and (special or not stat.S_ISREG(st.st_mode)):
        _write_stream(path, data)
        return
    real = os.path.realpath(path)
    if st is not None and not os.access(real, os.W_OK):
        raise PermissionError(errno.EACCES, "the file is read-only", path)
    directory = os.path.dirname(real) or "."
    fd, tmp = tempfile.mkstemp(prefix=".bwdoctor-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode if mode is not None else 0o644)
        os.replace(tmp, real)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_stream(path: str, data: bytes) -> None:
    """Write to a FIFO, a character device or a socket-like path without replacing it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OSError(errno.ENXIO, "nothing is reading from this FIFO", path) from None
        raise
    try:
        os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    finally:
        os.close(fd)


def emit(text: str, output: str | None, mode: int | None = None) -> None:
    if output and output != "-":
        try:
            write_atomic(output, text, mode)
        except OSError as exc:
            raise CouldNotRun(f"cannot write {output}: {exc.strerror or exc}") from None
    else:
        click.echo(_encodable(text), nl=False)


def _resolve_target(query: str | None) -> dict[str, Any] | None:
    if not query:
        return None
    from bwdoctor import kb

    try:
        return dict(kb.resolve_target(query))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--target") from None


def _render(report: Any, fmt: str, verbose: int, manager: Any, output: str | None) -> str:
    from bwdoctor.reporters import BUILTIN

    if fmt == "console":
        from bwdoctor.reporters.console import render

        color = (output in (None, "-")) and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        return render(report, verbose, color=color)
    if fmt in BUILTIN:
        return BUILTIN[fmt](report, verbose)
    for spec in manager.registry().reporters:
        if spec.name == fmt:
            from bwdoctor.isolation import call_with_deadline

            with _stdout_to_stderr():
                res = call_with_deadline(spec.func, (report, verbose), 30.0)
            if not res.ok:
                raise CouldNotRun(f"reporter {fmt!r} failed: {res.error}")
            if not isinstance(res.value, str):
                raise CouldNotRun(f"reporter {fmt!r} returned {type(res.value).__name__}, expected text")
            return res.value
    raise click.BadParameter(f"unknown format {fmt!r}", param_hint="--format")


def exit_code(findings: Sequence[Any], fail_on: str) -> int:
    if fail_on == "never":
        return EXIT_OK
    bad = {"fail", "error"} | ({"warn"} if fail_on == "warn" else set())
    return EXIT_FINDINGS if any(f.status in bad for f in findings) else EXIT_OK


MAX_REPORT_BYTES = 256 * 1024 * 1024
MAX_REPORT_FACTS = 200_000
FIFO_IDLE_S = 30.0


def read_input_file(path: str, limit: int, what: str) -> bytes:
    """Read a whole input file of at most ``limit`` bytes. Regular files and pipes
    (``<(cat report.json)``) are read; a FIFO without a writer reads as empty, one whose writer
    stays silent for 30 s is an error; devices, sockets and folders are refused (exit 2)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"cannot read {path}: it is a directory, not {what}")
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
            raise InputError(f"cannot read {path}: not a regular file or a pipe")
        if stat.S_ISREG(st.st_mode) and st.st_size > limit:
            raise InputError(f"{path} is larger than {limit // (1024 * 1024)} MiB: not {what}")
        chunks: list[bytes] = []
        total = 0
        import select

        while total <= limit:
            try:  # a FIFO without a writer reads as EOF at once; one with a silent writer blocks
                chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            except BlockingIOError:
                ready, _, _ = select.select([fd], [], [], FIFO_IDLE_S)
                if not ready:
                    raise InputError(f"cannot read {path}: nothing arrived through the pipe for {FIFO_IDLE_S:g} s") from None
                continue
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise InputError(f"{path} is larger than {limit // (1024 * 1024)} MiB: not {what}")
        return b"".join(chunks)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def load_report(path: str) -> Any:
    import json

    from bwdoctor.types import Report

    raw = read_input_file(path, MAX_REPORT_BYTES, "a bwdoctor report")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not a JSON bwdoctor report: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not a JSON bwdoctor report: {exc}") from None
    except RecursionError:
        raise InputError(f"{path} is not a valid bwdoctor report: its JSON is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with thousands of digits
        raise InputError(f"{path} is not a valid bwdoctor report: {exc}") from None
    facts = data.get("snapshot", {}).get("facts") if isinstance(data, dict) and isinstance(data.get("snapshot"), dict) else None
    if isinstance(facts, list) and len(facts) > MAX_REPORT_FACTS:
        raise InputError(f"{path} is not a valid bwdoctor report: {len(facts)} facts (a report has at most "
                         f"{MAX_REPORT_FACTS})")
    try:
        return Report.from_dict(data)
    except RecursionError:
        raise InputError(f"{path} is not a valid bwdoctor report: a value is nested too deeply") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path} is not a valid bwdoctor report: {exc}") from None


@contextlib.contextmanager
def _stdout_to_stderr() -> Any:
    """While plugin code runs, whatever it prints (Python ``print``, C libraries, child
    processes writing to descriptor 1) goes to standard error, so that a report written to
    standard output (``--format json``) stays parseable."""
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
        with contextlib.suppress(Exception):  # noqa: BLE001
            sys.stderr.flush()
        sys.stdout = saved_py
        if saved_fd >= 0:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)


# ----------------------------------------------------------------------------- the pipeline


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty() and not os.environ.get("CI")
    except (AttributeError, ValueError):
        return False


def build_report(ctx: click.Context, mode: str, *, from_report: str | None = None, paths: Sequence[str] = (),
                 level: str = "quick", select: Sequence[str] = (), skip: Sequence[str] = (),
                 target: str | None = None, options_extra: dict[str, Any] | None = None,
                 fail_on: str = "fail", run_checks: bool = True) -> Any:
    """evidence/collectors → snapshot → checks → findings → remedies → Report (not yet redacted).
    Whatever plugin code prints meanwhile goes to standard error."""
    with _stdout_to_stderr():
        return _build_report(ctx, mode, from_report=from_report, paths=paths, level=level, select=select, skip=skip,
                             target=target, options_extra=options_extra, fail_on=fail_on, run_checks=run_checks)


def _check_select(registry: Any, select: Sequence[str]) -> None:
    """A ``--select`` token that matches no check is a usage error (exit 2), so that a typo in a CI
    gate does not pass unnoticed."""
    from bwdoctor.runner import CORE_CHECKS, matches

    unknown = []
    for token in select:
        up = token.strip().upper()
        core = bool(up) and any(cid == up or cid.startswith(up) or cid.startswith("BWD-" + up) for cid in CORE_CHECKS)
        if not core and not any(matches(c, token) for c in registry.checks):
            unknown.append(token)
    if unknown:
        raise click.BadParameter(f"{', '.join(repr(t) for t in unknown)} matches no check (see 'bwdoctor list')",
                                 param_hint="--select")


def _build_report(ctx: click.Context, mode: str, *, from_report: str | None, paths: Sequence[str], level: str,
                  select: Sequence[str], skip: Sequence[str], target: str | None,
                  options_extra: dict[str, Any] | None, fail_on: str, run_checks: bool) -> Any:
    import datetime

    from bwdoctor import __version__, runner
    from bwdoctor.types import Report, RunOptions, Snapshot

    timer = runner.Timer()
    manager = _manager(ctx)
    registry = manager.registry()
    extra = dict(options_extra or {})
    python = extra.pop("python", None)
    options = RunOptions(level=level, target=target, model=extra.pop("model", None),
                         quantization=extra.pop("quantization", None), endpoint=extra.pop("endpoint", None),
                         smoke=bool(extra.pop("smoke", False)), verbose=int(extra.pop("verbose", 0)), extra=extra)
    _check_select(registry, select)
    tgt = _resolve_target(target)
    findings = runner.plugin_findings(manager)
    inputs: list[Any] = []
    if from_report:
        old = load_report(from_report)
        snap = old.snapshot
        inputs.append(from_report)
        mode = "from"
    elif mode == "analyze":
        snap = Snapshot()
        try:
            snap, pf = runner.parse(registry, list(paths), snap)
        except runner.MixedMachines as exc:
            raise InputError(str(exc)) from None
        findings += pf
        inputs = [i["path"] for i in snap.meta.get("evidence", [])]
    else:
        from bwdoctor.progress import live_progress
        from bwdoctor.pyenv import PythonEnvError, resolve

        try:
            resolve(python).apply(options.extra)
        except PythonEnvError as exc:
            raise click.BadParameter(str(exc), param_hint="--python") from None
        slow = options.level != "quick" or options.smoke or bool(options.endpoint)
        with live_progress(slow and _stderr_is_terminal(), "bwdoctor: collecting facts"):
            snap, cf = runner.collect(registry, options)
        findings += cf
    if tgt is not None:
        tgt["replaces_gpus"] = True
        snap.set("target", tgt, f"--target {target}")
    judged = snap.judged_view()
    checks = runner.select_checks(registry.checks, level if mode != "analyze" else "full", select, skip)
    if run_checks:
        from bwdoctor.verdict import enforce_requests

        findings += enforce_requests(runner.run_checks(checks, judged), select, options.smoke, options.endpoint)
    plans, perr = runner.plan_remedies(registry, findings, judged) if run_checks else ([], [])
    findings += perr
    diagnosis: list[dict[str, Any]] = []
    if run_checks:
        try:
            from bwdoctor.diagnosis import diagnose

            diagnosis = diagnose(findings)
        except ImportError:
            diagnosis = []
    opts = {"level": level, "select": list(select), "skip": list(skip), "target": target, "fail_on": fail_on}
    opts.update({k: v for k, v in (options_extra or {}).items() if k != "verbose" and v not in (None, False)})
    if python and mode != "analyze":
        opts["python"] = python
    return Report(mode=mode, snapshot=snap, findings=findings, plans=plans, diagnosis=diagnosis,
                  tool_version=__version__,
                  created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  options=opts, inputs=inputs, plugins=manager.plugin_list(), duration_s=timer.elapsed())


def redacted(report: Any) -> Any:
    from bwdoctor.redact import redact_report_dict
    from bwdoctor.types import Report

    return Report.from_dict(redact_report_dict(report.to_dict()))


def finish(ctx: click.Context, report: Any, fmt: str, output: str | None, verbose: int, fail_on: str) -> None:
    safe = redacted(report)
    text = _render(safe, fmt, verbose, _manager(ctx), output)
    emit(text, output)
    ctx.exit(exit_code(safe.findings, fail_on))


# ----------------------------------------------------------------------------- options

_common_output = [
    click.option("--format", "fmt", default="console", show_default=True, metavar="FORMAT",
                 help="console, json, markdown, junit, sarif (or a plugin's format)."),
    click.option("--output", "-o", type=click.Path(dir_okay=False, writable=False), default=None,
                 help="Write the report to FILE (atomically) instead of standard output."),
    click.option("--fail-on", type=click.Choice(["warn", "fail", "never"]), default="fail", show_default=True,
                 help="Exit 1 when findings at or above this status exist."),
    click.option("-v", "--verbose", count=True, help="Show the evidence (facts and their sources). Repeat for more."),
]
_selection = [
    click.option("--select", multiple=True, metavar="ID|PREFIX|TAG", help="Run only matching checks (repeatable)."),
    click.option("--skip", multiple=True, metavar="ID|PREFIX|TAG", help="Do not run matching checks (repeatable)."),
    click.option("--target", default=None, metavar="GPU|SM",
                 help="Judge the stack as if this GPU were present: rtx-pro-6000, b200, sm_120, 12.0 ..."),
]


def _apply(options: list[Any]) -> Any:
    def deco(f: Any) -> Any:
        for opt in reversed(options):
            f = opt(f)
        return f
    return deco


def _python_option() -> Any:
    return click.option("--python", "python", default=None, metavar="PATH", envvar="BWDOCTOR_PYTHON",
                        help="Inspect this Python environment: a venv or conda folder, or an interpreter (also "
                        "BWDOCTOR_PYTHON). Default: this interpreter, or the one behind the 'vllm' command on PATH "
                        "when this one has no vLLM.")


def _level_option() -> Any:
    return click.option("--level", type=click.Choice(["quick", "standard", "full"]), default="quick",
                        show_default=True, help="quick: static + NVML; standard: + kernel launch and full binary "
                        "scan; full: + probes and the vLLM smoke generation.")


# ----------------------------------------------------------------------------- the group


class LazyGroup(click.Group):
    """Built-in commands are known statically; plugin commands are loaded only when needed."""

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        try:
            reg = _manager(ctx).registry()
        except Exception:  # noqa: BLE001 - plugin trouble must not break the CLI
            return {}
        out = {}
        for cmd in reg.commands:
            if isinstance(cmd, click.Command) and cmd.name and cmd.name not in self.commands:
                out[cmd.name] = cmd
        return out

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self._plugin_commands(ctx)))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        return self._plugin_commands(ctx).get(name)


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bwdoctor", prog_name="bwdoctor")
@click.option("--plugin-dir", "plugin_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Load plugins (*.py) from this folder (repeatable; also BWDOCTOR_PLUGIN_PATH).")
@click.option("--disable", multiple=True, metavar="NAME", help="Disable a plugin by name (repeatable; also "
              "BWDOCTOR_DISABLE=a,b).")
@click.pass_context
def cli(ctx: click.Context, plugin_dirs: tuple[str, ...], disable: tuple[str, ...]) -> None:
    """bwdoctor: will this machine or image serve LLMs with vLLM on NVIDIA GPUs — and if not,
    why, and what exactly to run to fix it."""
    ctx.ensure_object(dict)
    ctx.obj.update(plugin_dirs=plugin_dirs, disable=disable, manager=None)


@cli.command(epilog=EPILOG)
@click.option("--from", "from_report", type=click.Path(dir_okay=False), default=None,
              help="Re-check the facts stored in an earlier JSON report with today's checks.")
@_level_option()
@_apply(_selection)
@click.option("--smoke", is_flag=True, help="Run the vLLM smoke generation at any level.")
@click.option("--model", default=None, help="Model path or name for the smoke generation (default: a tiny "
              "random-weight Llama built locally).")
@click.option("--quantization", default=None, help="Pass --quantization to the smoke generation (e.g. fp8).")
@click.option("--endpoint", default=None, metavar="URL", help="Smoke-test a running OpenAI-compatible vLLM server.")
@_python_option()
@_apply(_common_output)
@click.pass_context
def run(ctx: click.Context, from_report: str | None, level: str, select: tuple[str, ...], skip: tuple[str, ...],
        target: str | None, smoke: bool, model: str | None, quantization: str | None, endpoint: str | None,
        python: str | None, fmt: str, output: str | None, fail_on: str, verbose: int) -> None:
    """Check this machine (or, with --from, an earlier report's facts) and report."""
    report = build_report(ctx, "live", from_report=from_report, level=level, select=select, skip=skip,
                          target=target, fail_on=fail_on,
                          options_extra={"smoke": smoke, "model": model, "quantization": quantization,
                                         "endpoint": endpoint, "verbose": verbose, "python": python})
    finish(ctx, report, fmt, output, verbose, fail_on)


@cli.command(epilog=EPILOG)
@_level_option()
@click.option("--target", default=None, metavar="GPU|SM", help="Record a target GPU in the facts.")
@_python_option()
@click.option("--format", "fmt", type=click.Choice(["json", "console"]), default="json", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="Write to FILE atomically.")
@click.pass_context
def snapshot(ctx: click.Context, level: str, target: str | None, python: str | None, fmt: str,
             output: str | None) -> None:
    """Collect the facts of this machine only (no checks), redacted."""
    import json

    from bwdoctor.redact import redact

    report = build_report(ctx, "snapshot", level=level, target=target, run_checks=False,
                          options_extra={"python": python})
    data = redact(report.snapshot.to_dict())
    if fmt == "json":
        emit(json.dumps(data, indent=2, ensure_ascii=False) + "\n", output)
    else:
        lines = [f"{f['key']} = {json.dumps(f['value'], ensure_ascii=False)}  ({f['source']})" for f in data["facts"]]
        lines += [f"(missing) {k}: {v}" for k, v in data["missing"].items()]
        emit("\n".join(lines) + "\n", output)
    errors = [f for f in report.findings if f.status == "error"]
    for f in errors:
        click.echo(f"error: {f.message}", err=True)
    ctx.exit(EXIT_OK)


@cli.command(epilog=EPILOG)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@_apply(_selection)
@_apply(_common_output)
@click.pass_context
def analyze(ctx: click.Context, paths: tuple[str, ...], select: tuple[str, ...], skip: tuple[str, ...],
            target: str | None, fmt: str, output: str | None, fail_on: str, verbose: int) -> None:
    """Read pasted evidence (collect_env, nvidia-smi, pip list, vLLM logs, Dockerfile, compose,
    .env, command lines; files or folders), run the checks on it and name the root cause."""
    report = build_report(ctx, "analyze", paths=paths, select=select, skip=skip, target=target, fail_on=fail_on,
                          options_extra={"verbose": verbose})
    finish(ctx, report, fmt, output, verbose, fail_on)


def _catalogue(ctx: click.Context) -> list[dict[str, Any]]:
    from bwdoctor.runner import CORE_CHECKS

    reg = _manager(ctx).registry()
    rows: list[dict[str, Any]] = [{"id": cid, "title": t, "area": "CORE", "level": "quick", "tags": [], "doc": doc, "root_cause": None,
             "remedies": [], "needs": [], "plugin": "bwdoctor"} for cid, (t, doc) in CORE_CHECKS.items()]
    for c in reg.checks:
        rows.append({"id": c.id, "title": c.title, "area": c.area, "level": c.level, "tags": list(c.tags),
                     "doc": c.doc, "root_cause": c.root_cause, "remedies": list(c.remedies), "needs": list(c.needs),
                     "plugin": c.plugin})
    return sorted(rows, key=lambda r: r["id"])


@cli.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table", show_default=True)
@click.pass_context
def list_(ctx: click.Context, fmt: str) -> None:
    """The check catalogue."""
    import json

    rows = _catalogue(ctx)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "markdown":
        out = ["# Check catalogue", "", "Generated by `bwdoctor list --format markdown`.", ""]
        for r in rows:
            out += [f"## {r['id']} — {r['title']}", "",
                    f"*Area* {r['area']} · *level* {r['level']} · *root cause* {r['root_cause'] or '—'} · "
                    f"*remedies* {', '.join(r['remedies']) or '—'} · *plugin* {r['plugin']}", "", r["doc"].strip(), ""]
        click.echo("\n".join(out))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("id", "level", "title", "root cause", "remedies", show_lines=False)
        for r in rows:
            table.add_row(r["id"], r["level"], r["title"], r["root_cause"] or "", ", ".join(r["remedies"]))
        Console(width=160).print(table)


@cli.command()
@click.argument("check_id")
@click.pass_context
def explain(ctx: click.Context, check_id: str) -> None:
    """What a check verifies, why it matters, and how it is fixed."""
    rows = {r["id"]: r for r in _catalogue(ctx)}
    row = rows.get(check_id.upper())
    if row is None:
        close = [i for i in rows if i.startswith(check_id.upper())]
        hint = f" Did you mean: {', '.join(close[:8])}?" if close else " Run 'bwdoctor list' for the catalogue."
        raise click.UsageError(f"no check with id {check_id!r}.{hint}")
    reg = _manager(ctx).registry()
    remedies = {r.id: r for r in reg.remedies}
    click.echo(f"{row['id']} — {row['title']}")
    click.echo(f"area {row['area']}, level {row['level']}, plugin {row['plugin']}")
    if row["needs"]:
        click.echo(f"needs facts: {', '.join(row['needs'])}")
    if row["root_cause"]:
        click.echo(f"root cause when it fails: {row['root_cause']}")
    click.echo("")
    click.echo(row["doc"].strip() or "(no documentation)")
    for rid in row["remedies"]:
        r = remedies.get(rid)
        click.echo(f"\nremedy {rid}: {r.title if r else '(not installed)'}")
        if r and r.doc:
            click.echo("  " + r.doc.strip().replace("\n", "\n  "))


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def plugins(ctx: click.Context, fmt: str) -> None:
    """The plugins found (built in, entry points, plugin folders) and any that failed."""
    import json

    mgr = _manager(ctx)
    reg = mgr.registry()
    rows = mgr.plugin_list()
    counts: dict[str, dict[str, int]] = {}
    for kind, items in (("collectors", reg.collectors), ("parsers", reg.parsers), ("checks", reg.checks),
                        ("remedies", reg.remedies), ("reporters", reg.reporters)):
        for it in items:
            counts.setdefault(it.plugin, {}).setdefault(kind, 0)
            counts[it.plugin][kind] += 1
    for r in rows:
        r["provides"] = counts.get(r["name"], {})
    problems = [p.__dict__ for p in mgr.problems]
    if fmt == "json":
        click.echo(json.dumps({"plugins": rows, "problems": problems}, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table("plugin", "origin", "distribution", "status", "provides")
    for r in rows:
        table.add_row(r["name"], r["origin"], f"{r['distribution']} {r['version']}".strip(), r["status"],
                      ", ".join(f"{v} {k}" for k, v in r["provides"].items()))
    con = Console(width=160)
    con.print(table)
    for p in problems:
        con.print(f"[red]problem[/red] ({p['kind']}) {escape(p['message'])}")


@cli.command(epilog=EPILOG)
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--from", "from_report", type=click.Path(dir_okay=False), default=None,
              help="Build the fixes for an earlier JSON report's facts.")
@_level_option()
@_apply(_selection)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write the fix script to FILE (atomically, executable).")
@click.option("--apply", "do_apply", is_flag=True, help="Run the steps, asking before each one.")
@click.option("--yes", "-y", is_flag=True, help="With --apply: do not ask (for CI).")
@click.option("--dry-run", is_flag=True, help="With --apply: print what would run, run nothing.")
@_python_option()
@click.option("-v", "--verbose", count=True)
@click.pass_context
def fix(ctx: click.Context, paths: tuple[str, ...], from_report: str | None, level: str, select: tuple[str, ...],
        skip: tuple[str, ...], target: str | None, output: str | None, do_apply: bool, yes: bool, dry_run: bool,
        python: str | None, verbose: int) -> None:
    """Render the fixes for the failing findings as a reviewable bash script, or apply them.

    Inputs as for 'run' (live, or --from REPORT) and 'analyze' (evidence PATHS)."""
    from bwdoctor import fixscript

    mode = "analyze" if paths else "live"
    report = build_report(ctx, mode, from_report=from_report, paths=paths, level=level, select=select, skip=skip,
                          target=target, options_extra={"verbose": verbose, "python": python})
    safe = redacted(report)
    from bwdoctor import __version__

    if not do_apply:
        script = fixscript.render_script(safe.plans, safe.findings, __version__)
        emit(script, output, 0o755 if output else None)
        if output:
            click.echo(f"wrote {output}: {len(safe.plans)} fix plan(s) for "
                       f"{sum(1 for f in safe.findings if f.status in ('fail', 'warn'))} finding(s)", err=True)
        ctx.exit(EXIT_OK)
    if not report.plans:
        click.echo("nothing to fix: no failing finding has an applicable remedy")
        ctx.exit(EXIT_OK)
    result = fixscript.apply_plans(report.plans, yes=yes, dry_run=dry_run,
                                   confirm=lambda q: click.confirm(q, default=False), echo=click.echo)
    if dry_run:
        ctx.exit(EXIT_OK)
    after = build_report(ctx, mode, from_report=None, paths=paths, level=level, select=select, skip=skip,
                         target=target, options_extra={"verbose": verbose, "python": python})
    before_bad = {f.key for f in report.findings if f.status in ("fail", "warn")}
    after_bad = {f.key for f in after.findings if f.status in ("fail", "warn")}
    for key in sorted(before_bad - after_bad):
        click.echo(f"resolved: {key}")
    for key in sorted(before_bad & after_bad):
        click.echo(f"still failing: {key}")
    ctx.exit(EXIT_OK if result.ok and not (before_bad & after_bad) else EXIT_FINDINGS)


def _register_host_commands() -> None:
    try:
        from bwdoctor.kb.cli import kb_command
    except ImportError:
        return
    cli.add_command(kb_command, "kb")


_register_host_commands()


def _quiet_broken_pipe() -> None:
    """The reader of standard output went away (``| head``): stop without a second error at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: never lets a traceback reach the user (exit 3 with a message instead)."""
    from bwdoctor.isolation import install_interrupt_handler

    install_interrupt_handler()
    try:
        rv = cli.main(args=list(argv) if argv is not None else None, prog_name="bwdoctor", standalone_mode=False)
        return int(rv or 0)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except BrokenPipeError:
        _quiet_broken_pipe()
        return EXIT_OK
    except SystemExit as exc:  # plugin code calling sys.exit outside a guarded call
        click.echo(f"bwdoctor: internal error: SystemExit({exc.code!r}) raised by plugin code", err=True)
        return EXIT_INTERNAL
    except BaseException as exc:  # noqa: BLE001 - the contract: no traceback, exit 3
        import traceback

        if os.environ.get("BWDOCTOR_DEBUG"):
            traceback.print_exc()
        click.echo(f"bwdoctor: internal error: {type(exc).__name__}: {exc} (set BWDOCTOR_DEBUG=1 for the traceback)",
                   err=True)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
