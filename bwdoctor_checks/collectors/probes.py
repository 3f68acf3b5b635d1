"""Kernel launch check and GPU probes, measured through the installed PyTorch in a child process.

* ``--level standard``: launch one real CUDA kernel on every GPU (``torch.ones(..., device=cuda:i) * 2``,
  then synchronize). ``torch.cuda.is_available()`` alone says yes on stacks whose first kernel fails
  ("no kernel image is available for execution on the device").
* ``--level full``: measure each GPU: device memory bandwidth (1 GiB device-to-device copy, bytes read
  + written), dense GEMM throughput in BF16 (8192³ ``torch.matmul``), FP8 (``torch._scaled_mm``
  e4m3, compute capability 8.9+) and FP4 (``torch._scaled_mm`` NVFP4/MXFP4, compute capability 10.0+
  where torch has ``float4_e2m1fn_x2``), and pinned host↔device copy bandwidth. CUDA events, warm-up,
  best of N. While they run, the child prints a status line on the terminal (stderr) when there is one.

The interpreter is this one, or ``options.extra["torch_python"]`` / ``$BWDOCTOR_TORCH_PYTHON``. Torch
is never imported here. Facts produced:

* ``probe.kernel_launch``: ``{"torch", "cuda", "ok", "device_count", "devices": [{"index", "name",
  "compute_capability", "ok", "error", "error_kind", "seconds"}], "init_error", "init_error_kind",
  "arch_list", "warnings", "timed_out"}``
* ``probe.gpu.<i>``: ``{"name", "compute_capability", "torch", "memory_bandwidth_gbs", "bf16_tflops",
  "fp8_tflops", "fp4_tflops", "h2d_gbs", "d2h_gbs", "methods": {...}}``; a figure that could not be
  measured is ``Unsupported(reason)``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from typing import TYPE_CHECKING, Any

from bwdoctor import (
    CollectorSpec,
    Fact,
    RunOptions,
    Unavailable,
    Unsupported,
    hookimpl,
    kb,
    lazy_module,
    resolve,
)
from bwdoctor.progress import terminal_progress_fd

if TYPE_CHECKING:
    from bwdoctor_checks._lib import classify, torchprobe
else:  # the child runner and the error table: imported when a probe runs, not when the plugins load
    classify = lazy_module("bwdoctor_checks._lib.classify")
    torchprobe = lazy_module("bwdoctor_checks._lib.torchprobe")

KERNEL_TIMEOUT = 90.0
PROBE_TIMEOUT = 300.0
MARGIN = 10.0






# ------------------------------------------------------------------------------ CUDA error kinds






# ------------------------------------------------------------------------------ collectors


def torch_python(options: RunOptions) -> str:
    return str(options.extra.get("torch_python") or os.environ.get("BWDOCTOR_TORCH_PYTHON") or sys.executable)


def _check_torch_present(python: str) -> None:
    if python == sys.executable:
        if importlib.util.find_spec("torch") is None:
            raise Unavailable("PyTorch is not installed in this interpreter: no CUDA kernel to launch "
                              "(give another with BWDOCTOR_TORCH_PYTHON)")
    elif not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise Unavailable(f"the torch interpreter {python} (BWDOCTOR_TORCH_PYTHON) is not an executable file")


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # torch's index i is NVML's gpu.<i>
    return env


def kernel_facts(res: dict[str, Any], timed_out: bool, python: str) -> list[Fact]:
    """Turn the child's answer into the ``probe.kernel_launch`` fact, or raise Unavailable."""
    src = f"probe:{os.path.basename(python)}"
    if timed_out:
        return [Fact("probe.kernel_launch", {
            "ok": False, "timed_out": True, "torch": res.get("torch"), "cuda": res.get("cuda"),
            "stage": res.get("stage"), "devices": res.get("devices") or [],
            "init_error": f"the kernel launch did not finish within {KERNEL_TIMEOUT:g} s (stage "
                          f"'{res.get('stage')}'): a hung driver call or CUDA initialisation",
            "init_error_kind": "hang"}, src)]
    if res.get("crashed") and not res.get("devices"):
        what = "importing torch" if res.get("stage") in (None, "start", "import") else "the kernel launch"
        err = f"{what} crashed: {res['crashed']}"
        return [Fact("probe.kernel_launch", {"ok": False, "crashed": True, "torch": res.get("torch"),
                                             "cuda": res.get("cuda"), "stage": res.get("stage"), "devices": [],
                                             "init_error": err, "init_error_kind": "other"}, src)]
    if res.get("import_failed"):
        err = str(res.get("error", ""))
        if "No module named 'torch'" in err:
            raise Unavailable(f"PyTorch is not installed in {python}: no CUDA kernel to launch")
        return [Fact("probe.kernel_launch", {"ok": False, "import_error": err, "init_error": err,
                                             "init_error_kind": classify.classify_cuda_error(err), "devices": []}, src)]
    if not res:
        raise RuntimeError("the kernel-launch child gave no answer")
    if not res.get("cuda") and not res.get("hip"):
        raise Unavailable(f"torch {res.get('torch')} is a CPU-only build: no CUDA kernel to launch")
    if res.get("hip"):
        raise Unavailable(f"torch {res.get('torch')} is a ROCm build: bwdoctor launches CUDA kernels only")
    init_error = res.get("init_error")
    init_kind = classify.classify_cuda_error(init_error) if init_error else None
    if not res.get("device_count") and init_kind in (None, "no_driver", "no_device", "other"):
        raise Unavailable(f"torch {res.get('torch')} sees no NVIDIA GPU" + (f": {init_error}" if init_error else ""))
    devices = []
    for d in res.get("devices") or []:
        d = dict(d)
        if not d.get("ok"):
            d["error_kind"] = classify.classify_cuda_error(d.get("error"))
        devices.append(d)
    value = {"ok": bool(res.get("ok")), "torch": res.get("torch"), "cuda": res.get("cuda"),
             "device_count": res.get("device_count"), "devices": devices, "arch_list": res.get("arch_list") or [],
             "warnings": res.get("warnings") or [], "import_s": res.get("import_s"), "timed_out": False}
    if init_error:
        value["init_error"] = init_error
        value["init_error_kind"] = init_kind
    return [Fact("probe.kernel_launch", value, src)]


def collect_kernel(options: RunOptions) -> list[Fact]:
    python = torch_python(options)
    _check_torch_present(python)
    with tempfile.TemporaryDirectory(prefix="bwdoctor-kernel-") as workdir:
        with torchprobe.gpu_lock(30.0) as waited:
            run = torchprobe.run_child(python, "kernel", {}, KERNEL_TIMEOUT - waited, workdir, env=_child_env())
    return kernel_facts(run.result, run.timed_out, python)


def _figure(section: Any, key: str) -> Any:
    if not isinstance(section, dict):
        return Unsupported("not measured")
    if "skipped" in section:
        return Unsupported(str(section["skipped"]))
    if "error" in section:
        return Unsupported(f"failed: {section['error']}")
    value = section.get(key)
    return value if isinstance(value, (int, float)) else Unsupported("not measured")


def probe_facts(res: dict[str, Any], python: str) -> list[Fact]:
    src = f"probe:{os.path.basename(python)}"
    facts = []
    for g in res.get("gpus") or []:
        methods = {k: g[k].get("method") for k in ("memory_bandwidth", "bf16_gemm", "fp8_gemm", "fp4_gemm",
                                                   "host_copy") if isinstance(g.get(k), dict) and g[k].get("method")}
        value = {
            "name": g.get("name"), "compute_capability": g.get("compute_capability"), "torch": res.get("torch"),
            "memory_bandwidth_gbs": _figure(g.get("memory_bandwidth"), "gbs"),
            "bf16_tflops": _figure(g.get("bf16_gemm"), "tflops"),
            "fp8_tflops": _figure(g.get("fp8_gemm"), "tflops"),
            "fp4_tflops": _figure(g.get("fp4_gemm"), "tflops"),
            "h2d_gbs": _figure(g.get("host_copy"), "h2d_gbs"),
            "d2h_gbs": _figure(g.get("host_copy"), "d2h_gbs"),
            "methods": methods,
            "seconds": {k: g[k].get("seconds") for k in ("memory_bandwidth", "bf16_gemm", "fp8_gemm", "fp4_gemm",
                                                         "host_copy") if isinstance(g.get(k), dict) and "seconds" in g[k]},
        }
        fp4 = g.get("fp4_gemm")
        if isinstance(fp4, dict) and fp4.get("format"):
            value["fp4_format"] = fp4["format"]
        facts.append(Fact(f"probe.gpu.{g.get('index')}", value, src))
    return facts


def collect_probes(options: RunOptions) -> list[Fact]:
    python = torch_python(options)
    _check_torch_present(python)
    quant = kb.quantization()
    args: dict[str, Any] = {"fp8_min_cc": resolve.cc_tuple(quant["fp8"]["native_min_cc"]),
                            "fp4_min_cc": resolve.cc_tuple(quant["fp4"]["native_min_cc"])}
    for key in ("copy_bytes", "host_bytes", "matmul_n", "gpus"):
        if options.extra.get(f"probe_{key}") is not None:
            args[key] = options.extra[f"probe_{key}"]
    with tempfile.TemporaryDirectory(prefix="bwdoctor-probe-") as workdir:
        with torchprobe.gpu_lock(60.0) as waited:
            run = torchprobe.run_child(python, "probes", args, max(10.0, PROBE_TIMEOUT - MARGIN - waited), workdir,
                            env=_child_env(), progress_fd=terminal_progress_fd())
    res = run.result or {}
    if res.get("crashed") and not res.get("gpus"):
        raise RuntimeError(f"the GPU probes crashed: {res['crashed']}")
    if res.get("import_failed"):
        raise Unavailable(f"PyTorch could not be imported in {python}: {res.get('error')}")
    if res.get("no_gpu"):
        raise Unavailable(str(res.get("error")))
    facts = probe_facts(res, python)
    if run.timed_out and not facts:
        raise RuntimeError(f"the GPU probes did not finish within {PROBE_TIMEOUT:g} s (stage '{res.get('stage')}')")
    if not facts:
        raise RuntimeError(f"the GPU probes gave no figures: {res.get('error') or 'child exit ' + str(run.returncode)}")
    return facts


@hookimpl
def bwdoctor_collectors() -> list[CollectorSpec]:
    return [
        CollectorSpec(name="probe-kernel-launch", func=collect_kernel, isolate=True, level="standard",
                      timeout=KERNEL_TIMEOUT + MARGIN, provides=["probe.kernel_launch"],
                      doc="Launches one CUDA kernel through the installed torch on every GPU, in a child process."),
        CollectorSpec(name="probe-gpu", func=collect_probes, isolate=True, level="full", timeout=PROBE_TIMEOUT,
                      provides=["probe.gpu.*"],
                      doc="Measures memory bandwidth, BF16/FP8/FP4 GEMM and host<->device copy bandwidth per GPU."),
    ]


