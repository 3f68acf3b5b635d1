"""Every GPU of the knowledge base, seen by NVML with only its name, id and compute capability,
goes through every GPU/driver/stack check without breaking one (unknown figures are None)."""

import pytest

from bwdoctor import Snapshot, kb
from bwdoctor.manager import PluginManager
from bwdoctor.runner import run_checks

REGISTRY = PluginManager(entry_points=False).registry()
CHECKS = [c for c in REGISTRY.checks if c.id.startswith(("BWD-GPU", "BWD-DRV", "BWD-STACK", "BWD-FP8"))]


@pytest.mark.parametrize("gpu", kb.gpus(), ids=lambda g: g.key)
def test_no_check_breaks_on_a_known_gpu(gpu):
    snap = Snapshot()
    snap.set("driver.version", "580.95.05", "test")
    snap.set("driver.cuda_version", "13.0", "test")
    snap.set("gpu.count", 1, "test")
    snap.set("gpu.0", {"name": gpu.name, "compute_capability": gpu.compute_capability,
                       "pci_device_id": (gpu.pci_device_ids or [None])[0]}, "test")
    snap.set("vllm", {"version": "0.33.0", "cuda_major": 13, "torch_requirement": "torch==2.14.0"}, "test")
    snap.set("torch", {"version": "2.14.0+cu130", "cuda": "13.0", "variant": "cu130"}, "test")
    errors = [(f.id, f.message) for f in run_checks(CHECKS, snap) if f.status == "error"]
    assert errors == []
    recognised = [f for f in run_checks([c for c in CHECKS if c.id == "BWD-GPU-001"], snap)]
    assert recognised[0].status == "pass", recognised[0].message
