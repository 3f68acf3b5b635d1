"""The bwdoctor plugin hooks.

A plugin is a module (or object) with functions named after these hooks, decorated with
``bwdoctor.hookimpl``. Hooks *declare*: they return specs (lists of collectors, parsers,
checks, remedies, reporters, CLI commands); the host calls the functions inside those specs,
each isolated with a deadline, so one broken plugin costs one ``error`` finding, never the run.

The host calls hooks through pluggy (each plugin's implementation once, isolated) and runs
pluggy's ``check_pending()`` after registration: an implementation of a hook that does not exist
(a typo), or a function named like a hook without the decorator, is one ``error`` finding naming
the plugin and the hook; it is never called.

Plugins are found three ways:

* built in (``DEFAULT_PLUGINS`` in :mod:`bwdoctor.manager`: ``bwdoctor_checks``,
  ``bwdoctor_remedies`` and the host's own checks, reporters and commands), registered through
  :func:`bwdoctor.manager.PluginManager.register_module` like any other;
* installed distributions that declare an entry point in the ``bwdoctor`` group::

      [project.entry-points.bwdoctor]
      myplugin = "my_package.bwdoctor_plugin"

* ``*.py`` files in a local folder given by ``--plugin-dir DIR`` or the
  ``BWDOCTOR_PLUGIN_PATH`` environment variable (``os.pathsep``-separated).

Any plugin can be disabled by name (``--disable NAME`` or ``BWDOCTOR_DISABLE=a,b``).
Plugins import only the public API: ``bwdoctor`` (re-exported names) and ``bwdoctor.kb``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import click

    from bwdoctor.types import CheckSpec, CollectorSpec, ParserSpec, RemedySpec, ReporterSpec

PROJECT = "bwdoctor"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def bwdoctor_collectors() -> list[CollectorSpec]:
    """Return collectors that read the live machine.

    Each :class:`~bwdoctor.types.CollectorSpec` names the fact keys it ``provides``; its
    ``func(options)`` yields :class:`~bwdoctor.types.Fact` objects, or raises
    :class:`~bwdoctor.types.Unavailable` when its source is absent (no driver, package not
    installed), which makes checks needing those facts ``skip`` with that message. Set
    ``isolate=True`` for work that can hang or crash (driver calls, importing torch): it then
    runs in a child process killed at ``timeout``. ``level`` (quick/standard/full) says from
    which ``--level`` on it runs.
    """


@hookspec
def bwdoctor_parsers() -> list[ParserSpec]:
    """Return parsers that turn evidence files (pasted logs, nvidia-smi output, pip freeze,
    Dockerfiles, compose and .env files, earlier reports) into the same facts collectors
    produce.

    ``detect(evidence)`` decides from ``evidence.head`` (the start of the file, decoded) and
    ``evidence.name`` whether the parser applies; several parsers may apply to one pasted blob.
    ``func(evidence)`` yields facts whose ``source`` carries the line (``vllm-log:line 812``).
    Read large files with ``evidence.lines()`` (streamed). A parser must never raise on bad
    input; if it does, that costs one ``error`` finding.
    """


@hookspec
def bwdoctor_checks() -> list[CheckSpec]:
    """Return checks: pure functions of the snapshot, no I/O.

    A :class:`~bwdoctor.types.CheckSpec` has a stable id ``BWD-<AREA>-NNN``, a title, a
    ``doc`` (what ``bwdoctor explain`` prints), the fact keys it ``needs``, a ``level`` and
    ``tags``, a default ``root_cause`` label and ``remedies``. ``func(snapshot)`` returns one
    :class:`~bwdoctor.types.Outcome` or several (one per GPU, say), made with ``passed``,
    ``warned``, ``failed`` or ``skipped``; returning nothing means "not applicable" (skip).
    """


@hookspec
def bwdoctor_remedies() -> list[RemedySpec]:
    """Return remedies. A :class:`~bwdoctor.types.RemedySpec` with id ``id`` is applied to each
    fail/warn finding whose ``remedies`` list that id: ``func(finding, snapshot)`` returns a
    :class:`~bwdoctor.types.FixPlan` (ordered steps, each with the command, an idempotency
    check, whether it needs root and how to undo it) or None when it does not apply."""


@hookspec
def bwdoctor_reporters() -> list[ReporterSpec]:
    """Return extra output formats: ``func(report, verbose) -> str``; selected by
    ``--format NAME``."""


@hookspec
def bwdoctor_cli_commands() -> list[click.Command]:
    """Return extra ``click`` commands to add to the ``bwdoctor`` command group."""
