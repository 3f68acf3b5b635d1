"""vLLM smoke generation: load a model with vLLM's ``LLM`` API and greedily generate tokens.

Runs at ``--level full`` or with ``--smoke``. vLLM runs in a child interpreter (never imported
here): ``options.extra["python"]``, else ``$BWDOCTOR_VLLM_PYTHON``, else this interpreter. The child
is killed with all its processes at the deadline (``$BWDOCTOR_SMOKE_TIMEOUT``, default 600 s, or
``options.extra["smoke_timeout"]`` when lower). With no ``--model`` the child builds a tiny
random-weight Llama in a temporary folder (no hub, no network) and generates from it.

Stages: import, build (the tiny model), load (weights), compile (profile run, torch.compile, CUDA
graphs, KV cache, kernel JIT: from vLLM's ``Model loading took`` line to the first request) and
generate. Each has its own deadline (:data:`STAGE_DEADLINES`; ``$BWDOCTOR_SMOKE_STAGE_DEADLINES``
such as ``load=900,compile=900`` overrides them). Progress is redrawn on a terminal, else written as
one line per stage on stderr. A stage past its deadline ends the run after every engine process
printed its Python stacks into the log; ``smoke.result`` then names the stage and the frame it was
stuck in. With ``$BWDOCTOR_SMOKE_LOG`` (or ``options.extra["smoke_log"]``) set to a path, the whole
engine log is copied there.

Facts produced:

* ``smoke.result``: ``{"ok": bool, "stage": "import|build|load|compile|generate|done", "error":
  str|None, "timed_out": bool, "returncode": int|None, "seconds": float, "python": path, "lines":
  [{"line": n, "text": ...}], "stages": [{"stage", "seconds"}], "stuck_stage", "deadline_s",
  "stuck_in": [{"frames": [{"file", "line", "function"}], "waiting": bool, "where": str}]}`` —
  ``lines`` are the log lines that explain a failure; the ``stuck_*`` keys only when a deadline ended it.
* ``smoke.engine``: ``{"version", "device" ("cuda"/"cpu"), "dtype", "quantization", "kv_cache_dtype",
  "attention_backend", "model", "model_source" ("tiny"/"user"), "max_model_len", "enforce_eager",
  "tensor_parallel_size", "requested": {...}, "gpu_name", "compute_capability"}``
* ``smoke.timings``: ``{"import_s", "build_model_s", "load_s", "first_request_s", "ttft_s",
  "generate_s", "decode_tps", "total_s"}``
* ``smoke.memory``: ``{"peak_host_rss_gib", "peak_gpu_used_gib", "peak_gpu_delta_gib", "weights_gib",
  "weights_source", "kv_cache_token_count", "kv_cache_gib", "max_concurrency"}``
* ``smoke.generation``: ``{"prompt", "requested_token_count", "generated_token_count", "text", "finish_reason"}``
* ``smoke.log_tail``: the last lines of the engine's log.
* ``evidence.smoke-engine-log``: the log's last 2000 lines, which the host feeds to the evidence
  parsers: the vLLM log parser turns the engine config, FP8 kernel choice or Marlin fallback, KV
  cache lines and failure signatures into ``vllm.config`` and ``log.*`` facts, judged by the same
  checks as a log given to ``analyze`` (BWD-FP8V-003 proves FP8 from it).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import sys
import tempfile
from typing import TYPE_CHECKING, Any

from bwdoctor import (
    CollectorSpec,
    Fact,
    RunOptions,
    Unavailable,
    hookimpl,
    lazy_module,
)
from bwdoctor.progress import terminal_progress_fd

if TYPE_CHECKING:
    from bwdoctor_checks._lib import stagewatch, torchprobe
    from bwdoctor_checks._lib.stagewatch import StagePlan
else:  # the child runner and the stage watch: imported when the smoke generation runs
    stagewatch = lazy_module("bwdoctor_checks._lib.stagewatch")
    torchprobe = lazy_module("bwdoctor_checks._lib.torchprobe")

SMOKE_TIMEOUT = float(os.environ.get("BWDOCTOR_SMOKE_TIMEOUT") or 600)
SMOKE_MARGIN = 20.0  # the collector's own deadline is this much later than the child's
LOG_TAIL_LINES = 200
DEFAULT_TOKENS = 64
NOT_INSTALLED = ("vLLM is not installed in the inspected environment (install it there, or name the environment "
                 "that has it with --python)")
STAGES = ("start", "import", "build", "load", "compile", "generate", "done")
# seconds each stage may take before the run is called stuck in it ($BWDOCTOR_SMOKE_STAGE_DEADLINES,
# e.g. "load=900,compile=900", or options.extra["stage_deadlines"] override them)
STAGE_DEADLINES = {"import": 240.0, "build": 180.0, "load": 300.0, "compile": 600.0, "generate": 180.0}
# the engine log line that ends the weight load: what follows inside LLM(...) is the profile run,
# torch.compile, CUDA-graph capture, KV-cache allocation and kernel JIT
COMPILE_MARKS = (("Model loading took", "compile"), ("Loading weights took", "compile"))
ABORT_MARK = "Fatal Python error: Aborted"  # faulthandler's header when a stuck run is aborted for its stacks


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
    tail = torchprobe.tail_lines(log, LOG_TAIL_LINES)
    if run.timed_out and ABORT_MARK in log:
        # what the engine logged after bwdoctor aborted it for its stacks is bwdoctor's doing, not a cause
        log = log[:log.index(ABORT_MARK)]
    logged = parse_engine_log(log)
    ok = bool(res.get("ok")) and not run.timed_out
    error = res.get("error")
    stages = list(getattr(run, "stages", None) or [])
    stage = getattr(run, "stuck_stage", None) or latest_stage(res.get("stage", "start"), stages)
    if run.timed_out:
        error = stuck_message(run, stage, options)
    elif res.get("crashed"):
        error = res["crashed"] + (f" (last error: {res['error']})" if res.get("error") and res["error"] != res["crashed"]
                                  else "")
    elif not ok and not error:
        error = (f"the child process ended with exit code {run.returncode} during stage "
                 f"'{stage}' without a result")
    result = {"ok": ok, "stage": stage, "error": error, "timed_out": bool(run.timed_out),
              "returncode": run.returncode, "seconds": round(run.duration_s, 2), "python": python,
              "lines": [] if ok else explain_lines(log)}
    if stages:
        result["stages"] = stages
    if run.timed_out:
        result["stuck_stage"] = stage
        result["deadline_s"] = getattr(run, "stuck_deadline_s", None)
        result["stuck_in"] = list(getattr(run, "stuck_in", None) or [])
    facts = [Fact("smoke.result", result, src), Fact("smoke.log_tail", tail, src)]
    if log.strip():
        # the host runs the log parser over it, so what the engine logged (its config, the FP8 kernels
        # or fallback it chose, the KV cache; on failure the signatures: no kernel image, driver too
        # old, ...) becomes the same facts and findings as for a log given to analyze
        facts.append(Fact("evidence.smoke-engine-log", torchprobe.tail_lines(log, 2000), src))
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


def stage_plan(options: RunOptions) -> StagePlan:
    deadlines = dict(STAGE_DEADLINES)
    deadlines.update(stagewatch.parse_deadlines(os.environ.get("BWDOCTOR_SMOKE_STAGE_DEADLINES")))
    extra = options.extra.get("stage_deadlines")
    if isinstance(extra, dict):
        deadlines.update({str(k): float(v) for k, v in extra.items() if isinstance(v, (int, float)) and v > 0})
    elif isinstance(extra, str):
        deadlines.update(stagewatch.parse_deadlines(extra))
    return stagewatch.StagePlan("smoke", STAGES, deadlines, COMPILE_MARKS)


def keep_log(path: str, options: RunOptions) -> None:
    """Copy the whole engine log to ``options.extra["smoke_log"]`` or ``$BWDOCTOR_SMOKE_LOG`` when asked."""
    dest = options.extra.get("smoke_log") or os.environ.get("BWDOCTOR_SMOKE_LOG")
    if not dest:
        return
    with contextlib.suppress(OSError):
        shutil.copyfile(path, os.path.expanduser(str(dest)))


def latest_stage(child_stage: str, stages: list[dict[str, Any]]) -> str:
    """The later of the child's own stage and the last one the parent saw (the log splits 'load'
    into load and compile); 'done' stays 'done'."""
    seen = [str(s.get("stage")) for s in stages if s.get("stage") in STAGES]
    best = child_stage
    for name in seen:
        if STAGES.index(name) > (STAGES.index(best) if best in STAGES else -1):
            best = name
    return best


def stuck_message(run: Any, stage: str, options: RunOptions) -> str:
    """Why a run was ended: the stage, the deadline it outlived, and where its processes were."""
    total = options.extra.get("smoke_timeout") or SMOKE_TIMEOUT
    if getattr(run, "stuck_scope", None) == "stage" and getattr(run, "stuck_deadline_s", None):
        msg = (f"stage '{stage}' did not finish within its deadline of {run.stuck_deadline_s:g} s "
               f"(the run had taken {run.duration_s:.0f} s)")
    else:
        msg = f"the smoke generation did not finish within {float(total):g} s (stopped during stage '{stage}')"
    frames = list(getattr(run, "stuck_in", None) or [])
    working = [b for b in frames if not b.get("waiting")] or frames
    if working:
        msg += "; stuck in " + stagewatch.describe(working[0]["frames"])
    return msg


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
        with torchprobe.gpu_lock(min(120.0, timeout / 4)) as waited:
            run = torchprobe.run_child(python, "smoke", child_args(options), max(1.0, timeout - waited), workdir,
                            env=child_env(options), progress_fd=progress_fd, stages=stage_plan(options),
                            line_fd=None if progress_fd is not None else 2)
        keep_log(os.path.join(workdir, "child.log"), options)
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


