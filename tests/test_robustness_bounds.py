"""Bounded work on any report: 4,000 GPUs re-checked with ``run --from`` in under 10 s of CPU,
at most 256 judged (one finding says how many were left out); prefix look-ups on a snapshot of
many facts do not scan every fact."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

from bwdoctor.types import Fact, Snapshot

from conftest import ROOT


def _report(n_gpus: int, n_other: int = 0) -> dict:
    facts = [{"key": f"gpu.{i}", "value": {"index": i, "name": "NVIDIA H200", "uuid": f"GPU-{i:08d}",
                                           "pci_device_id": "0x233510DE", "compute_capability": "9.0",
                                           "memory_total_bytes": 150754820096, "memory_used_bytes": 0,
                                           "mig_mode": False, "power_limit_w": 700}, "source": "nvml"}
             for i in range(n_gpus)]
    facts += [{"key": f"x.{i}", "value": {"a": i}, "source": "s"} for i in range(n_other)]
    facts.append({"key": "driver.version", "value": "570.124.06", "source": "nvml"})
    return {"schema_version": 1, "snapshot": {"schema_version": 1, "facts": facts, "missing": {}}}


def test_4000_gpus_rechecked_quickly(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps(_report(4000)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BWDOCTOR_")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "bwdoctor.cli", "run", "--from", str(path), "--format", "json"],
                          capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=300)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert proc.returncode in (0, 1), proc.stderr
    assert cpu < 10.0, f"{cpu:.1f} s of CPU ({wall:.1f} s wall)"
    data = json.loads(proc.stdout)
    core = [f for f in data["findings"] if f["id"] == "BWD-CORE-007"]
    assert len(core) == 1 and "4000 GPUs" in core[0]["message"] and "3744 are left out" in core[0]["message"]
    judged = {f.get("subject") for f in data["findings"] if f["id"].startswith("BWD-GPU")}
    assert "gpu255" in judged and "gpu256" not in judged


def test_prefix_lookups_use_the_sorted_keys():
    snap = Snapshot([Fact(f"x.{i}", i, "s") for i in range(50000)] + [Fact(f"gpu.{i}", {"index": i}, "s")
                                                                        for i in range(3)])
    start = time.perf_counter()
    for _ in range(2000):
        assert len(snap.keys("gpu.")) == 3
        assert snap.has("gpu.*")
    assert time.perf_counter() - start < 5.0
    snap.add(Fact("gpu.3", {"index": 3}, "s"))
    assert [i for i, _ in snap.gpus()] == [0, 1, 2, 3]
    assert snap.keys("gpu.0") == ["gpu.0"] and snap.keys("nothing.") == []
