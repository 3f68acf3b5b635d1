"""Will the model fit, and how fast can it be (BWD-FIT): the memory and speed budget of the
deployment the evidence describes, on the judged GPU (``--target``, the live GPU, a MIG slice)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from bwdoctor import CheckResult, CheckSpec, Snapshot, failed, hookimpl, lazy_module, passed, skipped, warned

if TYPE_CHECKING:
    from bwdoctor_checks._lib import fitcalc as fc
    from bwdoctor_checks._lib import fitdeploy as fd
    from bwdoctor_checks._lib import tinymodel
else:  # imported when a deployment is judged, not when the checks are listed or skip
    fc = lazy_module("bwdoctor_checks._lib.fitcalc")
    fd = lazy_module("bwdoctor_checks._lib.fitdeploy")
    tinymodel = lazy_module("bwdoctor_checks._lib.tinymodel")

MODEL_FACTS = ["config.serve_args", "vllm.config", "config.env", "model.local", "model.name", "smoke.engine"]
AGGREGATE_TARGETS = (100, 200, 300, 500, 1000, 2000, 5000)

# ------------------------------------------------------------------------------------ inputs


def model_for(snap: Snapshot, name: str | None, quantization: str | None = None) -> fc.Model | None:
    """The model a name stands for: the model folder read from disk, the smoke run's tiny model, the
    architecture table, or a parameter count in its name."""
    local = snap.mapping("model.local")
    if local and isinstance(local.get("config"), dict):
        path = str(local.get("path") or "")
        if name is None or name == path or name.rstrip("/").rsplit("/", 1)[-1] == path.rstrip("/").rsplit("/", 1)[-1]:
            return fc.describe(local["config"], name or path, "folder", path,
                               quantization=local.get("quantization") or quantization,
                               exact_weight_bytes=local.get("weight_bytes"),
                               exact_weight_source=str(local.get("weight_source") or ""))
    eng = snap.mapping("smoke.engine")
    if eng.get("model_source") == "tiny" and (name is None or name == eng.get("model")):
        return fc.describe(tinymodel.model_config(), "the smoke run's tiny Llama", "folder", "tinymodel.model_config()")
    if not name:
        return None
    return fc.resolve_model(name, quantization)


def _inputs(snap: Snapshot) -> tuple[Any, ...] | Any:
    d, name, name_src = fd.read_deployment(snap)
    if name is None and isinstance(snap.value("model.name"), str):
        name, name_src = str(snap.value("model.name")), "--model"
    if name is None and snap.mapping("smoke.engine").get("model"):
        name, name_src = str(snap.mapping("smoke.engine")["model"]), "the smoke run"
    q = d.quantization if d.quantization in ("fp8", "awq", "gptq", "nvfp4", "mxfp4", "int8", "bitsandbytes") else None
    m = model_for(snap, name, q)
    if m is None:
        if name is None and not snap.mapping("model.local"):
            return None
        return skipped(f"the model {name!r} ({name_src}) is not in the architecture table and its name states no "
                       "parameter count: run `bwdoctor fit PATH` on its folder (config.json, safetensors) to size it")
    gpu, spec, why = fd.judged_gpu(snap)
    if gpu is None:
        return skipped(f"cannot budget {m.name}: {why}")
    draft = fc.resolve_model(d.speculative_model) if d.speculative_model else None
    return d, m, name_src, gpu, spec, draft


# ------------------------------------------------------------------------------------ wording


def _model_words(m: fc.Model) -> str:
    fmt = (m.quantization or m.dtype).upper().replace("BFLOAT16", "BF16").replace("FLOAT16", "FP16")
    if m.origin == "folder":
        how = f"its config.json at {m.ref}" + (f", weights {m.exact_weight_source}" if m.exact_weight_source else "")
    elif m.origin == "table":
        how = f"architecture table row {m.ref}"
    else:
        how = f"ESTIMATE from '{m.ref}' in its name, no architecture known"
    return f"{m.name} ({how}; {m.summary()}; {fmt} weights)"


def _settings_note(d: fc.Deployment) -> str:
    ignored = sorted({o.split(" at ", 1)[0] for o in d.origin.values() if "ignores this variable" in o})
    if not ignored:
        return ""
    return (f" Settings taken from {', '.join(ignored)}, which vLLM never reads: this is the budget the "
            "configuration means, not what vLLM would do with it (see BWD-CFG-001).")


def _extras(b: fc.Budget, d: fc.Deployment, draft: fc.Model | None) -> str:
    bits = []
    if draft is not None:
        bits.append(f"draft model {draft.name}: {fc.gib(b.draft_weights):.1f} GiB of weights"
                    + (f" and {draft.layers} layers of KV cache per token" if draft.layers else "")
                    + (f", {d.num_speculative_tokens} speculative tokens" if d.num_speculative_tokens else ""))
    if b.lora:
        dflt = fc._defaults(b.gpu)
        bits.append(f"LoRA: {d.max_loras or dflt['max_loras']} adapter slots x rank {d.max_lora_rank or dflt['max_lora_rank']}"
                    f" over qkv/o/gate_up/down of {b.model.layers} layers = {fc.gib(b.lora):.2f} GiB preallocated")
    return ("; " + "; ".join(bits)) if bits else ""


def _remedy_words(items: list[tuple[str, fc.Budget]]) -> str:
    out = []
    for flag, bb in items[:4]:
        L = bb.settings["max_model_len"]
        out.append(f"{flag} (→ {bb.concurrency} x {L:,} tokens)")
    return "; ".join(out)


# ------------------------------------------------------------------------------------ checks


def _check_memory(snap: Snapshot) -> CheckResult:
    got = _inputs(snap)
    if got is None or not isinstance(got, tuple):
        return got
    d, m, name_src, gpu, spec, draft = got
    b = fc.budget(m, d, gpu, draft)
    L, seqs = b.settings["max_model_len"], b.settings["max_num_seqs"]
    where = f"{gpu.name} [{gpu.origin}]" + (f" x TP {d.tensor_parallel_size}" if d.tensor_parallel_size > 1 else "")
    head = (f"{_model_words(m)} on {where}, max_model_len {L:,}, max_num_seqs {seqs}, kv_cache_dtype "
            f"{d.kv_cache_dtype}: ")
    details: dict[str, Any] = {
        "model": {"name": m.name, "origin": m.origin, "ref": m.ref, "params": m.params_total,
                  "active_params": m.params_active, "weights_gib": round(fc.gib(fc.weight_bytes(m)), 2)},
        "budget_gib": {k: round(fc.gib(v), 3) for k, v in (
            ("total", b.budget_bytes), ("weights", b.weights), ("draft_weights", b.draft_weights), ("lora", b.lora),
            ("activation", b.activation), ("cuda_graphs", b.graphs), ("runtime", b.reserve), ("kv_cache", b.kv_bytes))},
        "settings": b.settings, "settings_origin": dict(d.origin), "verdict": b.verdict,
    }
    if b.capacity:
        details["kv"] = {"tokens": b.capacity.tokens, "concurrency": round(b.capacity.concurrency, 2),
                         "bytes_per_token": b.capacity.bytes_per_token}
    body = fc.describe_budget(b) + _extras(b, d, draft) + ". " + fc.verdict_text(b) + "."
    ev = [k for k in MODEL_FACTS + ["target", "gpu.0"] if k in snap]
    msg = head + body + _settings_note(d)
    if b.verdict == "fits":
        return passed(msg, evidence=ev, subject=gpu.name, details=details)
    if b.verdict == "fits_partly" and b.capacity:
        # fewer full-length sequences than max_num_seqs is how most deployments run: shorter requests
        # share the cache, and the scheduler queues the rest
        need = b.capacity.bytes_per_token * L * seqs
        return passed(msg + f" All {seqs} at full length would need {fc.gib(need):,.0f} GiB of KV cache.",
                      evidence=ev, subject=gpu.name, details=details)
    items = fc.remedies(m, d, gpu, draft)
    details["remedies"] = [{"change": f, "verdict": bb.verdict, "concurrency": bb.concurrency,
                            "max_model_len": bb.settings["max_model_len"]} for f, bb in items]
    if items:
        msg += f" Smallest changes that fit: {_remedy_words(items)}."
    cause = "gpu_memory_contention" if b.verdict == "others_hold_memory" else "kv_cache_oom"
    return failed(msg, evidence=ev, subject=gpu.name, details=details, root_cause=cause)


def _check_mig(snap: Snapshot) -> CheckResult:
    plan = fd.mig_plan(snap)
    if plan is None:
        return None
    profile, count, src = plan
    got = _inputs(snap)
    if got is None or not isinstance(got, tuple):
        return got if got is not None else skipped(f"MIG plan {profile} ({src}) but no model to size")
    d, m, name_src, gpu, spec, draft = got
    mem = fd.mig_memory_gib(profile)
    if mem is None:
        return skipped(f"cannot read the memory of MIG profile {profile!r}")
    notes = []
    profiles = [p for p in (spec.mig_profiles if spec else ()) if fd.MIG_PROFILE_RE.match(p) and "+" not in p and "-" not in p]
    if spec is not None and not spec.mig_max_instances:
        notes.append(f"{gpu.name} has no MIG at all")
    elif spec is not None and profiles and profile not in [p.lower() for p in profiles]:
        notes.append(f"{profile} is not a MIG profile of the {gpu.name} (its profiles: {', '.join(profiles)})")
    slice_gpu = fc.Gpu(name=f"{gpu.name} MIG {profile}", memory_gib=mem, bandwidth_gbs=None, fp8=gpu.fp8,
                       origin=src, mig_profile=profile)
    if gpu.bandwidth_gbs and spec is not None and spec.mig_max_instances:
        slices = fd.mig_slices(profile) or 1
        total_slices = max(fd.mig_slices(p) or 0 for p in profiles) if profiles else 0
        if total_slices:
            slice_gpu.bandwidth_gbs = gpu.bandwidth_gbs * min(slices, total_slices) / total_slices
    b = fc.budget(m, d, slice_gpu, draft)
    count_words = f"{count} x " if count else ""
    msg = (f"MIG plan {count_words}{profile} ({src}): each slice has at most {mem:g} GiB; {_model_words(m)} needs "
           f"{fc.gib(b.weights):.1f} GiB of weights"
           + (f" + {fc.gib(b.draft_weights):.1f} GiB draft model" if b.draft_weights else "")
           + (f" + {fc.gib(b.lora):.2f} GiB LoRA slots" if b.lora else "")
           + f" → {fc.verdict_text(b)}.")
    if notes:
        msg += " " + "; ".join(notes) + "."
    alts = []
    for p in profiles:
        pm = fd.mig_memory_gib(p)
        if pm and pm > mem:
            alts.append(fc.Gpu(name=f"{gpu.name} MIG {p}", memory_gib=pm, fp8=gpu.fp8, mig_profile=p))
    details = {"profile": profile, "slice_gib": mem, "count": count, "verdict": b.verdict,
               "weights_gib": round(fc.gib(b.weights), 2)}
    if b.fits and not notes:
        return passed(msg, evidence=["config.env"], subject=profile, details=details)
    items = fc.remedies(m, d, slice_gpu, draft, gpus_available=1,
                        mig_alternatives=sorted(alts, key=lambda g: g.memory_gib))
    if items:
        msg += f" Smallest changes that fit: {_remedy_words(items)}."
    elif alts or spec is not None:
        msg += (f" No single change makes it fit a {mem:g} GiB slice"
                + (" nor the largest one" if alts else "") + ": see BWD-FIT-001 for the whole GPU.")
    return failed(msg, evidence=["config.env"], subject=profile, details=details, root_cause="mig")


def _check_speed(snap: Snapshot) -> CheckResult:
    got = _inputs(snap)
    if got is None or not isinstance(got, tuple):
        return got
    d, m, name_src, gpu, spec, draft = got
    sp = fc.speed(m, d, gpu)
    if sp is None:
        return skipped(f"the memory bandwidth of {gpu.name} is unknown")
    L = d.max_model_len or m.max_position or 0
    msg = (f"{m.name} on {gpu.name}{' x TP ' + str(d.tensor_parallel_size) if d.tensor_parallel_size > 1 else ''}: "
           f"one stream decodes at most {sp.decode_bound:.1f} tokens/s ({sp.bandwidth_gbs:g} GB/s ÷ "
           f"{sp.bytes_per_token / 1e9:.1f} GB of {'active ' if m.moe else ''}weights read per token)")
    if sp.decode_bound_full:
        msg += f", {sp.decode_bound_full:.1f} tokens/s at a {L:,}-token context (its KV cache read too)"
    if sp.prefill_bound:
        msg += f"; prefill at most {sp.prefill_bound:,.0f} tokens/s ({sp.tflops:g} dense {sp.tflops_kind} TFLOPS)"
    need = []
    for t in AGGREGATE_TARGETS:
        if t > sp.decode_bound:
            n = fc.streams_needed(sp, t)
            if n:
                need.append(f"{t} tokens/s ≥ {n}")
        if len(need) >= 4:
            break
    if need:
        msg += ". An aggregate throughput needs concurrent streams: " + ", ".join(need)
    details = {"decode_bound_tps": round(sp.decode_bound, 2), "prefill_bound_tps": sp.prefill_bound and round(sp.prefill_bound),
               "decode_bound_full_context_tps": sp.decode_bound_full and round(sp.decode_bound_full, 2),
               "bytes_per_token": sp.bytes_per_token}
    measured = snap.mapping("smoke.timings").get("decode_tps")
    if isinstance(measured, (int, float)) and snap.mapping("smoke.engine").get("device") == "cuda":
        pct = 100 * measured / sp.decode_bound
        details["measured_tps"] = measured
        msg += f". Measured by the smoke run: {measured:g} tokens/s = {pct:.0f}% of the bound"
        if pct > 110:
            return warned(msg + ": above the bound, so the model or GPU is not what the budget assumed",
                          evidence=["smoke.timings"], subject=gpu.name, details=details)
    return passed(msg + ".", subject=gpu.name, details=details,
                  evidence=[k for k in ("target", "gpu.0", "smoke.timings") if k in snap])


def _check_logged_kv(snap: Snapshot) -> CheckResult:
    """The estimate against the KV-cache size the engine itself logged."""
    kvlog = snap.mapping("log.kv_cache")
    mem = snap.mapping("smoke.memory")
    tokens = kvlog.get("tokens") or mem.get("kv_cache_token_count")
    kv_gib = kvlog.get("gib") or mem.get("kv_cache_gib")
    if not isinstance(tokens, int):
        return None
    src_key = "log.kv_cache" if kvlog.get("tokens") else "smoke.memory"
    d, name, _ = fd.read_deployment(snap)
    eng = snap.mapping("smoke.engine")
    if src_key == "smoke.memory":
        d.max_model_len = d.max_model_len or eng.get("max_model_len")
        d.kv_cache_dtype = eng.get("kv_cache_dtype") or d.kv_cache_dtype
        d.tensor_parallel_size = eng.get("tensor_parallel_size") or d.tensor_parallel_size
        name = name or eng.get("model")
    m = model_for(snap, name)
    L = kvlog.get("request_tokens") or d.max_model_len
    logged = f"the engine logged a KV cache of {tokens:,} tokens" + (f" ({kv_gib:g} GiB)" if kv_gib else "") + \
        (f" = {tokens / L:.1f} sequences of {L:,} tokens" if L else "")
    if m is None or not m.layers:
        return passed(logged + f"; the model {name!r} is not sized here (no architecture), so no estimate is compared",
                      evidence=[src_key])
    if not isinstance(kv_gib, (int, float)) or not L:
        return passed(logged + "; without its KV memory in GiB the estimate cannot be compared", evidence=[src_key])
    # the pure KV arithmetic at the engine's own KV memory
    dd = fc._defaults(fc.Gpu("", 0.0))
    cpu = str(kvlog.get("device") or eng.get("device") or "").lower() == "cpu"
    cpu_d = fc.kbm.fit_data()["engine_defaults"].get("cpu") or {}
    block = d.block_size or (cpu_d.get("block_size") if cpu and not m.mla else None) or dd["block_size"]
    batched = d.max_num_batched_tokens or (cpu_d.get("max_num_batched_tokens_llm_class") if cpu else None) or 2048
    cap = fc.kv_capacity(m, kv_gib * fc.GiB, int(L), kv_cache_dtype=str(d.kv_cache_dtype or "auto"),
                         tp=int(d.tensor_parallel_size or 1), pp=int(d.pipeline_parallel_size or 1),
                         block_size=int(block), max_num_batched_tokens=int(batched),
                         hybrid=not d.disable_hybrid_kv_cache_manager)
    err = 100.0 * (cap.tokens - tokens) / tokens if tokens else math.inf
    msg = (f"{logged}; the budget's arithmetic gives {cap.tokens:,} tokens for {kv_gib:g} GiB "
           f"({cap.bytes_per_token:,.0f} bytes per token, {m.name}), {err:+.1f}%")
    details = {"logged_tokens": tokens, "estimated_tokens": cap.tokens, "error_pct": round(err, 2), "kv_gib": kv_gib}
    wl = snap.mapping("log.model_load").get("gib") or mem.get("weights_gib")
    if isinstance(wl, (int, float)) and wl > 0.5:
        est = fc.gib(fc.weight_bytes(m)) / max(int(d.tensor_parallel_size or 1), 1)
        msg += f"; weights: estimated {est:.2f} GiB, the engine loaded {wl:g} GiB"
        details["weights_logged_gib"] = wl
        details["weights_estimated_gib"] = round(est, 3)
    if abs(err) > 10:
        return warned(msg + ": more than 10% apart, so this model's KV layout is not what the budget assumes",
                      evidence=[src_key], details=details)
    return passed(msg, evidence=[src_key], details=details)


@hookimpl
def bwdoctor_checks() -> list[CheckSpec]:
    return [
        CheckSpec(
            id="BWD-FIT-001", title="The model, its KV cache and max_num_seqs fit the GPU memory",
            func=_check_memory, needs_any=MODEL_FACTS, tags=["fit", "memory"], root_cause="kv_cache_oom",
            confidence=0.7,
            doc="Sizes the deployment the evidence describes (vllm serve flags, the engine config line, or the VLLM_* "
                "variables a configuration sets with a flag's intent) on the judged GPU (--target, the live GPU): "
                "weights (exact from safetensors headers, else the architecture table row's config.json, else a "
                "parameter count in the name, marked as an estimate), the speculative draft model's weights and KV, "
                "the LoRA slots vLLM preallocates, the activation peak, CUDA graphs and the runtime's own memory, "
                "subtracted from total x gpu_memory_utilization as vLLM does; what is left is the KV cache, sized "
                "with vLLM's own page and block arithmetic (full and sliding-window layer groups, MLA latents, FP8). "
                "Passes when at least one max_model_len sequence fits (saying how many, against max_num_seqs), "
                "fails when not one does, the weights alone do not fit, or other processes hold the memory vLLM "
                "asks for. The finding lists the smallest single changes that fit, as "
                "vLLM flags (--kv-cache-dtype fp8, --max-model-len, --tensor-parallel-size, a quantized checkpoint). "
                "No automatic remedy: each of those trades quality, context length or GPUs, so the choice is the "
                "user's."),
        CheckSpec(
            id="BWD-FIT-002", title="A MIG slice the configuration plans holds the model", func=_check_mig,
            needs=["config.env"], tags=["fit", "memory", "mig"], root_cause="mig", confidence=0.9,
            doc="When a configuration names a MIG profile (MIG_PROFILE=2g.48gb), checks that the profile exists on "
                "the judged GPU (the knowledge base's MIG profiles) and budgets the model in one slice (at most the "
                "memory the profile's name states). Fails when the weights or one max_model_len sequence do not fit; "
                "names a larger slice or a quantized checkpoint that would. No automatic remedy: re-partitioning "
                "MIG stops every process on the GPU."),
        CheckSpec(
            id="BWD-FIT-003", title="Decode and prefill speed bounds", func=_check_speed, needs_any=MODEL_FACTS,
            tags=["fit", "performance"], can_fail=False,
            doc="One stream's decode reads every active weight (and its KV cache) once per token, so its tokens/s is "
                "at most memory bandwidth / those bytes; prefill needs 2 x active parameters FLOPs per token, so it "
                "is at most the knowledge base's dense TFLOPS / that. B concurrent streams share one weight read per "
                "step, so an aggregate of T tokens/s needs at least T x weights / (bandwidth - T x KV) streams: the "
                "finding lists that for round targets. A smoke-run decode speed above the bound warns (the model or "
                "GPU is not what the budget assumed); below-roofline speeds are BWD-SMOKE-003's business."),
        CheckSpec(
            id="BWD-FIT-004", title="The KV-cache estimate agrees with the engine's logged size",
            func=_check_logged_kv, needs_any=["log.kv_cache", "smoke.memory"], tags=["fit", "memory"],
            can_fail=False,
            doc="Where vLLM logged its KV-cache size (\"KV cache size: N tokens\", \"Available KV cache memory\" or "
                "the CPU build's explicit KV space), computes the tokens that memory holds with the budget's "
                "arithmetic for the same model and settings and compares: within 10% passes, further apart warns "
                "(the model's KV layout is not what the budget assumes). Weights are compared with 'Model loading "
                "took X GiB' when logged."),
    ]
