"""``bwdoctor fit MODEL``: will a model fit on a GPU, and how fast can it be. The command is built
(with the budget arithmetic it needs) only when it runs: ``bwdoctor --help`` lists it without
importing that."""

from __future__ import annotations

import click

from bwdoctor import hookimpl, lazy_command


@hookimpl
def bwdoctor_cli_commands() -> list[click.Command]:
    return [lazy_command("fit", "bwdoctor_checks.collectors.model:fit_command",
                         "Will MODEL fit, and how fast can it be?")]
