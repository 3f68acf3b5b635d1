"""A local model folder, described for the memory and speed budget; and the ``bwdoctor fit`` command.

Reads ``config.json`` (the text model's values of a multimodal checkpoint included), its
``quantization_config``, and the weights' exact size from the safetensors headers (the first
8 + N bytes of each shard: tensor dtypes, shapes and byte offsets) or, failing that, from
``model.safetensors.index.json``'s ``metadata.total_size``. No weight data is read. A
``config.json`` or index given to ``analyze`` is read by ``bwdoctor_checks.parsers.model``.

Facts produced (source ``model-folder:<path>``, ``model-config:<file>`` or ``safetensors-index:<file>``):

* ``model.name``: the ``--model`` given to ``run`` when it is not a local folder (a name to look up).
* ``model.local``: ``{"path", "config": {config.json}, "quantization", "weight_bytes",
  "weight_source", "files"}``. The collector runs when ``--model`` is a local folder; the parsers
  read a ``config.json`` or a safetensors index given to ``analyze``.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bwdoctor import CollectorSpec, Fact, RunOptions, hookimpl, lazy_module

if TYPE_CHECKING:
    from bwdoctor_checks._lib import fitcalc as fc
else:  # imported when a model is read or sized
    fc = lazy_module("bwdoctor_checks._lib.fitcalc")

MAX_CONFIG_BYTES = 4 << 20
MAX_HEADER_BYTES = 100 << 20  # safetensors caps its header at 100 MB
MAX_SHARDS = 4096


class ModelFolderError(ValueError):
    """A folder that is not a readable model folder (the message says why)."""


def safetensors_bytes(path: Path) -> int:
    """Bytes of tensor data one safetensors file holds, from its header alone."""
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ModelFolderError(f"{path.name}: shorter than a safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n <= 0 or n > MAX_HEADER_BYTES:
            raise ModelFolderError(f"{path.name}: safetensors header length {n} is not plausible")
        head = fh.read(n)
    try:
        meta = json.loads(head)
    except ValueError as exc:
        raise ModelFolderError(f"{path.name}: safetensors header is not JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelFolderError(f"{path.name}: safetensors header is not an object")
    total = 0
    for name, t in meta.items():
        if name == "__metadata__" or not isinstance(t, dict):
            continue
        off = t.get("data_offsets")
        if isinstance(off, list) and len(off) == 2 and all(isinstance(x, int) for x in off):
            total += max(0, off[1] - off[0])
    return total


def _quantization(cfg: dict[str, Any], folder: Path) -> str | None:
    q = fc.quantization_from_config(cfg.get("quantization_config"))
    if q is None:
        tc = cfg.get("text_config")
        if isinstance(tc, dict):
            q = fc.quantization_from_config(tc.get("quantization_config"))
    if q is None:
        hq = folder / "hf_quant_config.json"  # ModelOpt checkpoints
        if hq.is_file() and hq.stat().st_size < MAX_CONFIG_BYTES:
            with open(hq, encoding="utf-8", errors="replace") as fh:
                try:
                    q = fc.quantization_from_config(dict(json.load(fh), quant_method="modelopt"))
                except (ValueError, TypeError):
                    q = None
    return q


def read_model_folder(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``model.local`` for a Hugging Face model folder; raises :class:`ModelFolderError`."""
    folder = Path(path)
    cfg_path = folder / "config.json"
    if not folder.is_dir():
        raise ModelFolderError(f"{folder} is not a folder")
    if not cfg_path.is_file():
        raise ModelFolderError(f"{folder} has no config.json")
    if cfg_path.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelFolderError(f"{cfg_path} is larger than {MAX_CONFIG_BYTES >> 20} MiB")
    with open(cfg_path, encoding="utf-8", errors="replace") as fh:
        try:
            cfg = json.load(fh)
        except ValueError as exc:
            raise ModelFolderError(f"{cfg_path} is not JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise ModelFolderError(f"{cfg_path} is not a JSON object")
    out: dict[str, Any] = {"path": str(folder), "config": cfg, "quantization": _quantization(cfg, folder),
                           "weight_bytes": None, "weight_source": "", "files": 0}
    shards = sorted(p for p in folder.glob("*.safetensors") if p.is_file())[:MAX_SHARDS]
    if shards:
        try:
            out["weight_bytes"] = sum(safetensors_bytes(p) for p in shards)
            out["weight_source"] = f"from the headers of {len(shards)} safetensors file(s)"
            out["files"] = len(shards)
        except (OSError, ModelFolderError) as exc:
            out["weight_source"] = f"safetensors headers unreadable ({exc})"
            out["weight_bytes"] = None
    if not out["weight_bytes"]:
        idx = folder / "model.safetensors.index.json"
        if idx.is_file() and idx.stat().st_size < MAX_CONFIG_BYTES:
            with open(idx, encoding="utf-8", errors="replace") as fh:
                try:
                    total = (json.load(fh).get("metadata") or {}).get("total_size")
                except (ValueError, AttributeError):
                    total = None
            if isinstance(total, int) and total > 0:
                out["weight_bytes"] = total
                out["weight_source"] = "from model.safetensors.index.json (metadata.total_size)"
    return out


# ------------------------------------------------------------------------------ collector


def collect_model(options: RunOptions) -> list[Fact]:
    model = options.model
    if not model:
        return []
    if not os.path.isdir(model):
        return [Fact("model.name", str(model), "--model")]
    try:
        info = read_model_folder(model)
    except (OSError, ModelFolderError) as exc:
        return [Fact("model.local", {"path": str(model), "error": str(exc)}, f"model-folder:{model}")]
    return [Fact("model.local", info, f"model-folder:{model}")]


@hookimpl
def bwdoctor_collectors() -> list[CollectorSpec]:
    return [CollectorSpec(
        name="model.local", func=collect_model, timeout=20.0,
        provides=["model.local", "model.name"],
        enabled=lambda o: bool(o.model), off_reason="no --model given",
        doc="The local model folder given as --model: config.json, quantization_config and the weights' exact "
            "bytes from the safetensors headers (no weight data read).")]


# ------------------------------------------------------------------------------ bwdoctor fit


def _nvml_gpu0() -> dict[str, Any]:
    """Name, PCI device id and memory of GPU 0 (run in a child process: driver calls can hang)."""
    import pynvml

    pynvml.nvmlInit()
    try:
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(h)
        mem = pynvml.nvmlDeviceGetMemoryInfo(h)
        pci = pynvml.nvmlDeviceGetPciInfo(h)
        return {"name": name.decode() if isinstance(name, bytes) else str(name),
                "pci_device_id": f"0x{(int(pci.pciDeviceId) >> 16) & 0xFFFF:04x}",
                "memory_total_mib": int(mem.total) >> 20, "memory_used_mib": int(mem.used) >> 20}
    finally:
        pynvml.nvmlShutdown()


def _live_gpu() -> tuple[fc.Gpu | None, str]:
    """The first live GPU, read through NVML in a child process with a deadline."""
    from bwdoctor import Snapshot
    from bwdoctor.isolation import call_in_child
    from bwdoctor_checks._lib import fitdeploy as fd

    res = call_in_child(_nvml_gpu0, (), 10.0)
    if not res.ok or not isinstance(res.value, dict):
        return None, f"NVML could not be read ({res.error or 'no answer'})"
    gpu, _spec, why = fd.judged_gpu(Snapshot([Fact("gpu.0", res.value, "nvml")]))
    return gpu, why


def fit_command() -> Any:
    """The ``bwdoctor fit`` command (declared by the ``commands.fit`` plugin, built when it runs)."""
    import click

    from bwdoctor.kb import resolve_target

    @click.command("fit", context_settings={"max_content_width": 120})
    @click.argument("model")
    @click.option("--target", help="Judge this GPU instead of the live one (rtx-pro-6000, h100, B200, ...).")
    @click.option("--mig", "mig", help="Budget one MIG slice of the GPU (a profile such as 2g.48gb).")
    @click.option("--max-model-len", type=int)
    @click.option("--max-num-seqs", type=int)
    @click.option("--max-num-batched-tokens", type=int)
    @click.option("--gpu-memory-utilization", type=click.FloatRange(0.01, 1.0))
    @click.option("--kv-cache-dtype", default="auto", show_default=True,
                  type=click.Choice(["auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_ds_mla"]))
    @click.option("--quantization", "-q", help="Online quantization (fp8) or the checkpoint's format when the name hides it.")
    @click.option("--tensor-parallel-size", "-tp", type=click.IntRange(1, 64), default=1, show_default=True)
    @click.option("--pipeline-parallel-size", "-pp", type=click.IntRange(1, 64), default=1, show_default=True)
    @click.option("--enforce-eager", is_flag=True, help="No CUDA graphs.")
    @click.option("--speculative-model", help="A draft model (its weights and KV cache join the budget).")
    @click.option("--num-speculative-tokens", type=int)
    @click.option("--enable-lora", is_flag=True)
    @click.option("--max-loras", type=click.IntRange(1, 1024))
    @click.option("--max-lora-rank", type=click.IntRange(1, 4096))
    @click.option("--block-size", type=click.IntRange(1, 1024))
    @click.option("--claim", type=click.FloatRange(min=0.1), help="An aggregate decode throughput (tokens/s) to judge.")
    @click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
    def fit(model: str, target: str | None, mig: str | None, fmt: str, claim: float | None, **flags: Any) -> None:
        """Will MODEL fit, and how fast can it be? MODEL is a local folder (config.json, safetensors) or a
        name (meta-llama/Llama-3.1-70B-Instruct-FP8) looked up in the architecture table, else sized from
        the parameter count in its name (an estimate). Settings are vLLM's own flags.

        Exit status: 0 fits (all --max-num-seqs, or fewer at --max-model-len), 1 does not fit, 2 bad input."""
        from bwdoctor import kb as kbgpu
        from bwdoctor.kb import models as kbm
        from bwdoctor_checks._lib import fitdeploy as fd

        if os.path.isdir(model):
            try:
                info = read_model_folder(model)
            except (OSError, ModelFolderError) as exc:
                raise click.UsageError(str(exc)) from None
            m = fc.describe(info["config"], model, "folder", model, quantization=flags["quantization"] or info["quantization"],
                            exact_weight_bytes=info["weight_bytes"], exact_weight_source=info["weight_source"])
            if not m.layers or not m.hidden:
                raise click.UsageError(f"{model}/config.json has no num_hidden_layers/hidden_size: not a decoder model")
        else:
            found = fc.resolve_model(model, flags["quantization"] if flags["quantization"] in
                                     kbm.fit_data()["weight_formats"] else None)
            if found is None:
                raise click.UsageError(f"{model!r} is neither a local model folder nor in the architecture table, and its "
                                       "name states no parameter count (like -8B)")
            m = found
        if target:
            try:
                resolved = resolve_target(target)
            except ValueError as exc:
                raise click.UsageError(str(exc)) from None
            spec = kbgpu.find_gpu(str(resolved.get("gpu") or "")) if resolved.get("gpu") else None
            if spec is None:
                raise click.UsageError(f"--target {target} names an architecture; give a GPU (its memory is needed)")
            gpu: fc.Gpu | None = fd.gpu_from_spec(spec, "--target")
        else:
            spec = None
            gpu, why = _live_gpu()
            if gpu is None:
                raise click.UsageError(f"no GPU to judge ({why}): give --target")
            spec = kbgpu.find_gpu(gpu.name)
        assert gpu is not None
        if mig:
            mem = fd.mig_memory_gib(mig)
            if mem is None:
                raise click.UsageError(f"--mig {mig!r} is not a MIG profile name like 2g.48gb")
            gpu = fc.Gpu(name=f"{gpu.name} MIG {mig}", memory_gib=mem, fp8=gpu.fp8, mig_profile=mig,
                         bf16_tflops=gpu.bf16_tflops, fp8_tflops=gpu.fp8_tflops, fp4_tflops=gpu.fp4_tflops)
        d = fc.Deployment(**{k: v for k, v in flags.items() if k in fc.Deployment.__dataclass_fields__ and v is not None})
        if d.max_loras or d.max_lora_rank:
            d.enable_lora = True
        draft = fc.resolve_model(d.speculative_model) if d.speculative_model else None
        if d.speculative_model and draft is None:
            raise click.UsageError(f"--speculative-model {d.speculative_model!r} cannot be sized (not in the table, no "
                                   "parameter count in its name)")
        b = fc.budget(m, d, gpu, draft)
        items = fc.remedies(m, d, gpu, draft, gpus_available=1 if mig else None) \
            if b.verdict not in ("fits", "fits_partly") else []
        sp = fc.speed(m, d, gpu)
        need = fc.streams_needed(sp, claim) if (sp and claim) else None
        result = {
            "model": {"name": m.name, "origin": m.origin, "ref": m.ref, "estimate": m.estimate, "summary": m.summary(),
                      "params": m.params_total, "active_params": m.params_active,
                      "format": m.quantization or m.dtype, "weights_gib": round(fc.gib(fc.weight_bytes(m)), 3),
                      "sources": list(m.sources)},
            "gpu": {"name": gpu.name, "memory_gib": gpu.memory_gib, "bandwidth_gbs": gpu.bandwidth_gbs,
                    "origin": gpu.origin or ("live" if not target else "--target")},
            "settings": b.settings, "verdict": b.verdict, "verdict_text": fc.verdict_text(b),
            "budget": fc.describe_budget(b),
            "budget_gib": {"total": round(fc.gib(b.budget_bytes), 3), "weights": round(fc.gib(b.weights), 3),
                           "draft_weights": round(fc.gib(b.draft_weights), 3), "lora": round(fc.gib(b.lora), 3),
                           "activation": round(fc.gib(b.activation), 3), "cuda_graphs": round(fc.gib(b.graphs), 3),
                           "runtime": round(fc.gib(b.reserve), 3), "kv_cache": round(fc.gib(b.kv_bytes), 3)},
            "kv": ({"tokens": b.capacity.tokens, "concurrency": round(b.capacity.concurrency, 2),
                    "bytes_per_token": b.capacity.bytes_per_token} if b.capacity else None),
            "remedies": [{"change": f, "verdict": bb.verdict, "concurrency": bb.concurrency,
                          "max_model_len": bb.settings["max_model_len"]} for f, bb in items],
            "speed": ({"decode_bound_tps": round(sp.decode_bound, 2),
                       "decode_bound_full_context_tps": sp.decode_bound_full and round(sp.decode_bound_full, 2),
                       "prefill_bound_tps": sp.prefill_bound and round(sp.prefill_bound),
                       "claim_tps": claim, "streams_needed": need} if sp else None),
        }
        if fmt == "json":
            click.echo(json.dumps(result, indent=2))
        else:
            click.echo(f"model   {m.name}: {m.summary()}; {(m.quantization or m.dtype).upper()} weights "
                       f"{fc.gib(fc.weight_bytes(m)):.1f} GiB"
                       + (" — ESTIMATE from the name" if m.estimate else f" [{m.origin}: {m.ref}]"))
            click.echo(f"gpu     {gpu.name}, {gpu.memory_gib:g} GiB" +
                       (f", {gpu.bandwidth_gbs:g} GB/s" if gpu.bandwidth_gbs else "") +
                       (f" x TP {d.tensor_parallel_size}" if d.tensor_parallel_size > 1 else ""))
            click.echo(f"budget  {fc.describe_budget(b)}")
            click.echo(f"verdict {fc.verdict_text(b)}")
            for f, bb in items[:5]:
                click.echo(f"  fix   {f}: {fc.verdict_text(bb)}")
            if sp:
                line = f"speed   one stream ≤ {sp.decode_bound:.1f} tokens/s decode"
                if sp.decode_bound_full:
                    line += f" ({sp.decode_bound_full:.1f} at {b.settings['max_model_len']:,} tokens of context)"
                if sp.prefill_bound:
                    line += f", prefill ≤ {sp.prefill_bound:,.0f} tokens/s ({sp.tflops_kind})"
                click.echo(line)
                if claim:
                    click.echo(f"claim   {claim:g} tokens/s aggregate needs ≥ {need} concurrent streams" if need
                               else f"claim   {claim:g} tokens/s is beyond this GPU's bandwidth at any concurrency")
        if b.verdict not in ("fits", "fits_partly"):
            raise click.exceptions.Exit(1)

    return fit
