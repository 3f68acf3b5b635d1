"""Parser for vLLM server / engine logs (and the tracebacks and NCCL/CUDA/driver messages that
appear in them), streamed line by line so that a log of any size is read in bounded memory.

Facts produced (all with ``vllm-log:line N`` provenance):

* ``vllm.config``: the engine config line (``Initializing a V1 LLM engine (v0.32.0) with config:
  model=..., dtype=..., quantization=..., kv_cache_dtype=..., tensor_parallel_size=...,
  pipeline_parallel_size=..., max_seq_len=..., enforce_eager=..., device_config=...``), version-tolerant
  from the 0.2-era ``Initializing an LLM engine with config:`` to 0.33.
* ``vllm``: ``{"version"}`` when the log shows it.
* ``log.attention_backend``: ``{"name", "forced", "candidates", "line"}``.
* ``log.fp8``: list of ``{"kind": "marlin_fallback" | "kv_cache_fp8" | "linear_kernel", "text", "line"}``.
* ``log.fp4``: list of ``{"kind": "marlin_fallback" | "backend", "format" (mxfp4/nvfp4/...), "backend", "text",
  "line", "stated"}``: vLLM's weight-only FP4 fallback warning (or a person's words for it) and the FP4/MoE
  backend the engine picked.
* ``log.kv_cache``: ``{"tokens", "gib", "max_concurrency", "device", "gpu_blocks", ...}``.
* ``log.memory_profile``: what the memory-profiling lines say (total, utilization, KV reserve GiB).
* ``log.cuda_graphs``: ``{"seconds", "gib"}``; ``log.model_load``: ``{"gib", "seconds"}``.
* ``log.errors``: list of ``{"signature", "line", "text", "env_class", "context", ...}``: one entry per
  recognised failure (first 200 kept; ``log.error_counts`` counts them all). ``env_class`` is the
  environment class the message names, or ``null`` for failures that are not environment problems.
* ``log.nccl``: ``{"version", "cuda", "p2p_disabled_or_unsupported", "env" (NCCL_* variables NCCL reports it read),
  "transports" (P2P/IPC, P2P/CUMEM, SHM, NET from NCCL_DEBUG=INFO channel lines), "driver_cuda", "last_info_line",
  "custom_allreduce_line", "ranks"}``; ``nccl.version``.
* ``log.throughput``: ``{"generation_tps_max", "samples", "running_max"}`` from the periodic metrics lines taken
  while requests were running.
* ``log.parallel_hint``: the largest GPU count a command line in the text asks for (--tensor-parallel-size,
  --tp, --n-gpu, ...); ``log.container_hint``: the text mentions running in a container.
* ``log.progress``: ``{"ready_line", "last_line", "errors"}``: whether and where the engine finished starting.
* ``log.mig``: MIG markers seen; ``host.wsl``: true when WSL markers appear; ``host.shm_bytes`` from
  Ray's "/dev/shm has only N bytes available" warning.
* ``gpu.0`` ``{"name", "compute_capability"}`` and ``torch`` ``{"arch_list"}`` derived from PyTorch's
  "sm_XXX is not compatible with the current PyTorch installation" warning; ``driver.cuda_version`` from
  "driver ... too old (found version 12080)".
"""

from __future__ import annotations

import ast
import re
from collections import deque
from collections.abc import Iterator
from typing import Any

from bwdoctor import Evidence, Fact, ParserSpec, hookimpl, lazy_regex
from bwdoctor.kb import signatures as sigtable
from bwdoctor_checks._lib.textutil import (
    cc_from_sm,
    clip,
    cuda_from_driver_int,
    gpu_entry,
    strip_ansi,
    to_float,
    to_int,
)

SRC = "vllm-log"
MAX_ERRORS = 200
WINDOW = 4  # lines joined to find messages wrapped over several lines

# The failure signatures (pattern -> signature -> env class -> root cause -> remedies) are data:
# bwdoctor/kb/signatures.json, compiled once on first use. env_class names the environment class the
# message points at, a placeholder the checks resolve from the other facts ("arch", "memory", "nccl",
# "kernel", "quant", "abi", "wsl", "pydep", ...), or None (the failure is not an environment problem by
# itself). A line is matched against the signatures only when its lower-cased text contains one of the
# table's trigger words (plain substring tests: a big case-insensitive alternation costs ~100 us a line).


# Steady-state serving lines: per-request logs (which quote the user's prompt: text in a prompt is
# not an error of this machine), HTTP access logs and periodic metrics. They are most of a big
# log, carry no failure signature, and are kept out of the signature window.
NOISE_RE = lazy_regex(r"\b(?:Received|Added|Finished|Aborted) request\b|Avg prompt throughput|"
                      r"\"(?:GET|POST|PUT|DELETE|PATCH|HEAD|OPTIONS) /\S* HTTP/\d")


def _triggered(low: str, words: tuple[str, ...]) -> bool:
    for w in words:
        if w in low:
            return True
    return False


LOGLINE_RE = lazy_regex(r"(?:^|\s|\))(?:INFO|WARNING|WARN|ERROR|DEBUG|CRITICAL) \d\d-\d\d \d\d:\d\d:\d\d")
ENGINE_RE = lazy_regex(r"Initializing (?:a V[01] |an )?LLM engine(?: \(v([^)\s]+)\))? with config:\s*(.*)")
API_VERSION_RE = lazy_regex(r"vLLM API server version\s+v?(\d+\.\d+[\w.+-]*)")
BACKEND_AUTO_RE = lazy_regex(r"Using (\w+) attention backend out of potential backends:\s*\[([^\]]*)\]")
BACKEND_FORCED_RE = lazy_regex(r"Using (?:AttentionBackendEnum\.)?([A-Z][A-Z0-9_]+) backend\.")
BACKEND_OLD_RE = lazy_regex(r"Using (Flash Attention|FlashInfer|Triton|FlexAttention|XFormers|Torch SDPA|"
                            r"FlashMLA|Triton MLA|CUTLASS MLA|ROCmFlashAttention|Pallas|IPEX|CPU SDPA)"
                            r"(?: backend)?(?: with HND KV cache layout)?(?: on V1 engine)?")
KV_COMBINED_RE = lazy_regex(r"(GPU|CPU|XPU|TPU)?\s*KV cache size:\s*([\d,]+) tokens(?:,\s*Maximum concurrency for "
                            r"([\d,]+) tokens per request:\s*([\d.,]+)x)?")
KV_CONC_RE = lazy_regex(r"Maximum concurrency for ([\d,]+) tokens per request:\s*([\d.,]+)x")
KV_AVAIL_RE = lazy_regex(r"Available KV cache memory:\s*(-?[\d.]+)\s*GiB")
KV_BLOCKS_RE = lazy_regex(r"#\s*(?:cuda|GPU) blocks:\s*(\d+),\s*#\s*CPU blocks:\s*(\d+)", re.I)
KV_EXPLICIT_RE = lazy_regex(r"Explicitly set \(?([\d.]+)(?:/[\d.]+)?\)? GiB for KV cache")
MEM_TOTAL_RE = lazy_regex(r"total_gpu_memory \(([\d.]+)GiB\) x gpu_memory_utilization \(([\d.]+)\)")
MEM_KV_RE = lazy_regex(r"reserved for KV Cache is (-?[\d.]+)GiB")
MEM_WEIGHTS_RE = lazy_regex(r"model weights take ([\d.]+)GiB")
LOAD_RE = lazy_regex(r"(?:Model loading|Loading model weights) took ([\d.]+) ?(?:GiB|GB)(?: memory)?(?: and "
                     r"([\d.]+) seconds)?")
GRAPH_RE = lazy_regex(r"Graph capturing finished in ([\d.]+) secs?, took ([\d.]+) GiB")
STARTUP_RE = lazy_regex(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) ?s")
MARLIN_FP8_RE = lazy_regex(r"does not have native support for FP8 computation")
FP8_KV_RE = lazy_regex(r"Using fp8 data type to store kv cache")
SELECTED_KERNEL_RE = lazy_regex(r"Selected (\w+) for (\w+)")
NCCL_VERSION_RE = lazy_regex(r"NCCL version (\d+\.\d+\.\d+)(?:\+cuda(\d+\.\d+))?|vLLM is using nccl==(\d+\.\d+\.\d+)"
                             r"|\b(2\.\d{1,2}\.\d{1,2})-\d+\+cuda(\d+\.\d+)\b")
# NCCL_DEBUG=INFO lines: variables NCCL read from the environment, the transport of each channel, the driver
NCCL_ENV_RE = lazy_regex(r"NCCL INFO (NCCL_[A-Z0-9_]+) set by environment to (\S*)")
NCCL_TRANSPORT_RE = lazy_regex(r"NCCL INFO Channel \d+(?:/\d+)? : [^\n]*? via (P2P/[\w]+|SHM(?:/\w+)*|NET/[\w]+|"
                               r"P2P|IPC|CollNet\w*)")
NCCL_RANKS_RE = lazy_regex(r"\bnranks (\d+)|\b(\d+)\[\d+\] -> (\d+)\[\d+\]")
# GPU counts asked for on a command line (vLLM, SGLang, Xinference, Ray flags) and container hints
PARALLEL_FLAG_RE = lazy_regex(r"--(?:tensor[-_]parallel[-_]size|tp(?:[-_]size)?|n[-_]gpus?|num[-_]gpus|"
                              r"pipeline[-_]parallel[-_]size)[ =]+(\d+)")
CONTAINER_HINT_RE = lazy_regex(r"\b(?:docker|podman|kubernetes|k8s|container)\b", re.I)
NCCL_DRIVER_RE = lazy_regex(r"NCCL INFO cudaDriverVersion (\d{4,5})")
NCCL_P2P_LEVEL_RE = lazy_regex(r"NCCL INFO (?:P2P is disabled|Peer access not supported|P2P/IPC is not supported|"
                               r"Check P2P Type isAllDirectP2p 0)", re.I)
# the engine finished starting: a stall after this is not a start-up stall
READY_RE = lazy_regex(r"Application startup complete|Starting vLLM API server|Uvicorn running on|"
                      r"Graph capturing finished|init engine \(profile", re.I)
P2P_OFF_RE = lazy_regex(r"Custom allreduce is disabled because your platform lacks GPU P2P capability|"
                        r"P2P is disabled|NCCL_P2P_DISABLE=1", re.I)
GEN_TPS_RE = lazy_regex(r"Avg generation throughput:\s*([\d.]+) tokens/s,\s*Running:\s*(\d+) req")
NVCC_RELEASE_RE = lazy_regex(r"Cuda compilation tools, release (\d+\.\d+)")
PLATFORM_RE = lazy_regex(r"Automatically detected platform (\w+)")
MAX_LEN_RE = lazy_regex(r"Using max model len (\d+)")
RAY_SHM_RE = lazy_regex(r"/dev/shm has only (\d+) bytes available")
# vLLM's own notice that custom all-reduce is off because the GPUs are linked through PCIe only
PCIE_ONLY_RE = lazy_regex(r"not supported on more than two PCIe-only GPUs|PCIe-only GPUs", re.I)
WSL_PIN_OFF_RE = lazy_regex(r"pin_memory=False'? as WSL is detected", re.I)
WSL_RE = lazy_regex(r"microsoft-standard-WSL|/usr/lib/wsl/lib|\bWSL ?2\b|WSL is detected|VLLM_WSL2|"
                    r"dxgkio|/dev/dxg\b|Docker Desktop", re.I)
FP4_RE = lazy_regex(r"\b(?:nv|mx)?fp4\b|nvfp4|mxfp4|modelopt_fp4|w4a4", re.I)
FP4_FORMAT_RE = lazy_regex(r"\b(nvfp4|mxfp4|modelopt_fp4|w4a4(?:_nvfp4)?|fp4)\b|(NvFp4|Mxfp4|MXFP4|NVFP4)", re.I)
# what the engine did with an FP4 checkpoint: vLLM's weight-only fallback warning (marlin_utils_fp4), a person's
# description of it, and the FP4/MoE backend or kernel it selected
FP4_MARLIN_RE = lazy_regex(r"does not have native support for FP4|(?:fall(?:s|ing|en)?|fell) ?back to (?:the )?"
                           r"(?:weight-only )?(?:FP4 )?Marlin|Weight-only FP4 compression", re.I)
FP4_BACKEND_RE = lazy_regex(r"\bUsing ([A-Za-z][\w -]{0,60}?) (?:backend|kernels?)\b|\bUsing ([A-Za-z][\w.]{1,60}) "
                            r"for [^\n]{0,30}?(?:nv|mx)?fp4|\bSelected (\w+) for (\w*fp4\w*)|"
                            r"(?:NvFp4|NVFP4|MXFP4|Mxfp4)\w* (?:MoE |GEMM |linear )?backend[:=]? '?([\w.]+)", re.I)
FP4_FILE_RE = lazy_regex(r"\[(?:mxfp4|modelopt|marlin_utils_fp4|compressed_tensors_moe|nvfp4\w*|fp4\w*)\.py:\d+\]", re.I)
MIG_RE = lazy_regex(r"\bMIG-[0-9a-f]{8}-[0-9a-f-]{8,}|\bMIG-GPU-|MIG \d+g\.\d+gb|\b\d+g\.\d+gb\b|Multi-Instance GPU|"
                    r"MIG (?:mode|M\.)\s*[:|]?\s*Enabled|\bMIG (?:slice|instance|device|partition)s?\b", re.I)
TORCH_ARCH_LIST_RE = lazy_regex(r"current PyTorch install\s+supports CUDA capabilities\s+((?:sm_\d+\w*[\s,]*)+)", re.I)
TORCH_ARCH_GPU_RE = lazy_regex(r"(?:UserWarning:\s*)?([A-Z][\w .()/-]{2,80}?) with CUDA capability (sm_\d+)\w*\s+is "
                               r"not compatible", re.I)
FRAME_RE = lazy_regex(r'File "([^"]+)", line \d+')
CONFIG_DROP = {"tokenizer", "speculative_config", "compilation_config", "observability_config", "kernel_config",
               "structured_outputs_config", "aux_output_config", "pooler_config", "decoding_config",
               "quantization_config"}

# Driver / health XIDs that point at the GPU (or its link), not the application (facts.md 5c).
HEALTH_XIDS = {48, 63, 64, 74, 79, 92, 94, 95, 119, 120, 121, 136, 137, 140, 143, 144, 145, 146, 147, 148, 149,
               150, 154, 155}


def _frame_pkg(path: str) -> str:
    m = re.search(r"(?:site|dist)-packages/([A-Za-z0-9_]+)", path)
    if m:
        return m.group(1)
    parts = [p for p in re.split(r"[\\/]", path) if p]
    for name in ("vllm", "torch", "flashinfer", "triton", "xformers", "sglang", "flash_attn", "transformers"):
        if name in parts:
            return name
    return parts[-1] if parts else path


def split_config(text: str) -> dict[str, str]:
    """Split ``a=1, b='x, y', c={...}`` at top-level commas (quotes and brackets respected)."""
    out: dict[str, str] = {}
    depth = 0
    quote = ""
    start = 0
    items = []
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{<":
            depth += 1
        elif ch in ")]}>" and depth > 0:
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    for item in items:
        if "=" not in item:
            continue
        key, _, value = item.partition("=")
        key = key.strip()
        if re.fullmatch(r"[a-z_][a-z0-9_]*", key):
            out[key] = value.strip()
    return out


def _config_value(value: str) -> Any:
    v = value.strip().strip("'\"")
    if v in ("None", ""):
        return None
    if v in ("True", "False"):
        return v == "True"
    if re.fullmatch(r"-?\d+", v):
        return int(v)
    if re.fullmatch(r"-?\d+\.\d*", v):
        return float(v)
    return v


def engine_config(version: str | None, rest: str) -> dict[str, Any]:
    raw = split_config(rest)
    cfg: dict[str, Any] = {}
    for key, value in raw.items():
        if key in CONFIG_DROP:
            continue
        cfg[key] = _config_value(value)
    if "max_seq_len" in cfg:
        cfg["max_model_len"] = cfg.pop("max_seq_len")
    if isinstance(cfg.get("dtype"), str):
        cfg["dtype"] = cfg["dtype"].replace("torch.", "")
    dev = cfg.pop("device_config", None)
    if dev is not None:
        cfg["device"] = str(dev).replace("device(type='", "").replace("')", "")
    quant_cfg = raw.get("quantization_config")
    if quant_cfg and quant_cfg.strip() not in ("None", "{}"):
        cfg["quantization_config"] = clip(quant_cfg, 300)
    if version:
        cfg["version"] = version.lstrip("v")
    # Keep only plain JSON scalars (the config repr holds nested objects we do not need).
    return {k: v for k, v in cfg.items() if isinstance(v, (str, int, float, bool)) or v is None}


def _undefined_symbol_owner(symbol: str) -> str:
    """Who defines an undefined C++ symbol: ``torch`` (c10/at/torch/caffe2 namespaces, so the
    extension was built against another torch), ``cuda`` (cudart/cublas versioned symbols), or
    ``own`` (a function of the extension itself, i.e. a build problem of that package)."""
    s = symbol.strip("'\"`,;")
    if re.match(r"_ZN(?:K|VK)?(?:3c10|2at|5torch|6caffe2)", s) or re.match(r"_ZN\d*(?:3c10|2at|5torch)", s):
        return "torch"
    if re.search(r"@libcudart|@libcublas|@libnccl|cuda\w*_v?\d+$|^cu[A-Z]\w+$|^nccl[A-Z]\w+$", s):
        return "cuda"
    m = re.match(r"_Z(\d+)(\w+)", s)
    if m:
        return "own"
    if s.startswith("_ZN"):
        return "own"
    return "unknown"


class _LogScan:
    """Streaming state of one log scan. Memory is bounded by the caps below, whatever the size."""

    def __init__(self, name: str = "log") -> None:
        self.name = name
        self.facts: dict[str, tuple[Any, int]] = {}
        self.errors: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        self.window: deque[str] = deque(maxlen=WINDOW)
        self.frames: deque[str] = deque(maxlen=6)
        self.fp8: list[dict[str, Any]] = []
        self.fp4: list[dict[str, Any]] = []
        self.ready = 0
        self.tps: dict[str, Any] = {}
        self.kv: dict[str, Any] = {}
        self.mem: dict[str, Any] = {}
        self.nccl: dict[str, Any] = {}
        self.mig: list[str] = []
        self.lines = 0
        self.vllm_lines = 0
        self.triggers = sigtable.trigger_words()
        self.rows = sigtable.signatures()

    def put(self, key: str, value: Any, line: int) -> None:
        self.facts[key] = (value, line)

    def error(self, name: str, env_class: str | None, line: int, text: str, **extra: Any) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1
        if self.counts[name] > 20 or len(self.errors) >= MAX_ERRORS:
            return
        entry = {"signature": name, "line": line, "text": clip(text, 500), "env_class": env_class,
                 "context": [_frame_pkg(f) for f in self.frames]}
        entry.update({k: v for k, v in extra.items() if v is not None})
        self.errors.append(entry)

    # ---------------------------------------------------------------- per line
    def feed(self, raw: str, n: int) -> None:
        line = strip_ansi(raw) if "\x1b" in raw else raw
        self.lines = n
        if LOGLINE_RE.search(line):
            self.vllm_lines += 1
        fm = FRAME_RE.search(line)
        if fm:
            self.frames.append(fm.group(1))
        low = line.lower()
        self._facts_line(line, n, low)
        if NOISE_RE.search(line):
            self.window.append("")
            return
        if _triggered(low, self.triggers):
            self._signatures(line, n, low)
        self.window.append(line.strip())

    def _signatures(self, line: str, n: int, low: str) -> None:
        """Try, in table order, each signature one of whose trigger words the text it is matched
        against (this line and the window before it) contains; only those rows are compiled."""
        prev = " ".join(self.window)
        joined = (prev + " " + line.strip()) if prev else line.strip()
        offset = len(joined) - len(line.strip())
        joined_low = joined.lower()
        seen_here: set[str] = set()
        for sig in self.rows:
            if not _triggered(low if sig.id == "python_exception" else joined_low, sig.triggers):
                continue
            rx = sigtable.pattern_of(sig)
            name = sig.id
            text = line if name == "python_exception" else joined
            m = rx.search(text)
            if not m:
                continue
            if name != "python_exception":
                # the match must end in the current line; one found wholly earlier was already seen
                if m.end() <= offset:
                    continue
            if name in seen_here:
                continue
            seen_here.add(name)
            self._on_signature(sig, m, line, n)

    def _on_signature(self, sig: sigtable.Signature, m: re.Match[str], line: str, n: int) -> None:
        name, env_class = sig.id, sig.env_class
        caps = sigtable.captures(sig, m)

        def c(i: int) -> str | None:
            return caps[i] if i < len(caps) else None

        extra: dict[str, Any] = {}
        if name == "torch_arch_unsupported":
            sm = c(0) or ""
            cc = cc_from_sm(sm)
            extra["sm"] = sm
            extra["compute_capability"] = cc
            joined = " ".join(self.window) + " " + line
            g = TORCH_ARCH_GPU_RE.search(joined)
            name_txt = g.group(1).strip() if g else None
            if name_txt and name_txt.lower().startswith("userwarning"):
                name_txt = None
            self.put("gpu.0", gpu_entry(name_txt, "torch-warning", compute_capability=cc), n)
            extra["gpu_name"] = name_txt
        elif name == "torch_driver_too_old":
            cuda = cuda_from_driver_int(c(0) or "")
            extra["driver_cuda"] = cuda
            if cuda:
                self.put("driver.cuda_version", cuda, n)
        elif name == "container_cuda_requirement":
            extra["required_cuda"] = c(0)
        elif name == "cuda_library_missing":
            extra["cuda_major"] = to_int(c(0))
            extra["library"] = m.group(0).split(":")[0]
        elif name == "undefined_symbol":
            sym = c(0) or ""
            extra["symbol"] = sym or None
            extra["owner"] = _undefined_symbol_owner(sym) if sym else "unknown"
            lib = re.search(r"([\w.-]+\.so)\b[^\n]*undefined symbol", line)
            extra["library"] = lib.group(1) if lib else None
        elif name in ("ptxas_unknown_arch", "llvm_unknown_processor"):
            extra["target"] = c(0)
            extra["triton"] = bool(re.search(r"triton", " ".join(self.window) + line, re.I))
        elif name == "ptx_version_target":
            extra["ptx_version"] = c(0)
            extra["target"] = c(1)
        elif name == "quant_min_capability":
            extra["method"] = (c(0) or "").strip("'\".,")
            extra["min_capability"] = to_int(c(1))
            extra["current_capability"] = to_int(c(2))
        elif name == "no_compiled_kernel":
            extra["kernel"] = c(0)
            extra["capability"] = to_int(c(1))
            extra["less_than"] = bool(re.search(r"less than", m.group(0), re.I))
        elif name == "xid":
            xid = to_int(c(0))
            extra["xid"] = xid
            env_class = "gpu_health" if xid in HEALTH_XIDS else None
        elif name == "cuda_oom":
            other = re.findall(r"Process (\d+) has ([\d.]+ [GM]iB) memory in use", line)
            if other:
                extra["other_processes"] = [{"pid": p, "memory": s} for p, s in other[:8]]
        elif name in ("module_missing", "import_name_missing", "module_attribute_missing"):
            module = c(0) if name != "import_name_missing" else c(1)
            extra["module"] = module
            extra["package"] = (module or "").split(".")[0] or None
            if name != "module_missing":
                extra["attribute"] = c(1) if name == "module_attribute_missing" else c(0)
        elif name == "pip_conflict":
            extra["package"] = c(1)
            extra["required_by"] = c(0)
            extra["requirement"] = f"{c(1)}{c(2) or ''}" if c(2) else None
            extra["installed"] = c(4)
        elif name == "package_install_hint":
            extra["package"] = c(0)
            extra["module"] = c(0)
        elif name == "package_version_required":
            extra["package"] = c(0)
            extra["requirement"] = f"{c(0)}{c(1)}{c(2)}"
        self.error(name, env_class, n, line, **extra)

    def _facts_line(self, line: str, n: int, low: str) -> None:
        if "LLM engine" in line:
            m = ENGINE_RE.search(line)
            if m:
                cfg = engine_config(m.group(1), m.group(2))
                self.put("vllm.config", cfg, n)
                if m.group(1):
                    self.put("vllm", {"version": m.group(1).lstrip("v")}, n)
                return
        if "non-default args" in line:
            args = non_default_args(line)
            if args is not None:
                self.put("log.non_default_args", {str(k): v for k, v in args.items()
                                                  if isinstance(v, (str, int, float, bool)) or v is None}, n)
        if "API server version" in line:
            m = API_VERSION_RE.search(line)
            if m:
                self.put("vllm", {"version": m.group(1)}, n)
        if "backend" in line:
            m = BACKEND_AUTO_RE.search(line)
            if m:
                cands = [c.strip().strip("'\"") for c in m.group(2).split(",") if c.strip()]
                self.put("log.attention_backend", {"name": m.group(1), "forced": False, "candidates": cands,
                                                   "line": n}, n)
            else:
                m2 = BACKEND_FORCED_RE.search(line)
                if m2 and "Using " in line and "attention" not in line.lower().split("using", 1)[0]:
                    self.put("log.attention_backend", {"name": m2.group(1), "forced": True, "line": n}, n)
                else:
                    m3 = BACKEND_OLD_RE.search(line)
                    if m3:
                        name = {"Flash Attention": "FLASH_ATTN", "FlashInfer": "FLASHINFER", "Triton": "TRITON_ATTN",
                                "FlexAttention": "FLEX_ATTENTION", "XFormers": "XFORMERS",
                                "Torch SDPA": "TORCH_SDPA"}.get(m3.group(1), m3.group(1).upper().replace(" ", "_"))
                        self.put("log.attention_backend", {"name": name, "forced": False, "line": n}, n)
        if "KV cache" in line or "blocks:" in line or "concurrency" in line:
            m = KV_COMBINED_RE.search(line)
            if m:
                self.kv.update({"tokens": to_int(m.group(2)), "device": (m.group(1) or "GPU"), "line": n})
                if m.group(3):
                    self.kv["max_concurrency"] = to_float(m.group(4))
                    self.kv["request_tokens"] = to_int(m.group(3))
            m = KV_CONC_RE.search(line)
            if m:
                self.kv["max_concurrency"] = to_float(m.group(2))
                self.kv["request_tokens"] = to_int(m.group(1))
            m = KV_AVAIL_RE.search(line)
            if m:
                self.kv["gib"] = to_float(m.group(1))
            m = KV_BLOCKS_RE.search(line)
            if m:
                self.kv["gpu_blocks"] = int(m.group(1))
                self.kv["cpu_blocks"] = int(m.group(2))
                self.kv.setdefault("line", n)
            m = KV_EXPLICIT_RE.search(line)
            if m:
                self.kv["gib"] = to_float(m.group(1))
        if "gpu_memory_utilization" in line or "reserved for KV Cache" in line:
            m = MEM_TOTAL_RE.search(line)
            if m:
                self.mem["total_gib"] = to_float(m.group(1))
                self.mem["gpu_memory_utilization"] = to_float(m.group(2))
            m = MEM_KV_RE.search(line)
            if m:
                self.mem["kv_cache_gib"] = to_float(m.group(1))
                self.kv.setdefault("gib", to_float(m.group(1)))
            m = MEM_WEIGHTS_RE.search(line)
            if m:
                self.mem["weights_gib"] = to_float(m.group(1))
        if "took" in line:
            m = LOAD_RE.search(line)
            if m:
                self.put("log.model_load", {"gib": to_float(m.group(1)), "seconds": to_float(m.group(2))}, n)
            m = GRAPH_RE.search(line)
            if m:
                self.put("log.cuda_graphs", {"seconds": to_float(m.group(1)), "gib": to_float(m.group(2))}, n)
            m = STARTUP_RE.search(line)
            if m:
                self.put("log.startup", {"seconds": to_float(m.group(1))}, n)
        if "FP8" in line or "fp8" in line or "Fp8" in line:
            if MARLIN_FP8_RE.search(line):
                self.fp8.append({"kind": "marlin_fallback", "text": clip(line, 300), "line": n})
            elif FP8_KV_RE.search(line):
                self.fp8.append({"kind": "kv_cache_fp8", "text": clip(line, 300), "line": n})
            else:
                m = SELECTED_KERNEL_RE.search(line)
                if m and "Fp8" in m.group(2):
                    self.fp8.append({"kind": "linear_kernel", "kernel": m.group(1), "method": m.group(2), "line": n})
            del self.fp8[50:]
        if "ccl" in line or "+cuda" in line:
            m = NCCL_VERSION_RE.search(line)
            if m:
                ver = m.group(1) or m.group(3) or m.group(4)
                cuda = m.group(2) or m.group(5)
                self.nccl["version"] = ver
                if cuda:
                    self.nccl["cuda"] = cuda
                self.put("nccl.version", ver, n)
        if "P2P" in line or "p2p" in line:
            if P2P_OFF_RE.search(line) or NCCL_P2P_LEVEL_RE.search(line):
                self.nccl["p2p_disabled_or_unsupported"] = True
        if "NCCL INFO" in line:
            self.nccl["last_info_line"] = n
            m = NCCL_ENV_RE.search(line)
            if m and len(self.nccl.setdefault("env", {})) < 40:
                self.nccl["env"][m.group(1)] = m.group(2)
            m = NCCL_TRANSPORT_RE.search(line)
            if m:
                kinds = self.nccl.setdefault("transports", [])
                t = m.group(1).split("/")[0] if not m.group(1).startswith("P2P") else m.group(1)
                if t not in kinds and len(kinds) < 10:
                    kinds.append(t)
            m = NCCL_RANKS_RE.search(line)
            if m:
                ranks = int(m.group(1)) if m.group(1) else max(int(m.group(2)), int(m.group(3))) + 1
                self.nccl["ranks"] = max(int(self.nccl.get("ranks") or 0), ranks)
            m = NCCL_DRIVER_RE.search(line)
            if m:
                self.nccl["driver_cuda"] = cuda_from_driver_int(m.group(1))
        if "custom all" in low or "custom_all" in low or "customallreduce" in low:
            self.nccl["custom_allreduce_line"] = n
        if not self.ready and READY_RE.search(line):
            self.ready = n
        if "--" in line and ("parallel" in low or "gpu" in low or "--tp" in low):
            for m in PARALLEL_FLAG_RE.finditer(line):
                prev = self.facts.get("log.parallel_hint", (0, n))[0]
                if int(m.group(1)) > prev:
                    self.put("log.parallel_hint", int(m.group(1)), n)
        if "log.container_hint" not in self.facts and ("docker" in low or "podman" in low or "container" in low
                                                       or "kubernetes" in low) and CONTAINER_HINT_RE.search(line):
            self.put("log.container_hint", True, n)
        if "PCIe-only" in line and PCIE_ONLY_RE.search(line) and "host.gpu_topology" not in self.facts:
            self.put("host.gpu_topology", {"nvlink": False, "source": "vLLM custom all-reduce notice"}, n)
        if "generation throughput" in line:
            m = GEN_TPS_RE.search(line)
            if m and int(m.group(2)) > 0:
                tps = to_float(m.group(1)) or 0.0
                t = self.tps
                t["samples"] = t.get("samples", 0) + 1
                t["generation_tps_max"] = max(t.get("generation_tps_max", 0.0), tps)
                t["running_max"] = max(t.get("running_max", 0), int(m.group(2)))
                t.setdefault("line", n)
        if "compilation tools" in line:
            m = NVCC_RELEASE_RE.search(line)
            if m:
                self.put("toolkit.nvcc", {"version": m.group(1), "source": "nvcc --version output"}, n)
        if "platform" in line:
            m = PLATFORM_RE.search(line)
            if m:
                self.put("log.platform", m.group(1), n)
        if "max model len" in line:
            m = MAX_LEN_RE.search(line)
            if m:
                self.put("log.max_model_len", int(m.group(1)), n)
        if "/dev/shm" in line:
            m = RAY_SHM_RE.search(line)
            if m:
                self.put("host.shm_bytes", int(m.group(1)), n)
                self.error("shm_small_warning", "shm_too_small", n, line, shm_bytes=int(m.group(1)))
        if "fp4" in low or "w4a4" in low or "marlin" in low:
            self._fp4_line(line, n, low)
        if ("wsl" in low or "dxg" in low or "docker desktop" in low) and WSL_RE.search(line):
            self.put("host.wsl", True, n)
            if WSL_PIN_OFF_RE.search(line):
                self.put("log.wsl_pin_memory_off", True, n)
        if len(self.mig) < 10 and ("mig" in low or "multi-instance" in low or "gb" in low) and \
                ("mig" in low or "multi-instance" in low or re.search(r"\dg\.\d", low)):
            m = MIG_RE.search(line)
            if m:
                self.mig.append(clip(m.group(0), 80))
                self.facts.setdefault("_mig_line", (n, n))
        if "supports CUDA capabilities" in line or "PyTorch install" in line:
            joined = " ".join(self.window) + " " + line
            m = TORCH_ARCH_LIST_RE.search(joined)
            if m:
                archs = re.findall(r"sm_\d+\w*", m.group(1))
                if archs:
                    self.put("torch", {"arch_list": archs}, n)

    def _fp4_line(self, line: str, n: int, low: str) -> None:
        joined = " ".join(self.window) + " " + line
        fmt = FP4_FORMAT_RE.search(line) or FP4_FORMAT_RE.search(joined)
        if FP4_RE.search(line):
            self.facts.setdefault("log.fp4_mentioned", (True, n))
        if len(self.fp4) >= 20:
            return
        fmt_name = (fmt.group(1) or fmt.group(2)).lower() if fmt else None
        if FP4_MARLIN_RE.search(line) and (fmt or "fp4" in joined.lower()):
            if not any(e["kind"] == "marlin_fallback" and e["line"] >= n - WINDOW for e in self.fp4):
                self.fp4.append({"kind": "marlin_fallback", "format": fmt_name, "text": clip(line, 300), "line": n,
                                 "stated": "does not have native support" not in line and "compression" not in line})
            return
        m = FP4_BACKEND_RE.search(line)
        if m and (FP4_FILE_RE.search(line) or FP4_FORMAT_RE.search(line)):
            backend = next(g for g in (m.group(1), m.group(2), m.group(3), m.group(5)) if g)
            self.fp4.append({"kind": "backend", "backend": backend.strip().strip("'\""), "format": fmt_name, "line": n,
                             "text": clip(line, 300)})

    # ---------------------------------------------------------------- results
    def results(self) -> Iterator[Fact]:
        for key, (value, n) in self.facts.items():
            if key.startswith("_"):
                continue
            yield Fact(key, value, f"{SRC}:line {n}")
        if self.kv:
            line = self.kv.pop("line", 0)
            yield Fact("log.kv_cache", self.kv, f"{SRC}:line {line}")
        if self.mem:
            yield Fact("log.memory_profile", self.mem, SRC)
        if self.fp8:
            yield Fact("log.fp8", self.fp8, f"{SRC}:line {self.fp8[0]['line']}")
        if self.fp4:
            yield Fact("log.fp4", self.fp4, f"{SRC}:line {self.fp4[0]['line']}")
        if self.nccl:
            yield Fact("log.nccl", self.nccl, SRC)
        if self.tps:
            line = self.tps.pop("line", 0)
            yield Fact("log.throughput", self.tps, f"{SRC}:line {line}")
        if self.lines:
            # where the log stops: a multi-GPU start-up that ends in NCCL set-up with no error is a stall
            yield Fact("log.progress", {"ready_line": self.ready or None, "last_line": self.lines,
                                        "errors": len(self.errors)}, SRC)
        if self.mig:
            first_line = self.facts.get("_mig_line", (0, 0))[0]
            yield Fact("log.mig", sorted(set(self.mig)), f"{SRC}:line {first_line}")
        if self.errors:
            # list facts replace each other across evidence files, so the per-file dict (which merges)
            # carries every file's errors; log.errors holds this file's
            yield Fact("log.errors", self.errors, f"{SRC}:line {self.errors[0]['line']}")
        yield Fact("log.errors_by_file", {self.name: self.errors}, SRC)
        yield Fact("log.error_counts", dict(self.counts), SRC)
        yield Fact("log.lines", self.lines, SRC)


_CONFIG_NAMES = lazy_regex(r"^(?:Dockerfile|Containerfile)(?:\..*)?$|\.(?:ya?ml|env|toml|json|dockerfile)$|^\.env",
                           re.I)
_DETECT_RE = lazy_regex(r"Traceback \(most recent call last\)|LLM engine|vllm|NCCL|CUDA error|RuntimeError|"
                        r"ImportError|ValueError|nvidia-container|/dev/shm|ptxas|Xid|out of memory|driver|Marlin|"
                        r"[nm]xfp4|\bfp[48]\b|ModuleNotFoundError", re.I)


def detect(ev: Evidence) -> bool:
    try:
        if _CONFIG_NAMES.search(ev.name or ""):
            return False
        head = ev.head or ""
        if LOGLINE_RE.search(head) or _DETECT_RE.search(head):
            return True
        low = head.lower()
        return any(sigtable.pattern_of(sig).search(head) for sig in sigtable.signatures()
                   if sig.id != "python_exception" and _triggered(low, sig.triggers))
    except Exception:
        return False


def scan_lines(lines: Any, name: str = "log") -> list[Fact]:
    """Scan an iterable of lines (the parser's core, also used by tests)."""
    scan = _LogScan(name)
    n = 0
    for n, raw in enumerate(lines, 1):
        try:
            scan.feed(raw if isinstance(raw, str) else str(raw), n)
        except Exception:  # one unreadable line must not lose the rest of the log
            continue
    return list(scan.results())


def parse(ev: Evidence) -> list[Fact]:
    try:
        return scan_lines(ev.lines(), ev.path or ev.name)
    except OSError:
        return scan_lines(ev.head.splitlines(), ev.path or ev.name)


def parse_text(text: str) -> list[Fact]:
    return scan_lines(text.splitlines())


def non_default_args(line: str) -> dict[str, Any] | None:
    """The dict printed by vLLM's ``non-default args: {...}`` line, parsed safely."""
    m = re.search(r"non-default args:\s*(\{.*\})\s*$", line)
    if not m:
        return None
    try:
        value = ast.literal_eval(m.group(1))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


@hookimpl
def bwdoctor_parsers() -> list[ParserSpec]:
    return [ParserSpec(
        name="vllm-log", func=parse, detect=detect, timeout=900.0,
        provides=["log.errors", "log.errors_by_file", "log.*"],
        doc="vLLM server/engine logs and pasted tracebacks: engine config, attention backend, FP8 and KV-cache "
            "lines, CUDA graphs, and every recognised failure signature (driver, arch, toolchain, NCCL, memory, "
            "container, WSL, MIG, GPU health). Streams the file line by line (bounded memory).",
    )]
