"""The ``bwdoctor`` command line.

Exit codes (the CI contract):
  0  nothing at or above the --fail-on threshold
  1  findings at or above it (``error`` findings count as ``fail``)
  2  usage error, or an input file that cannot be read or is not valid
  3  internal error / could not run (e.g. the output file cannot be written)
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import click

from bwdoctor import __version__, pipeline
from bwdoctor.files import BadInput, encodable, write_atomic
from bwdoctor.pipeline import BadOption, plugin_output_to_stderr
from bwdoctor.types import Report

if TYPE_CHECKING:
    from bwdoctor.manager import PluginManager

__all__ = ["cli", "main", "write_atomic"]

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

EPILOG = """\b
Every report starts with a verdict: READY, NOT READY or COULD NOT TELL, and why.

\b
Exit codes:
  0    nothing at or above --fail-on: ready, or could not tell (the
       reason says what was missing, e.g. no GPU and no --target)
  1    not ready: findings at or above --fail-on (error findings count as
       fail). 'run' fails when the inspected environment has no vLLM or a
       CPU-only torch, and when a check asked for (--select ID, --smoke,
       --endpoint) could not run
  2    usage error: a bad option, a --select/--skip/--disable (or
       BWDOCTOR_DISABLE) that matches nothing, an input that cannot be read
       or that no parser recognises, evidence from different machines
  3    internal error / could not run (e.g. the output cannot be written)
  130  interrupted (Ctrl-C)
"""

_ENV_EPILOG = """
\b
Environment: BWDOCTOR_PYTHON (--python), BWDOCTOR_PLUGIN_PATH (--plugin-dir),
BWDOCTOR_DISABLE (--disable, a,b), BWDOCTOR_PLUGIN_TIMEOUT (s per plugin
call), BWDOCTOR_VLLM_PYTHON / BWDOCTOR_TORCH_PYTHON (interpreter for the
smoke generation / probes), BWDOCTOR_SMOKE_TIMEOUT (s),
BWDOCTOR_SMOKE_STAGE_DEADLINES (load=900,compile=900: s per smoke stage),
BWDOCTOR_SMOKE_LOG (FILE: keep the whole engine log), BWDOCTOR_NVML_RECORD
(FILE: record NVML answers), BWDOCTOR_DEBUG (tracebacks), NO_COLOR, COLUMNS.

\b
Shell completion (bash; zsh/fish alike):
  eval "$(_BWDOCTOR_COMPLETE=bash_source bwdoctor)"
"""

EPILOG += _ENV_EPILOG

SNAPSHOT_EPILOG = """\b
Exit codes: 0 the facts were written; 2 usage error (a bad option or --python);
3 could not run (e.g. the output cannot be written); 130 interrupted.
""" + _ENV_EPILOG

FIX_EPILOG = """\b
Exit codes: 0 the script was written (or, with --apply, every step ran and
the findings it fixes are resolved); 1 with --apply, a step failed, a
finding it fixes is still failing, or a new one appeared (findings no fix
addresses are listed, not counted); 2 usage error or an unusable input;
3 could not run; 130 interrupted.
""" + _ENV_EPILOG


class InputError(click.ClickException):
    """Bad input (unreadable or invalid file): exit 2."""

    exit_code = EXIT_USAGE


class CouldNotRun(click.ClickException):
    exit_code = EXIT_INTERNAL


# ----------------------------------------------------------------------------- helpers


# the roles of built-in plugins each kind of work needs (see bwdoctor.manager.ROLE_HOOKS): a
# command imports no plugin it does not use
ROLES_LIVE = ("collectors", "parsers", "checks", "remedies")
ROLES_ANALYZE = ("parsers", "checks", "remedies")
ROLES_STORED = ("checks", "remedies")
ROLES_CATALOGUE = ("checks", "remedies")


def _manager(ctx: click.Context, roles: Sequence[str] | None = None) -> PluginManager:
    """The plugin manager of this invocation, with the built-in plugins of ``roles`` loaded (all
    when None). Third-party plugins are loaded the first time, whatever the roles."""
    from bwdoctor.manager import ROLES, PluginManager

    obj = ctx.find_root().ensure_object(dict)
    mgr = obj.get("manager")
    with plugin_output_to_stderr():
        if mgr is None:
            mgr = PluginManager(disabled=obj.get("disable", ()), plugin_dirs=obj.get("plugin_dirs", ()),
                                roles=roles)
            obj["manager"] = mgr
            from bwdoctor.manager import DISABLE_ENV

            known = {p.get("name") for p in mgr.plugin_list()}
            from_env = os.environ.get(DISABLE_ENV, "").replace(",", " ").split()
            for names, hint in ((obj.get("disable", ()), "--disable"), (from_env, DISABLE_ENV)):
                unknown = [n for n in names if n not in known]
                if unknown:
                    obj["manager"] = None
                    raise click.BadParameter(f"no plugin named {', '.join(repr(n) for n in unknown)} (see "
                                             "'bwdoctor plugins')", param_hint=hint)
        else:
            mgr.load_roles(ROLES if roles is None else roles)
        mgr.registry()
    return mgr


def emit(text: str, output: str | None, mode: int | None = None) -> None:
    if output and output != "-":
        try:
            write_atomic(output, text, mode)
        except OSError as exc:
            raise CouldNotRun(f"cannot write {output}: {exc.strerror or exc}") from None
    else:
        click.echo(encodable(text), nl=False)


def _render(report: Report, fmt: str, verbose: int, manager: PluginManager, output: str | None) -> str:
    """Render through the reporter named ``fmt`` (built-in ones are declared through the same hook
    as a plugin's); a third-party reporter runs with a deadline, its prints going to stderr."""
    manager.load_roles(["reporters"])
    spec = next((r for r in manager.registry().reporters if r.name == fmt), None)
    if spec is None:
        known = ", ".join(r.name for r in manager.registry().reporters)
        raise click.BadParameter(f"unknown format {fmt!r} (known: {known})", param_hint="--format")
    func = spec.func
    from bwdoctor import term

    if spec.color_func is not None and output in (None, "-") and term.is_terminal():
        func = spec.color_func  # for a terminal: its width, colour unless NO_COLOR
    info = manager.infos.get(spec.plugin)
    if info is not None and info.origin == "builtin":
        return func(report, verbose)
    from bwdoctor.isolation import call_with_deadline

    with plugin_output_to_stderr():
        res = call_with_deadline(func, (report, verbose), 30.0)
    if not res.ok:
        raise CouldNotRun(f"reporter {fmt!r} failed: {res.error}")
    if not isinstance(res.value, str):
        raise CouldNotRun(f"reporter {fmt!r} returned {type(res.value).__name__}, expected text")
    return res.value


def exit_code(findings: Sequence[Any], fail_on: str) -> int:
    if fail_on == "never":
        return EXIT_OK
    bad = {"fail", "error"} | ({"warn"} if fail_on == "warn" else set())
    return EXIT_FINDINGS if any(f.status in bad for f in findings) else EXIT_OK


# ----------------------------------------------------------------------------- the pipeline


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty() and not os.environ.get("CI")
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def _input_errors() -> Iterator[None]:
    """The pipeline's bad-input and bad-option errors as usage errors (exit 2)."""
    try:
        yield
    except BadInput as exc:
        raise InputError(str(exc)) from None
    except BadOption as exc:
        raise click.BadParameter(str(exc), param_hint=exc.option) from None


def _python_source(ctx: click.Context) -> str:
    from click.core import ParameterSource

    try:
        src = ctx.get_parameter_source("python")
    except Exception:  # noqa: BLE001 - a command without --python
        return "--python"
    return "BWDOCTOR_PYTHON" if src == ParameterSource.ENVIRONMENT else "--python"


def build_report(ctx: click.Context, mode: str, *, from_report: str | None = None, paths: Sequence[str] = (),
                 level: str = "quick", select: Sequence[str] = (), skip: Sequence[str] = (),
                 target: str | None = None, options_extra: dict[str, Any] | None = None,
                 fail_on: str = "fail", run_checks: bool = True) -> Report:
    """The report of :func:`bwdoctor.pipeline.build_report` for these command-line options."""
    from bwdoctor.types import RunOptions

    extra = dict(options_extra or {})
    python = extra.pop("python", None)
    options = RunOptions(level=level, target=target, model=extra.pop("model", None),
                         quantization=extra.pop("quantization", None), endpoint=extra.pop("endpoint", None),
                         smoke=bool(extra.pop("smoke", False)), verbose=int(extra.pop("verbose", 0)), extra=extra)
    request = pipeline.Request(mode=mode, options=options, paths=tuple(paths), from_report=from_report,
                               select=tuple(select), skip=tuple(skip), fail_on=fail_on, run_checks=run_checks,
                               show_progress=_stderr_is_terminal(), progress_lines=not _stderr_is_terminal(),
                               python=python,
                               python_source=_python_source(ctx))
    roles: Sequence[str]
    if from_report:
        roles = ROLES_STORED
    elif mode == "analyze":
        roles = ROLES_ANALYZE
    else:
        roles = ROLES_LIVE
    manager = _manager(ctx, roles)
    for tokens, hint in ((select, "--select"), (skip, "--skip")):
        with plugin_output_to_stderr():
            unknown = pipeline.unknown_selections(manager.registry(), tokens)
        if unknown:  # a typo in a CI gate must not pass unnoticed
            raise click.BadParameter(f"{', '.join(repr(t) for t in unknown)} matches no check (see 'bwdoctor list')",
                                     param_hint=hint)
    with _input_errors():
        return pipeline.build_report(manager, request)


_EXTENSION_FORMATS = ((".sarif.json", "sarif"), (".sarif", "sarif"), (".json", "json"), (".md", "markdown"),
                      (".markdown", "markdown"), (".xml", "junit"), (".junit", "junit"), (".txt", "console"),
                      (".log", "console"))


def format_for(fmt: str | None, output: str | None) -> str:
    """The --format given, else the one the --output file's extension names (r.json → json), else console."""
    if fmt is not None:
        return fmt
    name = (output or "").lower()
    if name and name != "-":
        for ext, guessed in _EXTENSION_FORMATS:
            if name.endswith(ext):
                return guessed
    return "console"


def finish(ctx: click.Context, report: Report, fmt: str | None, output: str | None, verbose: int,
           fail_on: str) -> None:
    from bwdoctor.reporters import headline, summary_line

    fmt = format_for(fmt, output)
    safe = pipeline.redacted(report)
    text = _render(safe, fmt, verbose, _manager(ctx, ["reporters"]), output)
    emit(text, output)
    code = exit_code(safe.findings, fail_on)
    if output and output != "-":  # the file holds the report; the terminal gets the gist
        click.echo(f"{headline(safe)} [{summary_line(safe)}; wrote {fmt} to {output}]", err=True)
    ctx.exit(code)


# ----------------------------------------------------------------------------- options

_common_output = [
    click.option("--format", "fmt", default=None, metavar="FORMAT",
                 help="console, json, markdown, junit, sarif (or a plugin's format). Default: the --output "
                 "file's extension (.json, .md, .xml, .sarif), else console."),
    click.option("--output", "-o", type=click.Path(dir_okay=False, writable=False), default=None,
                 help="Write the report to FILE (atomically) instead of standard output."),
    click.option("--fail-on", type=click.Choice(["warn", "fail", "never"]), default="fail", show_default=True,
                 help="Exit 1 when findings at or above this status exist."),
    click.option("-v", "--verbose", count=True, help="Show the evidence (facts and their sources). Repeat for more."),
]
def complete_check(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of --select/--skip: the check ids of the catalogue and their areas."""
    from bwdoctor.manager import PluginManager

    with plugin_output_to_stderr():
        ids = [c.id for c in PluginManager(roles=ROLES_CATALOGUE).registry().checks]
    areas = [i.rsplit("-", 1)[0] for i in ids]
    return [n for n in dict.fromkeys(sorted(areas) + sorted(ids)) if n.lower().startswith(incomplete.lower())]


def complete_gpu(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of a GPU: the knowledge base's GPU keys and sm_XY names."""
    from bwdoctor import kb

    names = [g.key for g in kb.gpus()] + [a.sm for a in kb.architectures()]
    return [n for n in dict.fromkeys(names) if n.startswith(incomplete.lower())]


_selection = [
    click.option("--select", multiple=True, metavar="ID|PREFIX|TAG", shell_complete=complete_check,
                 help="Run only matching checks (repeatable)."),
    click.option("--skip", multiple=True, metavar="ID|PREFIX|TAG", shell_complete=complete_check,
                 help="Do not run matching checks (repeatable)."),
    click.option("--target", default=None, metavar="GPU|SM", shell_complete=complete_gpu,
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
            reg = _manager(ctx, ["commands"]).registry()
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
@click.version_option(__version__, prog_name="bwdoctor")
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
@click.option("--endpoint-key-over-http", is_flag=True, help="Send the API key ($VLLM_API_KEY, $OPENAI_API_KEY) to a "
              "--endpoint that is neither HTTPS nor this machine (by default it is sent only over HTTPS or to "
              "loopback).")
@_python_option()
@_apply(_common_output)
@click.pass_context
def run(ctx: click.Context, from_report: str | None, level: str, select: tuple[str, ...], skip: tuple[str, ...],
        target: str | None, smoke: bool, model: str | None, quantization: str | None, endpoint: str | None,
        endpoint_key_over_http: bool, python: str | None, fmt: str, output: str | None, fail_on: str,
        verbose: int) -> None:
    """Check this machine (or, with --from, an earlier report's facts) and report."""
    report = build_report(ctx, "live", from_report=from_report, level=level, select=select, skip=skip,
                          target=target, fail_on=fail_on,
                          options_extra={"smoke": smoke, "model": model, "quantization": quantization,
                                         "endpoint": endpoint, "verbose": verbose, "python": python,
                                         "endpoint_key_over_http": endpoint_key_over_http})
    finish(ctx, report, fmt, output, verbose, fail_on)


@cli.command(epilog=SNAPSHOT_EPILOG)
@_level_option()
@click.option("--target", default=None, metavar="GPU|SM", shell_complete=complete_gpu,
              help="Record a target GPU in the facts.")
@_python_option()
@click.option("--format", "fmt", type=click.Choice(["json", "console"]), default="json", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="Write to FILE atomically.")
@click.pass_context
def snapshot(ctx: click.Context, level: str, target: str | None, python: str | None, fmt: str,
             output: str | None) -> None:
    """Collect the facts of this machine only (no checks), redacted."""
    import json

    from bwdoctor.redact import redact, scrub

    report = build_report(ctx, "snapshot", level=level, target=target, run_checks=False,
                          options_extra={"python": python})
    data = scrub(redact(report.snapshot.to_dict()))
    if fmt == "json":
        emit(json.dumps(data, indent=2, ensure_ascii=False) + "\n", output)
    else:
        lines = [f"{f['key']} = {json.dumps(f['value'], ensure_ascii=False)}  ({f['source']})" for f in data["facts"]]
        lines += [f"(missing) {k}: {v}" for k, v in data["missing"].items()]
        emit("\n".join(lines) + "\n", output)
    errors = [f for f in report.findings if f.status == "error"]
    for f in errors:
        click.echo(f"error: {f.message}", err=True)
    if output and output != "-":
        click.echo(f"wrote {len(data['facts'])} facts to {output} (read back by 'bwdoctor run --from' and "
                   f"'bwdoctor analyze')", err=True)
    ctx.exit(EXIT_OK)


@cli.command(epilog=EPILOG)
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@_apply(_selection)
@_apply(_common_output)
@click.pass_context
def analyze(ctx: click.Context, paths: tuple[str, ...], select: tuple[str, ...], skip: tuple[str, ...],
            target: str | None, fmt: str, output: str | None, fail_on: str, verbose: int) -> None:
    """Read pasted evidence (collect_env, nvidia-smi, pip list, vLLM logs, Dockerfile, compose,
    .env, command lines, bwdoctor reports and snapshots; files, folders, or - for standard input),
    run the checks on it and name the root cause."""
    report = build_report(ctx, "analyze", paths=paths, select=select, skip=skip, target=target, fail_on=fail_on,
                          options_extra={"verbose": verbose})
    finish(ctx, report, fmt, output, verbose, fail_on)


def _catalogue(ctx: click.Context) -> list[dict[str, Any]]:
    reg = _manager(ctx, ROLES_CATALOGUE).registry()
    rows: list[dict[str, Any]] = []
    for c in reg.checks:
        rows.append({"id": c.id, "title": c.title, "area": c.area, "level": c.level, "tags": list(c.tags),
                     "doc": c.doc, "root_cause": c.root_cause, "remedies": list(c.remedies), "needs": list(c.needs),
                     "plugin": c.plugin})
    return sorted(rows, key=lambda r: r["id"])


@cli.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table", show_default=True)
@click.pass_context
def list_(ctx: click.Context, fmt: str) -> None:
    """The check catalogue (a table on a terminal or with COLUMNS set; piped, one tab-separated line
    per check)."""
    import json

    from bwdoctor import term

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
    elif term.width() is None:  # piped, no COLUMNS: one check per line, tab-separated (grep, cut)
        for r in rows:
            click.echo("\t".join((r["id"], r["level"], r["title"], r["root_cause"] or "-",
                                  ", ".join(r["remedies"]) or "-")))
    else:
        from rich.table import Column, Table

        full = (term.width() or 0) >= 120  # narrower: the columns that fit, ids never cut
        cols = [Column("id", no_wrap=True), Column("level", no_wrap=True), Column("title", ratio=3)]
        if full:
            cols += [Column("root cause"), Column("remedies", ratio=2)]
        table = Table(*cols, show_lines=False, expand=False)
        for r in rows:
            cells = [r["id"], r["level"], r["title"]]
            table.add_row(*(cells + [r["root_cause"] or "", ", ".join(r["remedies"])] if full else cells))
        click.echo(term.render(table), nl=False)
        if not full:
            click.echo("(root causes, remedies: 'bwdoctor explain ID')")


@cli.command()
@click.argument("check_id")
@click.pass_context
def explain(ctx: click.Context, check_id: str) -> None:
    """What a check verifies, why it matters, and how it is fixed. ID is a check id with or without
    BWD- (BWD-STACK-001, stack-001), or a root-cause label (arch_not_in_torch_wheel): then the checks
    that point at it and their remedies."""
    from difflib import get_close_matches

    from bwdoctor.types import ROOT_CAUSES

    rows = {r["id"]: r for r in _catalogue(ctx)}
    query = check_id.strip()
    up = query.upper()
    row = rows.get(up) or rows.get("BWD-" + up)
    reg = _manager(ctx, ROLES_CATALOGUE).registry()
    remedies = {r.id: r for r in reg.remedies}
    if row is None and query.lower() in ROOT_CAUSES:
        _explain_root_cause(query.lower(), list(rows.values()), remedies)
        return
    if row is None:
        close = [i for i in rows if i.startswith(up) or i.startswith("BWD-" + up)]
        close += [c for c in get_close_matches(up if up.startswith("BWD-") else "BWD-" + up, list(rows), n=4, cutoff=0.6)
                  if c not in close]
        close += get_close_matches(query.lower(), ROOT_CAUSES, n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close[:8])}?" if close else " Run 'bwdoctor list' for the catalogue."
        raise click.UsageError(f"no check id or root-cause label {check_id!r}.{hint}")
    click.echo(f"{row['id']} - {row['title']}")
    click.echo(f"area {row['area']}, level {row['level']}, plugin {row['plugin']}")
    if row["needs"]:
        click.echo(f"needs facts: {', '.join(row['needs'])}")
    if row["root_cause"]:
        click.echo(f"root cause when it fails: {row['root_cause']} ('bwdoctor explain {row['root_cause']}')")
    click.echo("")
    click.echo(row["doc"].strip() or "(no documentation)")
    for rid in row["remedies"]:
        r = remedies.get(rid)
        click.echo(f"\nremedy {rid}: {r.title if r else '(not installed)'}")
        if r and r.doc:
            click.echo("  " + r.doc.strip().replace("\n", "\n  "))


def _explain_root_cause(label: str, rows: list[dict[str, Any]], remedies: dict[str, Any]) -> None:
    checks = [r for r in rows if r["root_cause"] == label]
    click.echo(f"root cause {label}")
    click.echo(f"{len(checks)} check(s) point at it when they fail:" if checks else
               "no installed check names it as its default (log signatures and per-finding labels may)")
    for r in sorted(checks, key=lambda r: r["id"]):
        click.echo(f"  {r['id']}  {r['title']}")
    used = sorted({rid for r in checks for rid in r["remedies"]})
    if used:
        click.echo("\nremedies:")
        for rid in used:
            rem = remedies.get(rid)
            click.echo(f"  {rid}: {rem.title if rem else '(not installed)'}")
    click.echo("\n'bwdoctor explain ID' tells what each check verifies and how it is fixed.")


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
    from rich.table import Table

    from bwdoctor import term

    table = Table("plugin", "origin", "distribution", "status", "provides")
    for r in rows:
        table.add_row(r["name"], r["origin"], f"{r['distribution']} {r['version']}".strip(), r["status"],
                      ", ".join(f"{v} {k}" for k, v in r["provides"].items()))
    click.echo(term.render(table), nl=False)
    for p in problems:
        click.echo(f"problem ({p['kind']}) {p['message']}")


@cli.command(epilog=FIX_EPILOG)
@click.argument("paths", nargs=-1, type=click.Path())
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
    safe = pipeline.redacted(report)
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
    from bwdoctor.redact import escape_controls, redact_text

    def shown(text: str) -> str:  # the plans run with the real values; what is printed is redacted
        return escape_controls(redact_text(text))

    verify = fixscript.reparser(_manager(ctx, ["parsers"]).registry().parsers, report.snapshot.meta.get("evidence", []),
                                report.snapshot.value("config.errors") or [])
    result = fixscript.apply_plans(report.plans, yes=yes, dry_run=dry_run,
                                   confirm=lambda q: click.confirm(shown(q), default=False),
                                   echo=lambda text: click.echo(shown(text)), roots=list(paths), verify=verify)
    if dry_run:
        ctx.exit(EXIT_OK)
    after = build_report(ctx, mode, from_report=None, paths=paths, level=level, select=select, skip=skip,
                         target=target, options_extra={"verbose": verbose, "python": python})
    bad = ("fail", "warn", "error")
    addressed = {fid for plan in report.plans for fid in plan.finding_ids}
    before_bad = {f.key for f in report.findings if f.status in bad}
    def outcome(found: list) -> str:
        """pass, a bad status, or skip when facts the check needs are missing now."""
        for st in bad:
            if any(f.status == st for f in found):
                return st
        if any(f.status == "skip" and (f.details or {}).get("missing") for f in found) or not found:
            return "skip"
        return "pass"  # passes, or is no longer applicable (the package or variable is gone)

    by_key: dict[str, list] = {}
    by_id: dict[str, list] = {}
    for f in after.findings:
        by_key.setdefault(f.key, []).append(f)
        by_id.setdefault(f.id, []).append(f)
    ids = {f.key: f.id for f in report.findings}
    now = {f.key: f.status for f in after.findings}
    failing = []
    for key in sorted(before_bad | {k for k, st in now.items() if st in bad}):
        # a subject that is gone (a variable removed) counts as its check does now
        status = outcome(by_key.get(key) or [f for f in by_id.get(ids.get(key, ""), []) if f.status != "skip"]
                         or by_id.get(ids.get(key, ""), []))
        if key not in before_bad:
            click.echo(f"new finding: {key} ({status})")
            failing.append(key)
        elif status == "pass":
            click.echo(f"resolved: {key}")
        elif status not in bad:  # the evidence it was judged on is gone (e.g. a variable commented out)
            click.echo(f"no longer judged: {key} (not confirmed fixed)")
        elif key in addressed:
            click.echo(f"still failing: {key}")
            failing.append(key)
        else:
            click.echo(f"not addressed by any fix: {key}")
    ctx.exit(EXIT_OK if result.ok and not failing else EXIT_FINDINGS)


def _quiet_broken_pipe() -> None:
    """The reader of standard output went away (``| head``): stop without a second error at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _no_imports_from_cwd() -> None:
    """``python -m bwdoctor`` puts the current folder first on ``sys.path``: plugin packages
    (``./bwdoctor_checks/``) and entry points (``./*.dist-info``) would then be loaded from
    wherever the user happens to stand. The folder is dropped unless bwdoctor itself was
    loaded from it (a source checkout)."""
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:
        cwd = None
    home = os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if cwd is None or cwd == home:
        sys.path[:] = [p for p in sys.path if p != ""]
        return
    sys.path[:] = [p for p in sys.path if p not in ("", ".") and os.path.realpath(p) != cwd]


def _stdout_gone() -> bool:
    """True when the reader of standard output went away: click wrapped it after EPIPE, or rich
    pointed it at /dev/null."""
    if type(sys.stdout).__name__.endswith("PacifyFlushWrapper"):
        return True
    try:
        st, null = os.fstat(sys.stdout.fileno()), os.stat(os.devnull)
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (null.st_dev, null.st_ino) or st.st_rdev == null.st_rdev != 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: never lets a traceback reach the user (exit 3 with a message instead)."""
    _no_imports_from_cwd()
    from bwdoctor.isolation import install_interrupt_handler
    from bwdoctor.term import install_stdio_fallback

    install_interrupt_handler()
    install_stdio_fallback()
    try:
        rv = cli.main(args=list(argv) if argv is not None else None, prog_name="bwdoctor", standalone_mode=False)
        return int(rv or 0)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        from bwdoctor.redact import escape_controls, redact_text

        vars(exc)["message"] = escape_controls(redact_text(exc.message))  # an option or a path may hold a secret
        exc.show()
        return int(exc.exit_code)
    except click.exceptions.Abort as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, KeyboardInterrupt):  # click turns Ctrl-C and the ending signals into Abort
            from bwdoctor.isolation import kill_children

            kill_children()
            click.echo("interrupted" if getattr(cause, "signum", 2) == 2 else f"terminated ({cause})", err=True)
            return int(getattr(cause, "exit_code", 130))
        click.echo("aborted", err=True)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:  # Ctrl-C 130, SIGTERM 143, SIGHUP 129 (child processes already ended)
        from bwdoctor.isolation import kill_children

        kill_children()
        click.echo("interrupted" if getattr(exc, "signum", 2) == 2 else f"terminated ({exc})", err=True)
        return int(getattr(exc, "exit_code", 130))
    except BrokenPipeError:
        _quiet_broken_pipe()
        return EXIT_OK
    except SystemExit as exc:
        if os.environ.get("_BWDOCTOR_COMPLETE"):  # shell completion answers and exits this way
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        if _stdout_gone():  # rich met a closed pipe: it pointed stdout at /dev/null and exited
            return EXIT_OK
        # plugin code calling sys.exit outside a guarded call
        click.echo(f"bwdoctor: internal error: SystemExit({exc.code!r}) raised by plugin code", err=True)
        return EXIT_INTERNAL
    except BaseException as exc:  # noqa: BLE001 - the contract: no traceback, exit 3
        import traceback

        if os.environ.get("BWDOCTOR_DEBUG"):
            traceback.print_exc()
        from bwdoctor.redact import escape_controls, redact_text

        click.echo(escape_controls(redact_text(f"bwdoctor: internal error: {type(exc).__name__}: {exc} "
                                               "(set BWDOCTOR_DEBUG=1 for the traceback)")), err=True)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
