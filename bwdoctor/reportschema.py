"""``bwdoctor schema``: the JSON Schema of the report (``--format json``), shipped in the package
(``bwdoctor/schema/report.schema.json``) so that a CI job can validate reports against the
version of bwdoctor that wrote them."""

from __future__ import annotations

from pathlib import Path

import click

SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "report.schema.json"


def schema_text() -> str:
    return SCHEMA_PATH.read_text(encoding="utf-8")


@click.command("schema", help="Print the JSON Schema of the JSON report (validate reports in CI with it).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write it to FILE (atomically) instead of standard output.")
def schema_command(output: str | None) -> None:
    from bwdoctor.cli import emit

    emit(schema_text(), output)
