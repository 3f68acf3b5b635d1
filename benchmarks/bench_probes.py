"""Compare bwdoctor's GPU probe figures with the best plain-torch measurement of the same quantity.

    python benchmarks/bench_probes.py [--gpu 0] [--json OUT.json]

For GPU 0 (or --gpu) it runs bwdoctor's probe child (the code `bwdoctor run --level full` runs) and
then, in this process, measures the same quantities with plain torch several ways and keeps the
best: a device-to-device copy (bytes read + written) at several sizes through copy_, an elementwise
kernel and a CUDA graph of copies; an 8192³ bf16 matmul and an 8192³ fp8 torch._scaled_mm timed by
triton.testing.do_bench (when Triton is there), by CUDA events and by CUDA-graph replay; pinned
host<->device copies. It prints both figures, their difference (target: within 5%), and each as a
percentage of the knowledge base's datasheet figure for the GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def bwdoctor_figures(gpu: int) -> dict[str, Any]:
    from bwdoctor_checks._lib.torchprobe import run_child

    env = dict(os.environ, CUDA_DEVICE_ORDER="PCI_BUS_ID")
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        run = run_child(sys.executable, "probes", {"gpus": [gpu]}, 600, d, env=env)
        wall = time.perf_counter() - t
    if not run.result.get("gpus"):
        raise SystemExit(f"bwdoctor probe gave no figures: {run.result}\n{run.log[-3000:]}")
    g = run.result["gpus"][0]
    g["wall_s"] = round(wall, 2)
    return g


def _events(torch: Any, fn: Callable[[], Any], reps: int, trials: int) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(trials):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(reps):
            fn()
        e.record()
        e.synchronize()
        best = min(best, s.elapsed_time(e) / 1000 / reps)
    return best


def _graph(torch: Any, fn: Callable[[], Any], reps: int, trials: int) -> float:
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(reps):
            fn()
    return _events(torch, graph.replay, 1, trials) / reps


def _do_bench(fn: Callable[[], Any]) -> float | None:
    try:
        from triton.testing import do_bench
    except Exception:
        return None
    try:
        ms = do_bench(fn, warmup=50, rep=300, return_mode="min")
    except TypeError:  # older Triton: quantiles instead of return_mode
        ms = do_bench(fn, warmup=50, rep=300, quantiles=[0.0, 0.5])[0]
    return ms / 1000


def plain_torch(gpu: int) -> dict[str, Any]:
    import torch

    dev = torch.device("cuda", gpu)
    torch.cuda.set_device(dev)
    out: dict[str, Any] = {"copy": {}, "bf16": {}, "fp8": {}, "host": {}}
    for size_mib in (256, 1024, 2048, 4096):
        n = size_mib << 20
        src = torch.ones(n, dtype=torch.uint8, device=dev)
        dst = torch.empty_like(src)
        out["copy"][f"copy_ {size_mib} MiB"] = 2 * n / _events(torch, lambda dst=dst, src=src: dst.copy_(src), 5, 10) / 1e9
        out["copy"][f"graph of copy_ {size_mib} MiB"] = 2 * n / _graph(torch, lambda dst=dst, src=src: dst.copy_(src), 5, 10) / 1e9
        s32, d32 = src.view(torch.float32), dst.view(torch.float32)
        out["copy"][f"elementwise mul fp32 {size_mib} MiB"] = (
            2 * n / _events(torch, lambda s32=s32, d32=d32: torch.mul(s32, 1.0, out=d32), 5, 10) / 1e9)
        src = dst = s32 = d32 = None
        torch.cuda.empty_cache()
    n = 8192
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    c = torch.empty(n, n, device=dev, dtype=torch.bfloat16)
    flop = 2.0 * n ** 3
    out["bf16"]["CUDA events, 10 per trial"] = flop / _events(torch, lambda a=a, b=b, c=c: torch.matmul(a, b, out=c), 10, 10) / 1e12
    out["bf16"]["CUDA graph replay"] = flop / _graph(torch, lambda a=a, b=b, c=c: torch.matmul(a, b, out=c), 10, 10) / 1e12
    t = _do_bench(lambda a=a, b=b, c=c: torch.matmul(a, b, out=c))
    if t:
        out["bf16"]["triton do_bench (min)"] = flop / t / 1e12
    major, minor = torch.cuda.get_device_capability(dev)
    if (major, minor) >= (8, 9):
        a8 = torch.randn(n, n, device=dev).to(torch.float8_e4m3fn)
        b8 = torch.randn(n, n, device=dev).to(torch.float8_e4m3fn).t()
        one = torch.tensor(1.0, device=dev)
        for fast in (True, False):
            def mm(fast: bool = fast) -> Any:
                return torch._scaled_mm(a8, b8, scale_a=one, scale_b=one, out_dtype=torch.bfloat16,
                                        use_fast_accum=fast)
            label = "fast accum" if fast else "full accum"
            out["fp8"][f"CUDA events, {label}"] = flop / _events(torch, mm, 10, 10) / 1e12
            out["fp8"][f"CUDA graph replay, {label}"] = flop / _graph(torch, mm, 10, 10) / 1e12
            t = _do_bench(mm)
            if t:
                out["fp8"][f"triton do_bench (min), {label}"] = flop / t / 1e12
    torch.cuda.empty_cache()
    for size_mib in (256, 512, 1024):
        nb = size_mib << 20
        host = torch.ones(nb, dtype=torch.uint8, pin_memory=True)
        d = torch.empty(nb, dtype=torch.uint8, device=dev)
        out["host"][f"h2d {size_mib} MiB"] = nb / _events(torch, lambda d=d, host=host: d.copy_(host, non_blocking=True), 2, 5) / 1e9
        out["host"][f"d2h {size_mib} MiB"] = nb / _events(torch, lambda d=d, host=host: host.copy_(d, non_blocking=True), 2, 5) / 1e9
        host = d = None
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpu", type=int, default=0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    import torch

    from bwdoctor import kb

    name = torch.cuda.get_device_name(a.gpu)
    spec = kb.find_gpu(name=name)
    print(f"GPU {a.gpu}: {name}; kb row: {spec.key if spec else None}; torch {torch.__version__}")
    # bwdoctor's probe runs before AND after the plain-torch measurements, so that a GPU that heats up
    # (or clocks down) during the benchmark shows as a difference between the two bwdoctor passes
    bw = bwdoctor_figures(a.gpu)
    plain = plain_torch(a.gpu)
    bw_after = bwdoctor_figures(a.gpu)
    rows = []

    def _pick(d: dict[str, Any], key: str, field: str) -> Any:
        return (d.get(key) or {}).get(field)

    def row(label: str, ours: Any, best: dict[str, float], sheet: float | None, unit: str, after: Any = None) -> None:
        if not best:
            return
        how, value = max(best.items(), key=lambda kv: kv[1])
        ours_v = ours if isinstance(ours, (int, float)) else None
        diff = 100.0 * (ours_v - value) / value if ours_v else None
        rows.append({"quantity": label, "unit": unit, "bwdoctor": ours_v, "bwdoctor_after": after,
                     "plain_best": round(value, 1),
                     "plain_method": how, "diff_pct": round(diff, 1) if diff is not None else None,
                     "bwdoctor_pct_datasheet": round(100 * ours_v / sheet, 1) if sheet and ours_v else None,
                     "plain_pct_datasheet": round(100 * value / sheet, 1) if sheet else None, "datasheet": sheet})

    row("device memory bandwidth (copy, read+write)", _pick(bw, "memory_bandwidth", "gbs"), plain["copy"],
        getattr(spec, "memory_bandwidth_gbs", None), "GB/s", _pick(bw_after, "memory_bandwidth", "gbs"))
    row("bf16 dense GEMM 8192^3", _pick(bw, "bf16_gemm", "tflops"), plain["bf16"],
        getattr(spec, "bf16_dense_tflops", None), "TFLOP/s", _pick(bw_after, "bf16_gemm", "tflops"))
    row("fp8 e4m3 dense GEMM 8192^3 (_scaled_mm)", _pick(bw, "fp8_gemm", "tflops"), plain["fp8"],
        getattr(spec, "fp8_dense_tflops", None), "TFLOP/s", _pick(bw_after, "fp8_gemm", "tflops"))
    row("pinned host->device copy", _pick(bw, "host_copy", "h2d_gbs"),
        {k: v for k, v in plain["host"].items() if "h2d" in k}, None, "GB/s", _pick(bw_after, "host_copy", "h2d_gbs"))
    row("pinned device->host copy", _pick(bw, "host_copy", "d2h_gbs"),
        {k: v for k, v in plain["host"].items() if "d2h" in k}, None, "GB/s", _pick(bw_after, "host_copy", "d2h_gbs"))
    print(f"{'quantity':44} {'bwdoctor':>10} {'bwd after':>10} {'plain best':>11} {'diff':>7} {'bwd %ds':>8} "
          f"{'plain %ds':>9}  plain method")
    for r in rows:
        def f(v: Any, suffix: str = "") -> str:
            return "-" if v is None else f"{v:g}{suffix}"
        print(f"{r['quantity']:44} {f(r['bwdoctor']):>10} {f(r['bwdoctor_after']):>10} {f(r['plain_best']):>11} "
              f"{f(r['diff_pct'], '%'):>7} "
              f"{f(r['bwdoctor_pct_datasheet'], '%'):>8} {f(r['plain_pct_datasheet'], '%'):>9}  {r['plain_method']}")
    print(f"bwdoctor probe child: {bw.get('wall_s')} s wall; fp4: {bw.get('fp4_gemm')}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"gpu": name, "kb": spec.key if spec else None, "rows": rows, "bwdoctor": bw,
                       "bwdoctor_after": bw_after,
                       "plain": plain}, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
