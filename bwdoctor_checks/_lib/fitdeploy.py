"""The deployment a memory budget is computed for, read from the facts (pure: no I/O).

Settings come, in this order, from the ``vllm serve`` flags (``config.serve_args``), the engine's
config line or the flags' engine settings (``vllm.config``), and last from variables a
configuration sets with the *intent* of a flag but that vLLM never reads (``VLLM_MAX_MODEL_LEN``:
the knowledge base's ``invented_env`` table names the flag each one stands for). Those are used
so the budget answers the question the configuration asks, and every such setting says so.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bwdoctor import Snapshot, known
from bwdoctor.kb import vllm as kbv
from bwdoctor_checks._lib import fitcalc as fc
from bwdoctor_checks._lib.fitcalc import Deployment

MIG_PROFILE_RE = re.compile(r"^\s*(\d+)g\.(\d+)gb(?:[+-][a-z.]+)?\s*$", re.I)
_TRUE = ("1", "true", "yes", "on")


def _num(v: Any, kind: type) -> Any:
    if v is None or isinstance(v, bool):
        return None
    try:
        s = str(v).strip().replace("_", "").replace(",", "")
        if kind is int:
            m = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", s)
            if not m:
                return None
            mult = {"": 1, "k": 1000, "K": 1024, "m": 1000000, "M": 1048576}[m.group(2)]
            return int(float(m.group(1)) * mult)
        return kind(s)
    except (TypeError, ValueError):
        return None


_FLAGS: dict[str, tuple[str, type]] = {
    "--max-model-len": ("max_model_len", int), "--max-num-seqs": ("max_num_seqs", int),
    "--max-num-batched-tokens": ("max_num_batched_tokens", int),
    "--gpu-memory-utilization": ("gpu_memory_utilization", float), "--kv-cache-dtype": ("kv_cache_dtype", str),
    "--quantization": ("quantization", str), "--tensor-parallel-size": ("tensor_parallel_size", int),
    "--pipeline-parallel-size": ("pipeline_parallel_size", int), "--block-size": ("block_size", int),
    "--speculative-model": ("speculative_model", str), "--num-speculative-tokens": ("num_speculative_tokens", int),
    "--max-loras": ("max_loras", int), "--max-lora-rank": ("max_lora_rank", int),
}
_BOOLS = {"--enforce-eager": "enforce_eager", "--enable-lora": "enable_lora",
          "--disable-hybrid-kv-cache-manager": "disable_hybrid_kv_cache_manager"}
_CONFIG_KEYS = ("max_model_len", "max_num_seqs", "max_num_batched_tokens", "gpu_memory_utilization", "kv_cache_dtype",
                "quantization", "tensor_parallel_size", "pipeline_parallel_size", "enforce_eager", "block_size")


def _set(d: Deployment, key: str, value: Any, origin: str) -> None:
    if value is None or key in d.origin:
        return
    setattr(d, key, value)
    d.origin[key] = origin


def _speculative_config(d: Deployment, raw: Any, origin: str) -> None:
    cfg = raw
    if isinstance(raw, str):
        try:
            cfg = json.loads(raw)
        except ValueError:
            return
    if isinstance(cfg, dict):
        _set(d, "speculative_model", cfg.get("model") if isinstance(cfg.get("model"), str) else None, origin)
        _set(d, "num_speculative_tokens", _num(cfg.get("num_speculative_tokens"), int), origin)


def _model_from_flag_template(use: str) -> str | None:
    m = re.match(r"(--[a-z0-9-]+)(?:\s+(\S+))?$", use.strip())
    return m.group(1) if m else None


def read_deployment(snap: Snapshot) -> tuple[Deployment, str | None, str]:
    """The deployment, the model it serves (a name or path) and where the model name was read."""
    d = Deployment()
    model: str | None = None
    model_src = ""
    serve = snap.mapping("config.serve_args")
    sfact = snap.get("config.serve_args")
    guess = bool(serve) and sfact is not None and \
        (snap.meta.get("guessed") or {}).get("config.serve_args") == sfact.source

    def from_serve() -> None:
        nonlocal model, model_src
        if not serve:
            return
        src = f"vllm serve flag named in a sentence at {sfact.source}, a guess" if guess and sfact else \
            "vllm serve flag"
        for flag, (key, kind) in _FLAGS.items():
            if flag in serve and serve[flag] is not True:
                _set(d, key, serve[flag] if kind is str else _num(serve[flag], kind), f"{flag} ({src})")
        for flag, key in _BOOLS.items():
            if serve.get(flag) is True:
                _set(d, key, True, f"{flag} ({src})")
        if "--speculative-config" in serve:
            _speculative_config(d, serve["--speculative-config"], f"--speculative-config ({src})")
        if "--lora-modules" in serve and "enable_lora" not in d.origin:
            _set(d, "enable_lora", True, f"--lora-modules ({src})")
        if model is None and isinstance(serve.get("model"), str):
            model, model_src = serve["model"], "vllm serve"
            if guess and sfact:
                model_src = f"vllm serve named in a sentence at {sfact.source}, a guess"

    def from_engine() -> None:
        nonlocal model, model_src
        vcfg = snap.mapping("vllm.config")
        if not vcfg:
            return
        fact = snap.get("vllm.config")
        src = fact.source if fact else "vllm.config"
        for key in _CONFIG_KEYS:
            v = vcfg.get(key)
            if key == "max_model_len" and v is None:
                v = vcfg.get("max_seq_len")
            if v in (None, "None", "auto") and key in ("kv_cache_dtype", "quantization"):
                continue
            if known(v) and v is not None:
                _set(d, key, v, f"engine config ({src})")
        if model is None and isinstance(vcfg.get("model"), str):
            model, model_src = vcfg["model"], f"engine config ({src})"

    # a command line's flags are what was asked for; a sentence's are a guess, below what the engine logged
    for step in ((from_engine, from_serve) if guess else (from_serve, from_engine)):
        step()
    env = snap.mapping("config.env")
    env_src = snap.mapping("config.env_sources")
    invented = kbv.invented_env_vars()
    for name, value in sorted(env.items()):
        inv = invented.get(name)
        if not inv or not isinstance(value, str):
            continue
        where = env_src.get(name) or "configuration"
        origin = f"{name} at {where} (vLLM ignores this variable, see BWD-CFG-001)"
        use = str(inv.get("use") or "")
        if use.startswith("vllm serve"):
            if model is None and value.strip():
                model, model_src = value.strip(), origin
            continue
        if "SPECULATIVE_MODEL" in name:
            _set(d, "speculative_model", value.strip() or None, origin)
            continue
        if "NUM_SPECULATIVE_TOKENS" in name:
            _set(d, "num_speculative_tokens", _num(value, int), origin)
            continue
        flag = _model_from_flag_template(use) or ""
        if flag in _FLAGS:
            key, kind = _FLAGS[flag]
            if "{value}" in use:
                _set(d, key, value.strip() if kind is str else _num(value, kind), origin)
            elif value.strip().lower() in _TRUE:
                fixed = use.split(None, 1)[1] if " " in use else None
                _set(d, key, fixed if kind is str else _num(fixed, kind), origin)
        elif flag in _BOOLS and value.strip().lower() in _TRUE:
            _set(d, _BOOLS[flag], True, origin)
    if d.max_loras and not d.enable_lora and "max_loras" in d.origin:
        d.enable_lora = True
    return d, model, model_src


def mig_plan(snap: Snapshot) -> tuple[str, int | None, str] | None:
    """A MIG profile a configuration plans for (``MIG_PROFILE=4g.48gb``), the instance count when
    given, and where it was read."""
    env = snap.mapping("config.env")
    src = snap.mapping("config.env_sources")
    for name, value in sorted(env.items()):
        if isinstance(value, str) and MIG_PROFILE_RE.match(value):
            count = None
            for other, v in env.items():
                if other != name and "MIG" in other.upper() and re.search(r"COUNT|INSTANCES|NUM", other.upper()):
                    count = _num(v, int)
            return value.strip().lower(), count, f"{name} at {src.get(name) or 'configuration'}"
    return None


def mig_memory_gib(profile: str) -> float | None:
    """The memory a MIG profile's name states (``2g.48gb`` -> 48): NVIDIA names each profile after its
    memory in GB; the slice gets at most that."""
    m = MIG_PROFILE_RE.match(profile or "")
    return float(m.group(2)) if m else None


def mig_slices(profile: str) -> int | None:
    m = MIG_PROFILE_RE.match(profile or "")
    return int(m.group(1)) if m else None


def gpu_from_spec(spec: Any, origin: str) -> fc.Gpu:
    """A knowledge-base GPU; its memory is what CUDA reports (NVML's total, where observed), which vLLM
    multiplies by gpu_memory_utilization, else the marketed figure."""
    nvml = getattr(spec, "nvml_memory_total_mib", None)
    mem = round(nvml / 1024, 2) if isinstance(nvml, (int, float)) and nvml > 0 else float(spec.memory_gib)
    return fc.Gpu(name=spec.name, memory_gib=mem, bandwidth_gbs=spec.memory_bandwidth_gbs,
                  bf16_tflops=spec.bf16_dense_tflops or spec.fp16_dense_tflops, fp8_tflops=spec.fp8_dense_tflops,
                  fp4_tflops=spec.fp4_dense_tflops, fp8=bool(spec.fp8), origin=origin)


def judged_gpu(snap: Snapshot) -> tuple[fc.Gpu | None, Any, str]:
    """The GPU one engine process gets (the first judged GPU: ``--target``, else the first live or
    recorded ``gpu.<i>``, through :func:`bwdoctor.resolve.judged_gpus`), its knowledge-base spec, or why
    it is unknown."""
    from bwdoctor import resolve

    judged = resolve.judged_gpus(snap, need_cc=False)
    if not judged:
        return None, None, snap.missing.get("gpu.*") or "no GPU found and no --target given"
    j = judged[0]
    spec = j.spec
    if j.is_target:
        if spec is None:
            t = j.fact
            return None, None, (f"--target {t.get('query') or t.get('name')} names an architecture, not a GPU: "
                                "its memory and bandwidth are unknown")
        return gpu_from_spec(spec, "--target"), spec, ""
    g = j.fact
    total = g.get("memory_total_mib")
    if spec is None and not isinstance(total, (int, float)):
        return None, None, f"GPU {j.index} ({j.display_name}) is not in the knowledge base and its memory is unknown"
    gpu = gpu_from_spec(spec, f"GPU {j.index}") if spec else fc.Gpu(name=j.display_name, memory_gib=0.0,
                                                                    origin=f"GPU {j.index}")
    if isinstance(total, (int, float)) and total > 0:
        gpu.memory_gib = round(total / 1024, 2)
    used = g.get("memory_used_mib")
    if isinstance(used, (int, float)) and used > 1024:
        gpu.used_by_others_gib = round(used / 1024, 2)
    return gpu, spec, ""
