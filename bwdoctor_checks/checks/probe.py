"""Checks of the GPU probes' measurements (BWD-PROBE) against the knowledge base's rooflines."""

from __future__ import annotations

from typing import Any

from bwdoctor import (
    CheckResult,
    CheckSpec,
    Snapshot,
    failed,
    hookimpl,
    known,
    passed,
    resolve,
    skipped,
    warned,
)
from bwdoctor_checks._lib.classify import classify_cuda_error, kind_causes
from bwdoctor_checks._lib.rooflines import (
    BANDWIDTH_WARN_PCT,
    BF16_WARN_PCT,
    FP4_WARN_PCT,
    FP8_WARN_PCT,
    PCIE_WARN_PCT,
    pcie_theoretical_gbs,
)

# ------------------------------------------------------------------------------ checks


def _check_kernel(snap: Snapshot) -> CheckResult:
    kl = snap.mapping("probe.kernel_launch")
    ev = ["probe.kernel_launch"]
    out = []
    if kl.get("init_error") and not kl.get("devices"):
        kind = kl.get("init_error_kind") or classify_cuda_error(kl.get("init_error"))
        causes = kind_causes()
        cause, remedies, meaning = causes.get(kind, causes["other"])
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
        causes = kind_causes()
        cause, remedies, meaning = causes.get(kind, causes["other"])
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
    spec = resolve.gpu_cc(gpu)[1] if isinstance(gpu, dict) else None
    if spec is None:
        spec = resolve.gpu_spec(name=probe.get("name"))
    return spec


def _ratio_check(field: str, spec_field: str, unit: str, label: str, threshold: float):
    def check(snap: Snapshot) -> CheckResult:
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


def _check_pcie(snap: Snapshot) -> CheckResult:
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
