"""NVML collector: faults (no library, driver not loaded, mismatch, hang, lost GPU), recording
and replay, and the live path on a machine without a GPU."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bwdoctor import CollectorSpec, RunOptions, Snapshot, Unavailable
from bwdoctor.manager import PluginManager, Registry
from bwdoctor.runner import collect, run_checks
from bwdoctor_checks.collectors import nvml
from bwdoctor_checks.collectors.nvml import NvmlCallError, RecordingQuery, ReplayQuery, build_facts, replay_facts

DATA = Path(__file__).parent / "data" / "gpu"
H100 = json.loads((DATA / "h100-sxm-driver580" / "nvml.json").read_text())


@pytest.fixture(scope="module")
def gpu_checks():
    reg = PluginManager().registry()
    return [c for c in reg.checks if c.id.startswith(("BWD-GPU-", "BWD-DRV-"))]


def _init_error(name, msg=""):
    return {"init_error": {"error": name, "msg": msg}, "system": {}, "devices": []}


# -- collectors used through the runner (module level so that a child process can run them)


def _collector_missing_lib(options):
    return build_facts(ReplayQuery(_init_error("NVMLError_LibraryNotFound", "NVML Shared Library Not Found")))


def _collector_mismatch(options):
    return build_facts(ReplayQuery(_init_error("NVMLError_LibRmVersionMismatch", "RM has detected an NVML/RM version "
                                                                                 "mismatch.")))


class _HangingQuery(ReplayQuery):
    def device(self, i, fn, *args):
        if fn == "nvmlDeviceGetTemperature":
            time.sleep(60)
        return super().device(i, fn, *args)


def _collector_hangs(options):
    return build_facts(_HangingQuery.from_capture(H100))


def _registry(func, timeout=8.0):
    return Registry(collectors=[CollectorSpec(name="nvml", func=func, provides=["driver.*", "gpu.*", "nvml.*"],
                                              isolate=True, timeout=timeout)])


def test_library_missing_is_unavailable_and_checks_skip(gpu_checks):
    snap, findings = collect(_registry(_collector_missing_lib), RunOptions())
    assert findings == []
    assert snap.why_missing("gpu.0") == "no NVIDIA driver: libnvidia-ml.so.1 not found"
    res = {f.id: f for f in run_checks(gpu_checks, snap)}
    for cid in ("BWD-GPU-002", "BWD-GPU-003", "BWD-GPU-005", "BWD-DRV-001"):
        assert res[cid].status == "skip"
    assert "no NVIDIA driver" in res["BWD-GPU-003"].message


def test_live_query_without_driver():
    """The real pynvml path on this GPU-less machine: libnvidia-ml.so.1 cannot be loaded."""
    pytest.importorskip("pynvml")
    try:
        facts = nvml.collect_nvml(RunOptions())
    except Unavailable as exc:
        assert "libnvidia-ml.so.1 not found" in str(exc)
    else:  # a machine with a driver: the live facts must be well formed
        keys = {f.key for f in facts}
        assert "nvml.status" in keys


def test_driver_library_mismatch_fails(gpu_checks):
    snap, findings = collect(_registry(_collector_mismatch), RunOptions())
    assert findings == []
    st = snap.value("nvml.status")
    assert st["ok"] is False and st["error"] == "NVMLError_LibRmVersionMismatch"
    assert "Driver/library version mismatch" in st["message"]
    assert not snap.gpus()
    res = {f.id: f for f in run_checks(gpu_checks, snap)}
    f = res["BWD-DRV-001"]
    assert f.status == "fail" and f.root_cause == "driver_library_mismatch" and f.remedies == ["driver.reload"]


def test_driver_not_loaded_fails(gpu_checks):
    snap = Snapshot(build_facts(ReplayQuery(_init_error("NVMLError_DriverNotLoaded", "Driver Not Loaded"))))
    res = {f.id: f for f in run_checks(gpu_checks, snap)}
    assert res["BWD-DRV-001"].status == "fail" and "not loaded" in res["BWD-DRV-001"].message
    # the GPU checks skip with the reason NVML gave, not a generic "not collected"
    assert res["BWD-GPU-005"].status == "skip" and "not loaded" in res["BWD-GPU-005"].message.lower()


def test_kernel_module_disagrees_with_library(gpu_checks):
    snap = Snapshot(replay_facts(H100))
    snap.set("driver.kernel_module", {"version": "580.95.05", "text": "NVRM version: ..."}, "/proc/driver/nvidia/version")
    res = {f.id: f for f in run_checks(gpu_checks, snap)}
    assert res["BWD-DRV-001"].status == "fail" and res["BWD-DRV-001"].root_cause == "driver_library_mismatch"


def test_hanging_call_is_killed_at_deadline():
    start = time.perf_counter()
    snap, findings = collect(_registry(_collector_hangs, timeout=1.5), RunOptions())
    assert time.perf_counter() - start < 10
    assert len(findings) == 1
    f = findings[0]
    assert f.id == "BWD-CORE-003" and f.status == "error" and f.details["timed_out"]
    assert "timed out" in snap.why_missing("gpu.0")


def test_gpu_lost_others_fine(gpu_checks):
    dev = ReplayQuery.from_capture(H100).data["devices"][0]
    cap = {"init_error": None,
           "system": {"nvmlSystemGetDriverVersion": "580.159.04", "nvmlSystemGetCudaDriverVersion_v2": 13000,
                      "nvmlDeviceGetCount": 3},
           "devices": [dev, {"__error__": "NVMLError_GpuIsLost", "msg": "GPU is lost"},
                       dict(dev, nvmlDeviceGetTemperature={"error": "NVMLError_GpuIsLost", "msg": "GPU is lost"},
                            **{"nvmlDeviceGetTemperature(0)": {"error": "NVMLError_GpuIsLost", "msg": "GPU is lost"}})],
           "pairs": {}}
    snap = Snapshot(build_facts(ReplayQuery(cap)))
    assert snap.value("gpu.0")["name"] == "NVIDIA H100 80GB HBM3"
    assert snap.value("gpu.1")["lost"] is True and snap.value("gpu.1")["error"] == "NVMLError_GpuIsLost"
    assert snap.value("gpu.2")["lost"] is True  # lost in the middle of its queries
    assert snap.value("nvml.status")["lost_gpus"] == [1, 2]
    findings = run_checks(gpu_checks, snap)
    lost = [f for f in findings if f.id == "BWD-GPU-002"]
    assert {f.subject for f in lost if f.status == "fail"} == {"gpu1", "gpu2"}
    assert lost[0].root_cause == "gpu_health"
    pcie = [f for f in findings if f.id == "BWD-GPU-003"]
    assert [(f.subject, f.status) for f in pcie] == [("gpu0", "pass")]


def test_not_supported_is_unsupported_not_zero():
    g = Snapshot(replay_facts(H100)).value("gpu.0")
    video_app = g["clocks"]["video"]["application"]
    assert not video_app and video_app.reason == "NVMLError_NotSupported"
    assert g["clocks"]["sm"]["max"] == 1980


def test_recording_round_trip():
    rec = RecordingQuery(ReplayQuery.from_capture(H100))
    first = build_facts(rec)
    recorded = json.loads(json.dumps(rec.data))
    assert recorded["system"]["nvmlSystemGetDriverVersion"] == "580.159.04"
    assert recorded["devices"][0]["nvmlDeviceGetNvLinkState(0)"]["error"] == "NVMLError_NotSupported"
    second = replay_facts(recorded)
    strip = [(f.key, f.to_dict()["value"]) for f in first if f.key != "nvml.status"]
    assert strip == [(f.key, f.to_dict()["value"]) for f in second if f.key != "nvml.status"]


def test_call_error_names():
    err = NvmlCallError("NVMLError_NotSupported", "Not Supported")
    assert err.name == "NVMLError_NotSupported" and "Not Supported" in str(err)


def test_collector_registered():
    reg = PluginManager().registry()
    spec = next(c for c in reg.collectors if c.name == "nvml")
    assert spec.isolate and spec.timeout <= 10 and "gpu.*" in spec.provides


def test_live_snapshot_capture(gpu_checks):
    """The snapshot `bwdoctor snapshot --level quick` captured on a real H200 (driver 580.159.04),
    judged offline."""
    data = json.loads((DATA / "h200-live-snapshot.json").read_text())
    snap = Snapshot.from_dict(data.get("snapshot", data))
    gpus = snap.gpus()
    assert len(gpus) == 1 and gpus[0][1]["name"] == "NVIDIA H200" and gpus[0][1]["compute_capability"] == "9.0"
    assert snap.value("driver.version") == "580.159.04" and snap.value("driver.cuda_version") == "13.0"
    findings = run_checks(gpu_checks, snap)
    bad = [(f.id, f.status, f.message) for f in findings if f.status in ("fail", "error", "warn")]
    assert not bad, bad
    rec = next(f for f in findings if f.id == "BWD-GPU-001")
    assert rec.details["kb"] == "h200" and rec.details["memory_type"] == "HBM3e"
    assert {f.status for f in findings if f.id == "BWD-DRV-003"} == {"pass"}


def test_live_recording_replayed(gpu_checks):
    """Every NVML answer recorded on the H200 (BWDOCTOR_NVML_RECORD) through the same translation."""
    rec = json.loads((DATA / "h200-driver580" / "nvml-record.json").read_text())
    snap = Snapshot(replay_facts(rec))
    g = snap.value("gpu.0")
    assert g["pci_device_id"] == "0x2335" and g["memory_total_mib"] == 143771
    assert g["fabric"]["state"] == "not_supported" and g["recovery_action"] == "none"
    assert g["temperature"]["slowdown_c"] == 89 and g["power"]["limit_w"] == 700.0
    assert g["nvlink"].reason == "NVMLError_NotSupported"
    findings = run_checks(gpu_checks, snap)
    assert not [(f.id, f.status) for f in findings if f.status in ("fail", "error", "warn")]


@pytest.mark.gpu
def test_live_gpu(gpu_checks):
    facts = nvml.collect_nvml(RunOptions())
    snap = Snapshot(facts)
    assert snap.value("nvml.status")["ok"] is True
    assert snap.gpus()
    findings = run_checks(gpu_checks, snap)
    assert not [f for f in findings if f.status == "error"]
