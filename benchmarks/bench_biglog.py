"""`bwdoctor analyze` on a 1 GiB vLLM log: wall time and peak memory against the floor.

    python benchmarks/bench_biglog.py [--size-mib 1024] [--path LOG] [--keep] [--huge-line-mib 0]

Without ``--path`` it writes a vLLM-style serving log of ``--size-mib`` MiB to a temporary folder
(startup lines with the engine config and the KV cache size, then request/metrics lines repeated,
a CUDA "no kernel image" error with its traceback in the middle and a CUDA out-of-memory error
near the end; ``--huge-line-mib N`` adds one line of N MiB without a newline in the middle). It
then runs, each in its own child process and measured the same way (wall time, peak RSS from
``wait4``):

* the floor: plain Python reading the file line by line and doing nothing with the lines;
* the host's own streaming: iterating ``Evidence.lines()``, what every parser is given;
* ``bwdoctor analyze LOG --format json`` (report written to a file), checking that the two error
  lines were found (``log.errors``); with ``--disable PLUGIN`` also without that plugin, to tell
  the host's cost from one parser's.

The generated log is deleted afterwards unless ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

STARTUP = """\
INFO 05-11 08:00:01 [__init__.py:239] Automatically detected platform cuda.
INFO 05-11 08:00:03 [api_server.py:1043] vLLM API server version 0.9.1
INFO 05-11 08:00:03 [cli_args.py:325] non-default args: {'model': 'Qwen/Qwen2.5-7B-Instruct', 'max_model_len': 16384, 'gpu_memory_utilization': 0.9}
INFO 05-11 08:00:12 [config.py:823] This model supports multiple tasks: {'generate', 'embed'}. Defaulting to 'generate'.
INFO 05-11 08:00:14 [core.py:455] Waiting for init message from front-end.
INFO 05-11 08:00:14 [core.py:70] Initializing a V1 LLM engine (v0.9.1) with config: model='Qwen/Qwen2.5-7B-Instruct', speculative_config=None, tokenizer='Qwen/Qwen2.5-7B-Instruct', skip_tokenizer_init=False, tokenizer_mode=auto, revision=None, trust_remote_code=False, dtype=torch.bfloat16, max_seq_len=16384, download_dir=None, load_format=LoadFormat.AUTO, tensor_parallel_size=1, pipeline_parallel_size=1, disable_custom_all_reduce=False, quantization=None, enforce_eager=False, kv_cache_dtype=auto, device_config=cuda, seed=0, served_model_name=Qwen/Qwen2.5-7B-Instruct
INFO 05-11 08:00:16 [cuda.py:217] Using Flash Attention backend on V1 engine.
INFO 05-11 08:00:21 [gpu_model_runner.py:1595] Model loading took 14.2471 GiB and 4.61 seconds
INFO 05-11 08:00:31 [kv_cache_utils.py:716] GPU KV cache size: 1,113,456 tokens
INFO 05-11 08:00:31 [kv_cache_utils.py:720] Maximum concurrency for 16,384 tokens per request: 67.96x
INFO 05-11 08:00:45 [gpu_model_runner.py:2048] Graph capturing finished in 14 secs, took 0.52 GiB
INFO 05-11 08:00:46 [api_server.py:1336] Starting vLLM API server 0 on http://0.0.0.0:8000
"""

STEADY = """\
INFO 05-11 09:{m:02d}:{s:02d} [logger.py:43] Received request chatcmpl-{i:08x}: prompt: '<|im_start|>user\\nSummarise the attached report in three bullet points.<|im_end|>\\n<|im_start|>assistant\\n', params: SamplingParams(n=1, temperature=0.7, top_p=0.8, max_tokens=512), prompt_token_ids: None, lora_request: None.
INFO 05-11 09:{m:02d}:{s:02d} [async_llm.py:261] Added request chatcmpl-{i:08x}.
INFO:     10.0.3.{ip}:51{ip:03d} - "POST /v1/chat/completions HTTP/1.1" 200 OK
INFO 05-11 09:{m:02d}:{s:02d} [loggers.py:116] Engine 000: Avg prompt throughput: 1843.2 tokens/s, Avg generation throughput: 912.6 tokens/s, Running: 37 reqs, Waiting: 0 reqs, GPU KV cache usage: 41.3%, Prefix cache hit rate: 62.0%
"""

ERROR_ARCH = """\
ERROR 05-11 10:00:00 [core.py:515] EngineCore failed to start.
Traceback (most recent call last):
  File "/usr/local/lib/python3.12/dist-packages/vllm/v1/engine/core.py", line 506, in run_engine_core
    engine_core = EngineCoreProc(*args, **kwargs)
RuntimeError: CUDA error: no kernel image is available for execution on the device
"""

ERROR_OOM = """\
ERROR 05-11 11:00:00 [core.py:515] EngineCore encountered a fatal error.
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which 1.06 GiB is free. Process 2211 has 78.12 GiB memory in use.
"""


def generate(path: str, size: int, huge_line: int) -> None:
    block = "".join(STEADY.format(m=i // 60 % 60, s=i % 60, i=i * 7919, ip=i % 250) for i in range(2000)).encode()
    with open(path, "wb") as fh:
        fh.write(STARTUP.encode())
        written = len(STARTUP)
        marks = {size // 2: ERROR_ARCH.encode(), size - 4 * len(block): ERROR_OOM.encode()}
        if huge_line:
            marks[size // 3] = b"DEBUG " + b"x" * huge_line + b"\n"
        while written < size:
            for at in sorted(marks):
                if written >= at:
                    fh.write(marks.pop(at))
            fh.write(block)
            written = fh.tell()


def measure(argv: list[str]) -> tuple[float, float, int]:
    """(wall s, peak RSS MiB, exit code) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if "Traceback" in err:
        print(err, file=sys.stderr)
    return wall, usage.ru_maxrss / 1024.0, proc.returncode


HOST_LINES = ("import sys\n"
              "from pathlib import Path\n"
              "from bwdoctor.runner import load_evidence\n"
              "print(sum(1 for _ in load_evidence(Path(sys.argv[1])).lines()))\n")

FLOOR = ("import sys\n"
         "n = 0\n"
         "with open(sys.argv[1], 'rb') as fh:\n"
         "    for line in fh:\n"
         "        n += 1\n"
         "print(n)\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--path", help="an existing log to analyze (else one is generated)")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--huge-line-mib", type=int, default=0, help="add one line of this many MiB without a newline")
    ap.add_argument("--keep", action="store_true", help="keep the generated log")
    ap.add_argument("--disable", action="append", default=[], metavar="PLUGIN",
                    help="also time bwdoctor analyze with these plugins disabled (e.g. checks.parse_log)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bwdoctor-biglog-")
    path = args.path or os.path.join(tmp, "vllm-serve.log")
    try:
        if not args.path:
            start = time.perf_counter()
            generate(path, args.size_mib * 1024 * 1024, args.huge_line_mib * 1024 * 1024)
            print(f"generated {path}: {os.path.getsize(path) / 2**20:.0f} MiB in {time.perf_counter() - start:.1f} s")
        size = os.path.getsize(path) / 2**20
        report = os.path.join(tmp, "report.json")
        floor = measure([sys.executable, "-c", FLOOR, path])
        host = measure([sys.executable, "-c", HOST_LINES, path])
        rows = [("plain Python line-by-line read", floor), ("Evidence.lines() (what parsers get)", host)]
        if args.disable:
            off = [a for name in args.disable for a in ("--disable", name)]
            rows.append((f"analyze, {'+'.join(args.disable)} off",
                         measure([sys.executable, "-m", "bwdoctor.cli", *off, "analyze", path, "--format", "json",
                                  "-o", report + ".off", "--fail-on", "never"])))
        tool = measure([sys.executable, "-m", "bwdoctor.cli", "analyze", path, "--format", "json", "-o", report,
                        "--fail-on", "never"])
        rows.append(("bwdoctor analyze --format json", tool))
        found = "?"
        try:
            with open(report, encoding="utf-8") as fh:
                facts = {f["key"]: f["value"] for f in json.load(fh)["snapshot"]["facts"]}
            with open(report, encoding="utf-8") as fh:
                failed = [f["message"] for f in json.load(fh)["findings"] if f["id"] == "BWD-CORE-004"]
            if failed:
                print("parser failures: " + " | ".join(failed))
            errors = facts.get("log.errors") or []
            found = ", ".join(sorted({str(e.get("signature")) for e in errors if isinstance(e, dict)})) or "none"
        except (OSError, ValueError, KeyError) as exc:
            found = f"report unreadable: {exc}"
        print(f"log: {size:.0f} MiB")
        print(f"{'':40s} {'wall s':>8s} {'peak RSS MiB':>13s} {'MiB/s':>8s} exit")
        for name, (wall, rss, code) in rows:
            print(f"{name:40s} {wall:8.2f} {rss:13.1f} {size / wall:8.1f} {code}")
        print(f"bwdoctor / floor: {tool[0] / floor[0]:.2f}x wall, {tool[1] - floor[1]:+.1f} MiB RSS")
        print(f"error signatures found: {found}")
        return 0 if tool[2] in (0, 1) else 1
    finally:
        if not args.keep:
            for name in os.listdir(tmp):
                os.unlink(os.path.join(tmp, name))
            os.rmdir(tmp)


if __name__ == "__main__":
    sys.exit(main())
