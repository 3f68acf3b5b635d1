"""``bwdoctor arch PATHS``: the SASS and PTX architectures inside CUDA binaries (read from their ELF
and fatbin sections, nothing imported or run)."""

from __future__ import annotations

import json

import click

from bwdoctor import hookimpl


@click.command("arch")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--all-files", is_flag=True, help="Open every file in folders, not only *.so/*.cubin/*.fatbin.")
def arch(paths: tuple[str, ...], fmt: str, all_files: bool) -> None:
    """List the SASS (sm_XX) and PTX (compute_XX) architectures in CUDA binaries.

    PATHS are shared objects, cubins, fatbins or folders. Every file named is listed, with its
    architectures or the reason it has none ("no CUDA device code", "not an ELF file", "truncated
    fatbin"); in folders only the files with device code are (a folder without any is listed with
    that reason). JSON: ``[{"path", "sass", "ptx",
    "reason" (why there is no device code, else null), "note" (e.g. a truncated fatbin's partial
    listing)}]``. Exit 2 when a file named could not be read at all."""
    import os

    import bwdoctor_checks._lib.cudabin as cb

    rows: list[dict] = []
    unreadable = []
    for path in paths:
        if os.path.isdir(path):
            before = len(rows)
            for found in cb.scan_paths([path], all_files=all_files):
                rows.append({**found.to_dict(), "reason": None, "note": None})
            if len(rows) == before:  # a folder named is listed too, with why nothing is
                where = "no file in this folder" if all_files else "no *.so, *.cubin or *.fatbin in this folder"
                rows.append({"path": path, "sass": [], "ptx": [], "reason": f"{where} has CUDA device code",
                             "note": None})
            continue
        result, reason, bad = cb.describe(path)
        if result is not None:
            rows.append({**result.to_dict(), "reason": None, "note": reason})
        else:
            rows.append({"path": path, "sass": [], "ptx": [], "reason": reason, "note": None})
            if bad:
                unreadable.append(path)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        from rich.table import Table

        from bwdoctor import term

        with_code = sum(1 for r in rows if r["reason"] is None)
        table = Table(title=f"CUDA architectures ({with_code} of {len(rows)} with device code)")
        table.add_column("file", overflow="fold")
        table.add_column("SASS")
        table.add_column("PTX")
        for r in rows:
            if r["reason"] is None:
                note = f" ({r['note']})" if r["note"] else ""
                table.add_row(r["path"] + note, " ".join(r["sass"]) or "-", " ".join(r["ptx"]) or "-")
            else:
                table.add_row(r["path"], f"({r['reason']})", "-")
        click.echo(term.render(table), nl=False)
    if unreadable:
        raise click.exceptions.Exit(2)


@hookimpl
def bwdoctor_cli_commands() -> list[click.Command]:
    return [arch]
