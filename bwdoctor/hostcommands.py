"""The host's own extra commands, declared through the ``bwdoctor_cli_commands`` hook every command
plugin uses (plugin ``commands.kb``). Each is imported only when it runs or shows its help."""

from __future__ import annotations

import click

from bwdoctor.hookspecs import hookimpl
from bwdoctor.lazy import lazy_command


@hookimpl
def bwdoctor_cli_commands() -> list[click.Command]:
    return [lazy_command("kb", "bwdoctor.kb.cli:kb_command",
                         "The knowledge base: GPU specs, requirements per arch."),
            lazy_command("schema", "bwdoctor.reportschema:schema_command",
                         "The JSON Schema of the JSON report.")]
