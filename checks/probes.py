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
    Unsupported,
    failed,
    hookimpl,
    known,
    passed,
    skipped,
    warned,
)
from bwdoctor.progress import terminal_progress_fd
from bwdoctor_checks._torchprobe import gpu_lock, kb_gpu, run_child

KERNEL_TIMEOUT = 90.0
PROBE_TIMEOUT = 300.0
MARGIN = 10.0

# Thresholds, as a percentage of the knowledge base's datasheet figure (see docs/smoke-and-probes.md).
BANDWIDTH_WARN_PCT = 70.0
BF16_WARN_PCT = 60.0
FP8_WARN_PCT = 50.0
FP4_WARN_PCT = 40.0
PCIE_WARN_PCT = 60.0

# Usable PCIe bandwidth per lane and direction in GB/s, after line encoding (8b/10b for gen 1-2,
# 128b/130b for gen 3-5, 242/256 FLIT for gen 6): gen3 8 GT/s x 128/130 / 8 = 0.985 GB/s, and so on.
PCIE_LANE_GBS = {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}


def pcie_theoretical_gbs(gen: Any, width: Any) -> float | None:
    """Theoretical one-direction bandwidth of a PCIe link in GB/s (None when unknown)."""
    try:
        g, w = int(gen), int(width)
    except (TypeError, ValueError):
        return None
    if g not in PCIE_LANE_GBS or w <= 0:
        return None
    return round(PCIE_LANE_GBS[g] * w, 3)


# ------------------------------------------------------------------------------ CUDA error kinds

_KINDS: list[tuple[str, re.Pattern[str]]] = [
    ("no_kernel_image", re.compile(r"no kernel image is available|cudaErrorNoKernelImageForDevice|"
                                   r"is not compatible with the current PyTorch installation", re.I)),
    ("forward_compat", re.compile(r"forward compatibility was attempted on non supported HW|Error 804", re.I)),
    ("driver_mismatch", re.compile(r"unsupported display driver / cuda driver combination|Error 803|"
                                   r"Driver/library version mismatch", re.I)),
    ("driver_too_old", re.compile(r"driver version is insufficient|driver on your system is too old|"
                                  r"cudaErrorInsufficientDriver|Error 35\b", re.I)),
    ("unsupported_ptx", re.compile(r"PTX was compiled with an unsupported toolchain|cudaErrorUnsupportedPtxVersion",
                                   re.I)),
    ("fabric_manager", re.compile(r"system not yet initialized|Error 802", re.I)),
    ("device_busy", re.compile(r"busy or unavailable", re.I)),
    ("out_of_memory", re.compile(r"out of memory|OutOfMemoryError", re.I)),
    ("gpu_fault", re.compile(r"illegal memory access|uncorrectable ECC|unspecified launch failure|"
                             r"fallen off the bus|illegal instruction", re.I)),
    ("no_driver", re.compile(r"Found no NVIDIA driver|NVIDIA driver .*not .*found|libcuda\.so.*(?:cannot|not found)",
                             re.I)),
    ("no_device", re.compile(r"no CUDA-capable device is detected|invalid device ordinal|No CUDA GPUs are available",
                             re.I)),
]

# kind -> (root cause, remedy ids, what it means)
KIND_CAUSES: dict[str, tuple[str | None, list[str], str]] = {
    "no_kernel_image": ("arch_not_in_torch_wheel", ["torch.reinstall-cuda-variant"],
                        "the installed torch has no machine code (SASS) or PTX for this GPU's architecture"),
    "forward_compat": ("driver_too_old_for_cuda", ["driver.remove-compat", "driver.upgrade"],
                       "CUDA forward-compatibility libraries were loaded on a GPU that does not support them"),
    "driver_mismatch": ("driver_library_mismatch", ["driver.reload"],
                        "the user-space driver libraries and the loaded kernel module disagree"),
    "driver_too_old": ("driver_too_old_for_cuda", ["driver.upgrade", "torch.reinstall-cuda-variant"],
                       "the NVIDIA driver is older than the CUDA runtime this torch was built with"),
    "unsupported_ptx": ("driver_too_old_for_cuda", ["driver.upgrade"],
                        "the PTX in the wheel is newer than the driver's JIT compiler"),
    "fabric_manager": ("fabric_manager_missing", ["fabric-manager.install"],
                       "an NVSwitch system whose Fabric Manager is not running"),
    "device_busy": ("gpu_health", ["gpu.advisory"],
                    "the GPU is in exclusive compute mode and taken, or in a bad state"),
    "out_of_memory": ("gpu_memory_contention", ["gpu.free-memory"], "other processes hold the GPU's memory"),
    "gpu_fault": ("gpu_health", ["gpu.advisory"], "the GPU faulted (XID error, ECC, bus)"),
    "no_driver": ("container_runtime", ["container.toolkit"], "torch finds no NVIDIA driver"),
    "no_device": ("container_runtime", ["container.toolkit"], "torch sees no CUDA device"),
    "other": (None, [], "an unrecognised CUDA error"),
}


def classify_cuda_error(text: str | None) -> str:
    """The kind of a CUDA/torch error text: no_kernel_image, driver_too_old, ... or ``other``."""
    if not text:
        return "other"
    for kind, rx in _KINDS:
        if rx.search(text):
            return kind
    return "other"


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
    if res.get("import_failed"):
        err = str(res.get("error", ""))
        if "No module named 'torch'" in err:
            raise Unavailable(f"PyTorch is not installed in {python}: no CUDA kernel to launch")
        return [Fact("probe.kernel_launch", {"ok": False, "import_error": err, "init_error": err,
                                             "init_error_kind": classify_cuda_error(err), "devices": []}, src)]
    if not res:
        raise RuntimeError("the kernel-launch child gave no answer")
    if not res.get("cuda") and not res.get("hip"):
        raise Unavailable(f"torch {res.get('torch')} is a CPU-only build: no CUDA kernel to launch")
    if res.get("hip"):
        raise Unavailable(f"torch {res.get('torch')} is a ROCm build: bwdoctor launches CUDA kernels only")
    init_error = res.get("init_error")
    init_kind = classify_cuda_error(init_error) if init_error else None
    if not res.get("device_count") and init_kind in (None, "no_driver", "no_device", "other"):
        raise Unavailable(f"torch {res.get('torch')} sees no NVIDIA GPU" + (f": {init_error}" if init_error else ""))
    devices = []
    for d in res.get("devices") or []:
        d = dict(d)
        if not d.get("ok"):
            d["error_kind"] = classify_cuda_error(d.get("error"))
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
        with gpu_lock(30.0) as waited:
            run = run_child(python, "kernel", {}, KERNEL_TIMEOUT - waited, workdir, env=_child_env())
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
    args: dict[str, Any] = {}
    for key in ("copy_bytes", "host_bytes", "matmul_n", "gpus"):
        if options.extra.get(f"probe_{key}") is not None:
            args[key] = options.extra[f"probe_{key}"]
    with tempfile.TemporaryDirectory(prefix="bwdoctor-probe-") as workdir:
        with gpu_lock(60.0) as waited:
            run = run_child(python, "probes", args, max(10.0, PROBE_TIMEOUT - MARGIN - waited), workdir,
                            env=_child_env(), progress_fd=terminal_progress_fd())
    res = run.result or {}
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


# ------------------------------------------------------------------------------ checks


def _check_kernel(snap: Snapshot) -> Any:
    kl = snap.mapping("probe.kernel_launch")
    ev = ["probe.kernel_launch"]
    out = []
    if kl.get("init_error") and not kl.get("devices"):
        kind = kl.get("init_error_kind") or classify_cuda_error(kl.get("init_error"))
        cause, remedies, meaning = KIND_CAUSES.get(kind, KIND_CAUSES["other"])
        return failed(f"CUDA does not start through torch {kl.get('torch') or ''}: {kl.get('init_error')}"
                      + (f" — {meaning}" if kind != "other" else ""), evidence=ev, root_cause=cause,
                      remedies=remedies, confidence=0.95 if cause else None, details={"error_kind": kind})
    for d in kl.get("devices") or []:
        subject = f"gpu{d.get('index')}"
        name = f"GPU {d.get('index')} ({d.get('name')}, compute capability {d.get('compute_capability')})"
        if d.get("ok"):
            out.append(passed(f"a CUDA kernel ran on {name} through torch {kl.get('torch')} (CUDA {kl.get('cuda')})",
                              evidence=ev, subject=subject))
            continue
        kind = d.get("error_kind") or classify_cuda_error(d.get("error"))
        cause, remedies, meaning = KIND_CAUSES.get(kind, KIND_CAUSES["other"])
        archs = kl.get("arch_list") or []
        extra = f"; torch was built for {', '.join(archs)}" if kind == "no_kernel_image" and archs else ""
        out.append(failed(f"the first CUDA kernel on {name} failed: {d.get('error')} — {meaning}{extra}",
                          evidence=ev, subject=subject, root_cause=cause, remedies=remedies,
                          confidence=1.0 if kind == "no_kernel_image" else (0.9 if cause else None),
                          details={"error_kind": kind}))
    return out or skipped("torch reported no GPU to launch on")


def _probe_gpus(snap: Snapshot) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for key in snap.keys("probe.gpu."):
        idx = key.rsplit(".", 1)[-1]
        value = snap.value(key)
        if idx.isdigit() and isinstance(value, dict):
            out.append((int(idx), value))
    return sorted(out, key=lambda t: t[0])


def _spec_for(snap: Snapshot, idx: int, probe: dict[str, Any]) -> Any:
    gpu = snap.value(f"gpu.{idx}")
    spec = kb_gpu(gpu if isinstance(gpu, dict) else None)
    if spec is None:
        spec = kb_gpu({"name": probe.get("name")})
    return spec


def _ratio_check(field: str, spec_field: str, unit: str, label: str, threshold: float):
    def check(snap: Snapshot) -> Any:
        out = []
        for idx, probe in _probe_gpus(snap):
            subject = f"gpu{idx}"
            ev = [f"probe.gpu.{idx}", f"gpu.{idx}"]
            value = probe.get(field)
            if not known(value):
                reason = getattr(value, "reason", "not measured")
                out.append(skipped(f"GPU {idx} ({probe.get('name')}): {label} not measured: {reason}",
                                   evidence=ev, subject=subject))
                continue
            spec = _spec_for(snap, idx, probe)
            sheet = getattr(spec, spec_field, None) if spec is not None else None
            if not sheet:
                why = "is not in the knowledge base" if spec is None else f"has no datasheet {label} figure"
                out.append(skipped(f"GPU {idx} ({probe.get('name')}): {label} {value:g} {unit}; the GPU {why}",
                                   evidence=ev, subject=subject))
                continue
            pct = 100.0 * float(value) / float(sheet)
            msg = (f"GPU {idx} ({probe.get('name')}): {label} {value:g} {unit} = {pct:.0f}% of the datasheet "
                   f"{sheet:g} {unit} ({spec.name})")
            details = {"measured": value, "datasheet": sheet, "percent": round(pct, 1), "threshold_percent": threshold}
            if pct < threshold:
                out.append(warned(msg + f", below {threshold:g}%: the GPU runs slower than it should (clocks held "
                                        f"down by power or thermal limits, another workload, or a degraded part)",
                                  evidence=ev, subject=subject, details=details))
            else:
                out.append(passed(msg, evidence=ev, subject=subject, details=details))
        return out or skipped("no GPU was probed")
    return check


def _check_pcie(snap: Snapshot) -> Any:
    out = []
    for idx, probe in _probe_gpus(snap):
        subject = f"gpu{idx}"
        ev = [f"probe.gpu.{idx}", f"gpu.{idx}"]
        h2d, d2h = probe.get("h2d_gbs"), probe.get("d2h_gbs")
        if not known(h2d) and not known(d2h):
            out.append(skipped(f"GPU {idx}: host copies not measured", evidence=ev, subject=subject))
            continue
        best = max(v for v in (h2d, d2h) if known(v))
        gpu = snap.value(f"gpu.{idx}")
        pcie = gpu.get("pcie") if isinstance(gpu, dict) else None
        if not isinstance(pcie, dict):
            out.append(skipped(f"GPU {idx}: host<->device {best:g} GB/s; the PCIe link is unknown (no gpu.{idx}.pcie "
                               f"fact)", evidence=ev, subject=subject))
            continue
        gen = pcie.get("gen_max") if known(pcie.get("gen_max")) else pcie.get("gen_current")
        width = pcie.get("width_max") if known(pcie.get("width_max")) else pcie.get("width_current")
        theory = pcie_theoretical_gbs(gen, width)
        if theory is None:
            out.append(skipped(f"GPU {idx}: host<->device {best:g} GB/s; the PCIe generation/width is not reported",
                               evidence=ev, subject=subject))
            continue
        pct = 100.0 * best / theory
        link = f"PCIe gen{gen} x{width}"
        cur = (pcie.get("gen_current"), pcie.get("width_current"))
        if known(cur[0]) and known(cur[1]) and (cur[0], cur[1]) != (gen, width):
            link += f" (reported now: gen{cur[0]} x{cur[1]})"
        msg = (f"GPU {idx}: pinned host->device {h2d if known(h2d) else '?'} GB/s, device->host "
               f"{d2h if known(d2h) else '?'} GB/s; best {pct:.0f}% of {theory:g} GB/s for {link}")
        details = {"theoretical_gbs": theory, "percent": round(pct, 1), "threshold_percent": PCIE_WARN_PCT}
        if pct < PCIE_WARN_PCT:
            width_cur = pcie.get("width_current")
            hint = (f": the link trained at x{width_cur}, not x{width} (slot, riser or seating)"
                    if known(width_cur) and known(width) and width_cur < width else
                    ": check the slot (a chipset or x8 slot), riser, BIOS link speed, or IOMMU settings")
            out.append(warned(msg + f", below {PCIE_WARN_PCT:g}%{hint}", evidence=ev, subject=subject, details=details))
        else:
            out.append(passed(msg, evidence=ev, subject=subject, details=details))
    return out or skipped("no GPU was probed")


@hookimpl
def bwdoctor_checks() -> list[CheckSpec]:
    perf_doc = ("Measured in a child process with CUDA events after warm-up, best of several runs, and compared "
                "with the knowledge base's datasheet figure for the detected GPU (matched by PCI device id, then "
                "name). ")
    advisory = (" Remedy: advice on clocks, power limits, throttling and competing processes (nothing is changed "
                "automatically).")
    return [
        CheckSpec(id="BWD-PROBE-001", title="A CUDA kernel runs on every GPU", func=_check_kernel,
                  needs=["probe.kernel_launch"], level="standard", tags=["probe", "gpu", "torch"],
                  root_cause="arch_not_in_torch_wheel", remedies=["torch.reinstall-cuda-variant"], confidence=1.0,
                  doc="Launches a real kernel through the installed torch on each GPU (ones * 2, synchronize, "
                      "check the sum) in a child process with a deadline. torch.cuda.is_available() says yes on "
                      "stacks whose first kernel fails, so this is the proof. The exact error is quoted and "
                      "classified: 'no kernel image is available' (the wheel lacks the GPU's architecture → "
                      "reinstall a torch CUDA variant that has it), 'driver version is insufficient' (driver "
                      "older than the wheel's CUDA → upgrade the driver), Error 803/804 (library mismatch → "
                      "reload; forward-compat libs on a GPU without support → remove them), out of memory, busy "
                      "or faulted GPUs. A hang is reported too. Skipped when torch is absent, CPU-only, or sees "
                      "no GPU."),
        CheckSpec(id="BWD-PROBE-002", title="GPU memory bandwidth reaches the datasheet", level="full",
                  func=_ratio_check("memory_bandwidth_gbs", "memory_bandwidth_gbs", "GB/s", "memory bandwidth",
                                    BANDWIDTH_WARN_PCT),
                  needs=["probe.gpu.*"], tags=["probe", "performance"], root_cause="gpu_health",
                  remedies=["gpu.advisory"], can_fail=False,
                  doc=perf_doc + "Memory bandwidth: a 1 GiB device-to-device copy, counting bytes read and "
                      "written (copies reach about 85-92% of the datasheet on healthy HBM and GDDR parts; an H100 "
                      "SXM measured 3.0 TB/s of 3.35). Warns below 70%. Decode speed is bound by this figure."
                      + advisory),
        CheckSpec(id="BWD-PROBE-003", title="BF16 GEMM throughput reaches the datasheet", level="full",
                  func=_ratio_check("bf16_tflops", "bf16_dense_tflops", "TFLOP/s", "BF16 dense GEMM", BF16_WARN_PCT),
                  needs=["probe.gpu.*"], tags=["probe", "performance"], root_cause="gpu_health",
                  remedies=["gpu.advisory"], can_fail=False,
                  doc=perf_doc + "BF16: torch.matmul of 8192x8192 matrices of random data (2n³ FLOP). cuBLAS "
                      "reaches about 70-85% of the dense datasheet figure on random data (boost clocks are not "
                      "sustained at full tensor load). Warns below 60%." + advisory),
        CheckSpec(id="BWD-PROBE-004", title="FP8 GEMM throughput reaches the datasheet", level="full",
                  func=_ratio_check("fp8_tflops", "fp8_dense_tflops", "TFLOP/s", "FP8 dense GEMM", FP8_WARN_PCT),
                  needs=["probe.gpu.*"], tags=["probe", "performance", "fp8"], root_cause="gpu_health",
                  remedies=["gpu.advisory"], can_fail=False,
                  doc=perf_doc + "FP8: torch._scaled_mm with float8_e4m3fn operands and per-tensor scales, bf16 "
                      "output, fast accumulation, 8192³; only on compute capability 8.9+ (Ada, Hopper, "
                      "Blackwell). Reaches about 60-75% of the dense datasheet figure. Warns below 50%; skipped "
                      "with the reason on GPUs without FP8 tensor cores." + advisory),
        CheckSpec(id="BWD-PROBE-005", title="FP4 GEMM throughput reaches the datasheet", level="full",
                  func=_ratio_check("fp4_tflops", "fp4_dense_tflops", "TFLOP/s", "FP4 dense GEMM", FP4_WARN_PCT),
                  needs=["probe.gpu.*"], tags=["probe", "performance", "fp4"], root_cause="gpu_health",
                  remedies=["gpu.advisory"], can_fail=False,
                  doc=perf_doc + "FP4: torch._scaled_mm with float4_e2m1fn_x2 operands and NVFP4 (e4m3, "
                      "block 16) or MXFP4 (e8m0, block 32) scales, 8192³; only on compute capability 10.0+ with "
                      "a torch that has FP4 types. Warns below 40%; skipped with the reason elsewhere." + advisory),
        CheckSpec(id="BWD-PROBE-006", title="Host-device copies reach the PCIe link's rate", level="full",
                  func=_check_pcie, needs=["probe.gpu.*"], tags=["probe", "performance", "pcie"],
                  root_cause="gpu_health", remedies=["gpu.advisory"], can_fail=False,
                  doc="Copies a pinned 512 MiB host buffer to and from the GPU (CUDA events, best of 5) and "
                      "compares the faster direction with the link's theoretical rate from gpu.<i>.pcie "
                      "(maximum generation and width; per lane 0.985 GB/s gen3, 1.969 gen4, 3.938 gen5). PCIe "
                      "protocol overhead makes 80-90% the realistic best. Warns below 60%, naming a link trained "
                      "narrower than its maximum (slot, riser, seating). Model loading and CPU offload run at "
                      "this speed." + advisory),
    ]
