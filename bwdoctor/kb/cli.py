"""``bwdoctor kb``: print the knowledge base (GPU table and architecture requirement matrix)."""

from __future__ import annotations

import json
from typing import Any

import click

from bwdoctor import kb


def _nvlink_gbs(g: kb.GpuSpec) -> Any:
    if g.nvlink is None:
        return None  # not established by a source (the row's notes say why)
    if not g.nvlink:
        return False
    return g.nvlink_bandwidth_gbs if g.nvlink_bandwidth_gbs is not None else True


def gpu_rows() -> list[dict[str, Any]]:
    """The GPU entries as JSON-ready dicts (``nvlink`` is False, the bandwidth in GB/s, True when
    the bandwidth is unknown, or None when no source establishes it)."""
    rows = []
    for g in kb.gpus():
        d = g.to_dict()
        d["nvlink_detail"] = d["nvlink"] if d["nvlink"] else None
        d["nvlink"] = _nvlink_gbs(g)
        rows.append(d)
    return rows


def arch_rows() -> list[dict[str, Any]]:
    return [a.to_dict() for a in kb.architectures()]


def _nearest(query: str) -> str:
    """" Nearest: b200, h200, ..." — the GPU keys and names closest to a query that matched none."""
    from difflib import get_close_matches

    names: dict[str, str] = {}
    for g in kb.gpus():
        for label in (g.key, g.name, *g.aliases):
            if label:
                names.setdefault(label.lower(), g.key)
    close = get_close_matches(query.lower(), list(names), n=30, cutoff=0.0)  # always the closest few
    keys = list(dict.fromkeys(names[c] for c in close))[:5]
    return f" Nearest: {', '.join(keys)} ('bwdoctor kb' lists them all)."


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if v is True:
        return "yes"
    if v is False:
        return "no"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v) or "-"
    return str(v)


@click.command(name="kb")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table: rich tables; json: {\"gpus\": [...], \"architectures\": [...]}")
@click.option("--gpu", "gpu_filter", default=None, shell_complete=lambda ctx, param, incomplete: [
    g.key for g in kb.gpus() if g.key.startswith(incomplete.lower())], help="Show only GPUs whose key, name or alias contains this text "
              "(spaces, dashes and case ignored); none matching is an error naming the nearest.")
def kb_command(fmt: str, gpu_filter: str | None) -> None:
    """Show the knowledge base: GPU specifications and per-architecture software requirements
    (tables on a terminal or with COLUMNS set; piped, one tab-separated line per row)."""
    gpus = gpu_rows()
    if gpu_filter:
        import re

        def norm(text: str) -> str:
            return re.sub(r"[^a-z0-9]", "", text.lower())

        f = norm(gpu_filter)
        gpus = [g for g in gpus if f and any(f in norm(str(x)) for x in (g["key"], g["name"], *(g.get("aliases") or [])))]
        if not gpus:
            raise click.UsageError(f"no GPU in the knowledge base matches {gpu_filter!r}.{_nearest(gpu_filter)}")
    archs = arch_rows()
    if fmt == "json":
        click.echo(json.dumps({"gpus": gpus, "architectures": archs}, indent=2))
        return
    from bwdoctor import term

    gpu_cols = ("GPU", "CC", "Memory", "GB/s", "NVLink", "PCIe", "W", "MIG", "FP8", "FP4", "TFLOPS bf16/fp8/fp4",
                "PCI id", "first listed in driver")
    gpu_cells = []
    for g in gpus:
        pcie = f"{g['pcie_gen']} x{g['pcie_lanes']}" if g["pcie_gen"] else "-"
        tf = "/".join(_fmt(g[k]) for k in ("bf16_dense_tflops", "fp8_dense_tflops", "fp4_dense_tflops"))
        gpu_cells.append([g["key"], g["compute_capability"], f"{_fmt(g['memory_gib'])}G {g['memory_type']}",
                          _fmt(g["memory_bandwidth_gbs"]), _fmt(g["nvlink"]), pcie, _fmt(g["power_w"]),
                          _fmt(g["mig_max_instances"]), _fmt(g["fp8"]), _fmt(g["fp4"]), tf,
                          _fmt(g["pci_device_ids"]), _fmt(g["first_listed_driver"])])
    arch_cols = ("CC", "sm", "arch", "min driver", "CUDA", "torch", "torch CUDA variants", "vLLM", "FlashInfer",
                 "Triton", "NCCL")
    arch_cells = []
    for r in archs:
        cuda = f">= {r['min_cuda']}" + (f", <= {r['max_cuda_major']}.x" if r["max_cuda_major"] else "")
        torch = _fmt(r["torch_min"]) + (f" .. {r['torch_max']}" if r["torch_max"] else "")
        parts = []
        for plat, rng in r["vllm"].items():
            if plat not in ("x86_64", "aarch64"):
                continue
            if rng["first"] is None:
                span = "unknown" if not r["vllm"]["established"] else "none"
            else:
                span = f"{rng['first']} .. {rng['last'] or 'newest'}"
            parts.append(f"{plat}: {span}")
        vllm = "; ".join(parts)
        fi = _fmt(r["flashinfer_min"]) if r["flashinfer_supported"] else "unsupported"
        arch_cells.append([r["compute_capability"], r["sm"], r["arch_name"], _fmt(r["min_driver"]), cuda, torch,
                           _fmt(r["torch_cuda_variants"]), vllm, fi, _fmt(r["triton_min"]), _fmt(r["nccl_min"])])
    tables = (("GPUs", gpu_cols, gpu_cells), ("Requirements per architecture", arch_cols, arch_cells))
    if term.width() is None:  # piped, no COLUMNS: one row per line, tab-separated (grep, cut), never wrapped
        for i, (title, cols, cells) in enumerate(tables):
            click.echo(("\n" if i else "") + f"# {title}\n" + "\t".join(cols))
            for row in cells:
                click.echo("\t".join(row))
    else:
        from rich.table import Table

        rendered = []
        for title, cols, cells in tables:
            t = Table(title=title, show_lines=False)
            for col in cols:
                t.add_column(col, overflow="fold")
            for row in cells:
                t.add_row(*row)
            rendered.append(t)
        click.echo(term.render(*rendered), nl=False)
    click.echo("Sources: every entry lists its sources (bwdoctor kb --format json); see docs/knowledge-base.md.")
