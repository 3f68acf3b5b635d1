"""Kernel launch and GPU probes without a GPU: error classification from recorded error strings,
the child path end to end with a stand-in torch module, PCIe math, and the datasheet checks."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from bwdoctor import RunOptions, Unavailable, Unsupported
from bwdoctor_checks._lib import classify as classify
from bwdoctor_checks._lib import rooflines as rooflines
from bwdoctor_checks.checks import probe as probes_checks
from bwdoctor_checks.collectors import probes as probes_collectors

from conftest import make_snapshot

# Error strings as torch and the CUDA runtime print them (CUDA 13.0 driver_types.h wording).
RECORDED = [
    ("CUDA error: no kernel image is available for execution on the device\nCUDA kernel errors might be "
     "asynchronously reported at some other API call", "no_kernel_image"),
    ("NVIDIA GeForce RTX 5090 with CUDA capability sm_120 is not compatible with the current PyTorch installation.",
     "no_kernel_image"),
    ("The NVIDIA driver on your system is too old (found version 12040). Please update your GPU driver",
     "driver_too_old"),
    ("CUDA driver version is insufficient for CUDA runtime version", "driver_too_old"),
    ("CUDA error: forward compatibility was attempted on non supported HW", "forward_compat"),
    ("Unexpected error from cudaGetDeviceCount(). Error 804: forward compatibility was attempted on non supported HW",
     "forward_compat"),
    ("CUDA error: system has unsupported display driver / cuda driver combination", "driver_mismatch"),
    ("Unexpected error from cudaGetDeviceCount(). Error 802: system not yet initialized", "fabric_manager"),
    ("CUDA error: the provided PTX was compiled with an unsupported toolchain.", "unsupported_ptx"),
    ("CUDA error: CUDA-capable device(s) is/are busy or unavailable", "device_busy"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB", "out_of_memory"),
    ("CUDA error: an illegal memory access was encountered", "gpu_fault"),
    ("Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU and installed a driver",
     "no_driver"),
    ("CUDA error: no CUDA-capable device is detected", "no_device"),
    ("RuntimeError: something else", "other"),
    ("", "other"),
]


@pytest.mark.parametrize("text,kind", RECORDED)
def test_classify_cuda_error(text, kind):
    assert classify.classify_cuda_error(text) == kind


def test_every_kind_has_a_known_root_cause_and_remedies():
    from bwdoctor.types import ROOT_CAUSES

    for kind, (cause, remedies, meaning) in classify.kind_causes().items():
        assert cause is None or cause in ROOT_CAUSES, kind
        assert meaning
        if cause:
            assert remedies, kind


@pytest.mark.parametrize("gen,width,expected", [(3, 16, 15.76), (4, 16, 31.504), (5, 16, 63.008), (4, 8, 15.752),
                                                (5, "16", 63.008), (None, 16, None), (7, 16, None), (4, 0, None)])
def test_pcie_theoretical(gen, width, expected):
    assert rooflines.pcie_theoretical_gbs(gen, width) == expected


# ------------------------------------------------------------------ kernel facts


def test_kernel_facts_cpu_only_torch_is_unavailable():
    with pytest.raises(Unavailable, match="CPU-only build"):
        probes_collectors.kernel_facts({"torch": "2.6.0+cpu", "cuda": None, "device_count": 0}, False, "python")


def test_kernel_facts_no_gpu_is_unavailable():
    res = {"torch": "2.6.0+cu124", "cuda": "12.4", "device_count": 0,
           "init_error": "RuntimeError: Found no NVIDIA driver on your system."}
    with pytest.raises(Unavailable, match="sees no NVIDIA GPU"):
        probes_collectors.kernel_facts(res, False, "python")


def test_kernel_facts_driver_too_old_is_a_failure():
    res = {"torch": "2.9.0+cu130", "cuda": "13.0", "device_count": 0, "ok": False,
           "init_error": "RuntimeError: The NVIDIA driver on your system is too old (found version 12080)."}
    facts = probes_collectors.kernel_facts(res, False, "python")
    out = probes_checks._check_kernel(make_snapshot({f.key: f.value for f in facts}))
    assert out.status == "fail" and out.root_cause == "driver_too_old_for_cuda"
    assert "driver.upgrade" in out.remedies and "found version 12080" in out.message


def test_kernel_facts_no_kernel_image_per_device():
    res = {"torch": "2.5.1+cu124", "cuda": "12.4", "device_count": 2, "ok": False,
           "arch_list": ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"],
           "devices": [{"index": 0, "name": "NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
                        "compute_capability": "12.0", "ok": False,
                        "error": "AcceleratorError: CUDA error: no kernel image is available for execution on the "
                                 "device"},
                       {"index": 1, "name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "ok": True}]}
    facts = probes_collectors.kernel_facts(res, False, "python")
    assert facts[0].value["devices"][0]["error_kind"] == "no_kernel_image"
    outs = probes_checks._check_kernel(make_snapshot({f.key: f.value for f in facts}))
    assert [o.status for o in outs] == ["fail", "pass"]
    assert outs[0].root_cause == "arch_not_in_torch_wheel" and outs[0].confidence == 1.0
    assert "sm_90" in outs[0].message and outs[0].subject == "gpu0"


def test_kernel_facts_timeout_is_reported():
    facts = probes_collectors.kernel_facts({"stage": "init", "torch": "2.7.0"}, True, "python")
    out = probes_checks._check_kernel(make_snapshot({f.key: f.value for f in facts}))
    assert out.status == "fail" and "did not finish" in out.message


def test_kernel_facts_broken_torch_import_is_a_failure():
    res = {"import_failed": True, "error": "ImportError: libcudart.so.13: cannot open shared object file"}
    facts = probes_collectors.kernel_facts(res, False, "python")
    assert facts[0].value["ok"] is False
    with pytest.raises(Unavailable, match="not installed"):
        probes_collectors.kernel_facts({"import_failed": True, "error": "ModuleNotFoundError: No module named 'torch'"},
                            False, "python")


# ------------------------------------------------------------------ the child path with a stand-in torch

FAKE_TORCH = '''
"""A stand-in for torch that behaves like a cu124 wheel on a Blackwell GPU."""
__version__ = "2.5.1+cu124"
class version:
    cuda = "12.4"
    hip = None
class _Props:
    name = "NVIDIA GeForce RTX 5090"
    major, minor = 12, 0
class _T:
    def __mul__(self, other):
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device\\n"
                           "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.")
class cuda:
    @staticmethod
    def is_available():
        import warnings
        warnings.warn("NVIDIA GeForce RTX 5090 with CUDA capability sm_120 is not compatible with the current "
                      "PyTorch installation.")
        return True
    @staticmethod
    def device_count():
        return 1
    @staticmethod
    def get_arch_list():
        return ["sm_50", "sm_80", "sm_90"]
    @staticmethod
    def get_device_properties(i):
        return _Props()
    @staticmethod
    def synchronize(i=None):
        return None
def ones(n, device=None):
    return _T()
'''


def test_kernel_child_end_to_end_with_stand_in_torch(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "torch").mkdir(parents=True)
    (site / "torch" / "__init__.py").write_text(textwrap.dedent(FAKE_TORCH))
    monkeypatch.setenv("PYTHONPATH", str(site))
    real = probes_collectors.importlib.util.find_spec
    monkeypatch.setattr(probes_collectors.importlib.util, "find_spec", lambda n, *a: object() if n == "torch" else real(n, *a))
    facts = probes_collectors.collect_kernel(RunOptions(level="standard"))
    kl = facts[0].value
    assert kl["torch"] == "2.5.1+cu124" and kl["device_count"] == 1
    assert kl["devices"][0]["error_kind"] == "no_kernel_image"
    assert any("sm_120 is not compatible" in w for w in kl["warnings"])
    out = probes_checks._check_kernel(make_snapshot({f.key: f.value for f in facts}))[0]
    assert out.status == "fail" and out.root_cause == "arch_not_in_torch_wheel"
    assert "no kernel image is available" in out.message


def test_probe_collector_without_torch(monkeypatch):
    real = probes_collectors.importlib.util.find_spec
    monkeypatch.setattr(probes_collectors.importlib.util, "find_spec", lambda n, *a: None if n == "torch" else real(n, *a))
    monkeypatch.delenv("BWDOCTOR_TORCH_PYTHON", raising=False)
    with pytest.raises(Unavailable, match="PyTorch is not installed"):
        probes_collectors.collect_probes(RunOptions(level="full"))
    with pytest.raises(Unavailable, match="PyTorch is not installed"):
        probes_collectors.collect_kernel(RunOptions(level="standard"))


# ------------------------------------------------------------------ probe figures and checks

# What the probe child answered on a real H100 SXM (torch 2.11.0+cu130).
H100_CHILD = {"torch": "2.11.0+cu130", "gpus": [{
    "index": 0, "name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0",
    "memory_bandwidth": {"gbs": 3008.7, "method": "copy", "seconds": 0.05},
    "bf16_gemm": {"tflops": 798.8, "method": "mm", "seconds": 0.17},
    "fp8_gemm": {"tflops": 1490.0, "method": "scaled_mm", "seconds": 0.06},
    "fp4_gemm": {"skipped": "compute capability 9.0 has no FP4 tensor cores (needs 10.0+)"},
    "host_copy": {"h2d_gbs": 55.09, "d2h_gbs": 55.02, "method": "pinned", "seconds": 0.59}}]}

H100_GPU = {"name": "NVIDIA H100 80GB HBM3", "pci_device_id": "0x2330", "compute_capability": "9.0",
            "pcie": {"gen_current": 5, "gen_max": 5, "width_current": 16, "width_max": 16}}


def _h100_snapshot(**overrides):
    child = {"torch": H100_CHILD["torch"], "gpus": [dict(H100_CHILD["gpus"][0], **overrides)]}
    facts = {f.key: f.value for f in probes_collectors.probe_facts(child, "/usr/bin/python3")}
    facts["gpu.0"] = H100_GPU
    return make_snapshot(facts)


def test_probe_facts_shape():
    snap = _h100_snapshot()
    g = snap.value("probe.gpu.0")
    assert g["memory_bandwidth_gbs"] == 3008.7 and g["fp8_tflops"] == 1490.0
    assert isinstance(g["fp4_tflops"], Unsupported) and "no FP4" in g["fp4_tflops"].reason
    assert g["methods"]["bf16_gemm"] == "mm"


def _ratio(field):
    spec = {"memory_bandwidth_gbs": ("memory_bandwidth_gbs", rooflines.BANDWIDTH_WARN_PCT),
            "bf16_tflops": ("bf16_dense_tflops", rooflines.BF16_WARN_PCT),
            "fp8_tflops": ("fp8_dense_tflops", rooflines.FP8_WARN_PCT),
            "fp4_tflops": ("fp4_dense_tflops", rooflines.FP4_WARN_PCT)}[field]
    return probes_checks._ratio_check(field, spec[0], "u", field, spec[1])


def test_datasheet_ratios_on_the_h100():
    snap = _h100_snapshot()
    bw = _ratio("memory_bandwidth_gbs")(snap)[0]
    assert bw.status == "pass" and bw.details["percent"] == pytest.approx(89.8, abs=0.1)
    bf16 = _ratio("bf16_tflops")(snap)[0]
    assert bf16.status == "pass" and bf16.details["percent"] == pytest.approx(80.7, abs=0.1)
    fp8 = _ratio("fp8_tflops")(snap)[0]
    assert fp8.status == "pass" and fp8.details["percent"] == pytest.approx(75.3, abs=0.1)
    assert _ratio("fp4_tflops")(snap)[0].status == "skip"


def test_slow_bandwidth_warns():
    snap = _h100_snapshot(memory_bandwidth={"gbs": 1500.0})
    out = _ratio("memory_bandwidth_gbs")(snap)[0]
    assert out.status == "warn" and "below 70%" in out.message


def test_failed_measurement_is_a_skip_with_the_error():
    snap = _h100_snapshot(fp8_gemm={"error": "RuntimeError: CUBLAS_STATUS_NOT_SUPPORTED"})
    out = _ratio("fp8_tflops")(snap)[0]
    assert out.status == "skip" and "CUBLAS_STATUS_NOT_SUPPORTED" in out.message


def test_unknown_gpu_is_skipped_with_reason():
    child = {"gpus": [dict(H100_CHILD["gpus"][0], name="Mystery Accelerator 9000")]}
    snap = make_snapshot({f.key: f.value for f in probes_collectors.probe_facts(child, "python")})
    out = _ratio("memory_bandwidth_gbs")(snap)[0]
    assert out.status == "skip" and "knowledge base" in out.message


def test_pcie_check():
    out = probes_checks._check_pcie(_h100_snapshot())[0]
    assert out.status == "pass" and out.details["theoretical_gbs"] == 63.008
    assert out.details["percent"] == pytest.approx(87.4, abs=0.1)


def test_pcie_check_names_a_narrow_link():
    snap = _h100_snapshot(host_copy={"h2d_gbs": 24.0, "d2h_gbs": 23.0})
    gpu = dict(H100_GPU, pcie={"gen_current": 5, "gen_max": 5, "width_current": 8, "width_max": 16})
    snap.set("gpu.0", gpu, "test")
    out = probes_checks._check_pcie(snap)[0]
    assert out.status == "warn" and "trained at x8" in out.message


def test_pcie_check_without_link_facts():
    snap = make_snapshot({f.key: f.value for f in probes_collectors.probe_facts(H100_CHILD, "python")})
    assert probes_checks._check_pcie(snap)[0].status == "skip"


def test_checks_are_registered_with_docs():
    ids = {c.id: c for c in probes_checks.bwdoctor_checks()}
    assert set(ids) == {f"BWD-PROBE-00{i}" for i in range(1, 7)}
    for c in ids.values():
        assert len(c.doc) > 100 and (c.remedies or "No automatic" in c.doc)
    names = {c.name: c for c in probes_collectors.bwdoctor_collectors()}
    assert names["probe-kernel-launch"].level == "standard" and names["probe-gpu"].level == "full"
    assert all(c.isolate for c in names.values())


def test_import_does_not_pull_torch():
    code = ("import sys, bwdoctor_checks.collectors.probes, bwdoctor_checks.collectors.smoke, bwdoctor_checks.collectors.endpoint; "
            "assert 'torch' not in sys.modules and 'vllm' not in sys.modules")
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=dict(os.environ))


def test_child_script_imports_only_the_standard_library():
    src = (Path(probes_collectors.__file__).parent.parent / "_lib" / "torchprobe.py").read_text()
    top = [ln for ln in src.splitlines() if ln.startswith(("import ", "from "))]
    assert not any("bwdoctor" in ln or "torch" in ln.split()[1] or "vllm" in ln for ln in top), top
