"""``bwdoctor arch PATHS``: the SASS and PTX architectures inside CUDA binaries (read from their ELF
and fatbin sections, nothing imported or run)."""

from __future__ import annotations

import json

import click

from bwdoctor import hookimpl


@click.command("arch")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--all-files", is_flag=True, help="Open every file in folders, not only *.so/*.cubin/*.fatbin.")
def arch(paths: tuple[str, ...], fmt: str, all_files: bool) -> None:
    """List the SASS (sm_XX) and PTX (compute_XX) architectures in CUDA binaries.

    PATHS are shared objects, cubins, fatbins or folders (walked; non-CUDA files skipped)."""
    import bwdoctor_checks._lib.cudabin as cb

    results = cb.scan_paths(paths, all_files=all_files)
    if fmt == "json":
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"CUDA architectures ({len(results)} files)")
    table.add_column("file", overflow="fold")
    table.add_column("SASS")
    table.add_column("PTX")
    for r in results:
        table.add_row(r.path, " ".join(r.sass) or "-", " ".join(r.ptx) or "-")
    Console().print(table)


@hookimpl
def bwdoctor_cli_commands() -> list[click.Command]:
    return [arch]
