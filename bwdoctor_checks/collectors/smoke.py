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
    CollectorSpec,
    Fact,
    RunOptions,
    Unavailable,
    hookimpl,
)
from bwdoctor.progress import terminal_progress_fd
from bwdoctor_checks._lib.torchprobe import gpu_lock, run_child, tail_lines

SMOKE_TIMEOUT = float(os.environ.get("BWDOCTOR_SMOKE_TIMEOUT") or 600)
SMOKE_MARGIN = 20.0  # the collector's own deadline is this much later than the child's
LOG_TAIL_LINES = 200
DEFAULT_TOKENS = 64
NOT_INSTALLED = ("vLLM is not installed in the inspected environment (install it there, or name the environment "
                 "that has it with --python)")


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






# ------------------------------------------------------------------------------ roofline






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


