"""Kernel launch and GPU probes on a real NVIDIA GPU (run with -m gpu on a GPU machine)."""

from __future__ import annotations

import pytest

from bwdoctor import RunOptions, Snapshot
from bwdoctor_checks.checks import probe as probes_checks
from bwdoctor_checks.collectors import probes as probes_collectors

pytestmark = pytest.mark.gpu


def test_kernel_launch_runs_on_every_gpu():
    facts = probes_collectors.collect_kernel(RunOptions(level="standard"))
    kl = facts[0].value
    assert kl["device_count"] >= 1
    assert kl["devices"] and all(d["ok"] for d in kl["devices"]), kl
    snap = Snapshot(facts)
    outcomes = probes_checks._check_kernel(snap)
    assert all(o.status == "pass" for o in outcomes)


def test_probes_measure_plausible_figures():
    facts = probes_collectors.collect_probes(RunOptions(level="full"))
    g = facts[0].value
    assert g["memory_bandwidth_gbs"] > 300  # any datacenter or RTX GPU of the last years
    assert g["bf16_tflops"] > 50
    major = int(g["compute_capability"].split(".")[0])
    if (major, int(g["compute_capability"].split(".")[1])) >= (8, 9):
        assert g["fp8_tflops"] > g["bf16_tflops"]
    assert g["h2d_gbs"] > 1 and g["d2h_gbs"] > 1
    snap = Snapshot(facts)
    for check in (probes_checks._ratio_check("memory_bandwidth_gbs", "memory_bandwidth_gbs", "GB/s", "memory bandwidth", 70),
                  probes_checks._ratio_check("bf16_tflops", "bf16_dense_tflops", "TFLOP/s", "BF16", 60)):
        for o in check(snap):
            assert o.status in ("pass", "warn", "skip")
