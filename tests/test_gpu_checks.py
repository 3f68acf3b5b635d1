"""GPU and driver checks on replayed NVML captures (the live collector's own translation).

Blackwell captures are built here from the knowledge base's verified specs (facts.md): RTX PRO
6000 Workstation/Max-Q (CC 12.0, 96 GB GDDR7 = 97,887 MiB in NVML, no NVLink, PCIe 5.0 x16),
B200 (CC 10.0, NVLink 5, NVSwitch fabric) and RTX 5090.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from bwdoctor import Snapshot, kb
from bwdoctor.manager import PluginManager
from bwdoctor.runner import run_checks
from bwdoctor_checks.collectors.nvml import replay_facts

from conftest import make_snapshot

DATA = Path(__file__).parent / "data" / "gpu"
NS = {"error": "NVMLError_NotSupported", "msg": "Not Supported"}


def device(name, pci_id, cc, mem_mib, *, power_w=600, nvlinks=None, gen=(5, 5, 5), width=(16, 16), reasons=1,
           mig=(0, 0), mig_devices=None, remap=(0, 0, 0, 0), processes=(), used_mib=512, fabric=None, ecc=(1, 1),
           persistence=1, arch=10, recovery=0, max_sm=3090):
    """One device in ReplayQuery's format, answering what the live collector asks."""
    d = {
        "nvmlDeviceGetName": name, "nvmlDeviceGetUUID": f"GPU-{pci_id:04x}-0000-0000-0000-{abs(hash(name)) % 10**12:012d}",
        "nvmlDeviceGetPciInfo": {"busId": "00000000:41:00.0", "pciDeviceId": (pci_id << 16) | 0x10DE,
                                 "pciSubSystemId": 0x204B10DE},
        "nvmlDeviceGetCudaComputeCapability": list(cc), "nvmlDeviceGetArchitecture": arch,
        "nvmlDeviceGetMemoryInfo": {"total": mem_mib << 20, "used": used_mib << 20, "free": (mem_mib - used_mib) << 20},
        "nvmlDeviceGetCurrPcieLinkGeneration": gen[0], "nvmlDeviceGetMaxPcieLinkGeneration": gen[1],
        "nvmlDeviceGetGpuMaxPcieLinkGeneration": gen[2], "nvmlDeviceGetCurrPcieLinkWidth": width[0],
        "nvmlDeviceGetMaxPcieLinkWidth": width[1], "nvmlDeviceGetPcieSpeed": 32000, "nvmlDeviceGetPcieReplayCounter": 0,
        "nvmlDeviceGetPersistenceMode": persistence, "nvmlDeviceGetComputeMode": 0, "nvmlDeviceGetMigMode": list(mig),
        "nvmlDeviceGetEccMode": ecc if isinstance(ecc, dict) else list(ecc), "nvmlDeviceGetPowerUsage": 35000, "nvmlDeviceGetPowerManagementLimit": power_w * 1000,
        "nvmlDeviceGetEnforcedPowerLimit": power_w * 1000, "nvmlDeviceGetPowerManagementDefaultLimit": power_w * 1000,
        "nvmlDeviceGetTemperature(0)": 41, "nvmlDeviceGetTemperatureThreshold(0)": 95,
        "nvmlDeviceGetTemperatureThreshold(1)": 92, "nvmlDeviceGetTemperatureThreshold(3)": 90,
        "nvmlDeviceGetPerformanceState": 8 if reasons & 1 else 0,
        "nvmlDeviceGetCurrentClocksEventReasons": reasons, "nvmlDeviceGetSupportedClocksEventReasons": 511,
        "nvmlDeviceGetRemappedRows": list(remap), "nvmlDeviceGetRetiredPagesPendingStatus": NS,
        "nvmlDeviceGetTotalEccErrors(0,0)": 0, "nvmlDeviceGetTotalEccErrors(1,0)": 0,
        "nvmlDeviceGetTotalEccErrors(0,1)": 0, "nvmlDeviceGetTotalEccErrors(1,1)": 0,
        "GpuRecoveryAction": recovery, "GpuFabricInfo": fabric if fabric is not None else NS,
        "Processes": [dict(p) for p in processes], "nvmlDeviceGetVirtualizationMode": 0,
        "nvmlDeviceGetUtilizationRates": {"gpu": 0 if reasons & 1 else 97, "memory": 0},
    }
    for ctype, cur, mx in ((0, 180, max_sm), (1, 180, max_sm), (2, 405, 14001), (3, 600, 3090)):
        d[f"nvmlDeviceGetClockInfo({ctype})"] = cur if reasons & 1 else mx - 300
        d[f"nvmlDeviceGetMaxClockInfo({ctype})"] = mx
        d[f"nvmlDeviceGetApplicationsClock({ctype})"] = mx
    if nvlinks is None:
        d["nvmlDeviceGetNvLinkState(0)"] = NS
    else:
        for link, up in enumerate(nvlinks):
            d[f"nvmlDeviceGetNvLinkState({link})"] = 1 if up else 0
            d[f"nvmlDeviceGetNvLinkRemotePciInfo({link})"] = {"busId": "00000000:00:00.0", "pciDeviceId": 0x22A310DE}
            d[f"nvmlDeviceGetNvLinkVersion({link})"] = 5
        d[f"nvmlDeviceGetNvLinkState({len(nvlinks)})"] = {"error": "NVMLError_InvalidArgument", "msg": ""}
    if mig_devices is not None:
        d["MigDevices"] = mig_devices
    return d


def capture(devices, driver="580.95.05", cuda=13000, pairs=None):
    sysq = {"nvmlSystemGetDriverVersion": driver, "nvmlSystemGetCudaDriverVersion_v2": cuda,
            "nvmlSystemGetNVMLVersion": f"13.{driver}", "nvmlDeviceGetCount": len(devices)}
    if pairs is None:
        pairs = {}
        for i in range(len(devices)):
            for j in range(i + 1, len(devices)):
                pairs[f"{i},{j}"] = {"nvmlDeviceGetTopologyCommonAncestor": 40, "nvmlDeviceGetP2PStatus(0)": 0,
                                     "nvmlDeviceGetP2PStatus(1)": 0, "nvmlDeviceGetP2PStatus(2)": 0,
                                     "nvmlDeviceGetP2PStatus(3)": 0}
    return {"init_error": None, "system": sysq, "devices": devices, "pairs": pairs}


def pro6000(**kw):
    return device("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", 0x2BB1, (12, 0), 97887, **kw)


def maxq(**kw):
    return device("NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition", 0x2BB4, (12, 0), 97887, power_w=300, **kw)


def rtx5090(**kw):
    return device("NVIDIA GeForce RTX 5090", 0x2B85, (12, 0), 32607, power_w=575, ecc=NS, **kw)


def b200(**kw):
    kw.setdefault("nvlinks", [True] * 18)
    kw.setdefault("fabric", {"state": 3, "status": 0, "clique_id": 1, "health_mask": 0})
    return device("NVIDIA B200", 0x2901, (10, 0), 183359, power_w=1000, max_sm=1965, **kw)


@pytest.fixture(scope="module")
def checks():
    reg = PluginManager().registry()
    mine = [c for c in reg.checks if c.id.startswith(("BWD-GPU-", "BWD-DRV-"))]
    assert len(mine) >= 15
    return mine


def snap_of(cap, extra=None):
    return make_snapshot(extra, base=replay_facts(cap))


def by_id(findings):
    out = {}
    for f in findings:
        out.setdefault(f.id, []).append(f)
    return out


def statuses(findings, cid):
    return sorted({f.status for f in by_id(findings).get(cid, [])})


# ------------------------------------------------------------------ the real H100 capture


def test_h100_capture_replayed(checks):
    cap = json.loads((DATA / "h100-sxm-driver580" / "nvml.json").read_text())
    snap = snap_of(cap, {"torch": {"version": "2.11.0+cu130", "cuda": "13.0", "variant": "cu130"},
                         "host.env": {"PATH": "/usr/bin"}})
    assert snap.value("driver.version") == "580.159.04"
    assert snap.value("driver.cuda_version") == "13.0"
    assert snap.value("gpu.count") == 1
    g = snap.value("gpu.0")
    assert g["name"] == "NVIDIA H100 80GB HBM3" and g["compute_capability"] == "9.0"
    assert g["pci_device_id"] == "0x2330" and g["memory_total_mib"] == 81559
    assert g["persistence_mode"] is True and g["mig"] == {"current": False, "pending": False}
    assert g["clock_event_reasons"]["active_names"] == ["gpu_idle"]
    assert g["nvlink"].reason == "NVMLError_NotSupported"  # Unsupported, never 0
    assert g["retired_pages"].reason == "NVMLError_NotSupported"
    findings = run_checks(checks, snap)
    bad = [(f.id, f.status, f.message) for f in findings if f.status in ("fail", "error", "warn")]
    assert not bad, bad
    rec = by_id(findings)["BWD-GPU-001"][0]
    assert rec.status == "pass" and rec.details["kb"] == "h100"
    assert statuses(findings, "BWD-DRV-003") == ["pass"]
    # The snapshot survives a JSON round trip (a report re-run with --from).
    again = Snapshot.from_json(snap.to_json())
    assert [(f.id, f.status) for f in run_checks(checks, again)] == [(f.id, f.status) for f in findings]


# ------------------------------------------------------------------ healthy Blackwell


@pytest.mark.parametrize("make,key,power", [(pro6000, "rtx-pro-6000", 600), (maxq, "rtx-pro-6000-max-q", 300),
                                            (rtx5090, "rtx-5090", 575)])
def test_blackwell_workstation_healthy(checks, make, key, power):
    snap = snap_of(capture([make(), make()]),
                   {"torch": {"version": "2.9.0+cu128", "cuda": "12.8", "variant": "cu128"}, "host.env": {}})
    findings = run_checks(checks, snap)
    bad = [(f.id, f.status, f.message) for f in findings if f.status in ("fail", "error", "warn")]
    assert not bad, bad
    rec = by_id(findings)["BWD-GPU-001"][0]
    assert rec.details["kb"] == key and rec.details["compute_capability"] == "12.0"
    assert rec.details["memory_type"] == "GDDR7" and rec.details["nvlink"] is False
    assert snap.value("gpu.0")["power"]["enforced_limit_w"] == power
    nv = by_id(findings)["BWD-GPU-004"]
    assert all(f.status == "pass" and "no NVLink" in f.message and "PCIe 5.0 x16" in f.message
               for f in nv if f.subject.startswith("gpu"))
    assert snap.value("gpu.topology")["pairs"][0]["p2p"]["read"] == "ok"


def test_b200_hgx_healthy(checks):
    snap = snap_of(capture([b200() for _ in range(8)]))
    findings = run_checks(checks, snap)
    bad = [(f.id, f.status, f.message) for f in findings if f.status in ("fail", "error", "warn")]
    assert not bad, bad
    assert "18 NVLinks up (1800 GB/s" in by_id(findings)["BWD-GPU-004"][0].message
    assert statuses(findings, "BWD-GPU-010") == ["pass"]
    assert len(snap.value("gpu.topology")["pairs"]) == 28


# ------------------------------------------------------------------ broken Blackwell


def test_old_driver_on_sm120(checks):
    snap = snap_of(capture([pro6000()], driver="550.54.14", cuda=12040),
                   {"torch": {"version": "2.9.0+cu128", "cuda": "12.8", "variant": "cu128"}})
    f = by_id(run_checks(checks, snap))
    drv = f["BWD-DRV-002"][0]
    assert drv.status == "fail" and drv.root_cause == "driver_too_old_for_cuda" and "driver.upgrade" in drv.remedies
    assert "570.123.07" in drv.message  # the RTX PRO 6000 Workstation floor, above the sm_120 floor
    # CUDA 12.8 torch on a CUDA 12.4 driver: same major, minor-version compatibility
    assert statuses(list(f["BWD-DRV-003"]), "BWD-DRV-003") == ["pass"]


def test_cuda13_torch_on_r570(checks):
    snap = snap_of(capture([rtx5090()], driver="570.133.07", cuda=12080),
                   {"torch": {"version": "2.11.0+cu130", "cuda": "13.0", "variant": "cu130"},
                    "vllm": {"version": "0.20.0", "cuda_major": 13, "torch_requirement": "torch==2.11.0"}})
    f = by_id(run_checks(checks, snap))
    assert f["BWD-DRV-002"][0].status == "pass"
    drv = f["BWD-DRV-003"]
    assert [x.status for x in drv] == ["fail", "fail"]
    assert drv[0].root_cause == "driver_too_old_for_cuda"
    assert set(drv[0].remedies) == {"driver.upgrade", "torch.reinstall-cuda-variant"}
    assert "12080" in drv[0].message


def test_driver_cuda_derived_from_version_only(checks):
    snap = Snapshot()
    snap.set("driver.version", "550.127.05", "collect_env")
    snap.set("torch", {"version": "2.11.0+cu130", "cuda": "13.0", "variant": "cu130"}, "collect_env")
    f = by_id(run_checks(checks, snap))
    assert f["BWD-DRV-003"][0].status == "fail"


def test_degraded_link_under_load(checks):
    busy = pro6000(width=(8, 16), reasons=0)
    f = by_id(run_checks(checks, snap_of(capture([busy]))))
    pcie = f["BWD-GPU-003"][0]
    assert pcie.status == "warn" and "x8" in pcie.message and pcie.root_cause == "gpu_health"
    # Gen1 at idle is power saving, not a fault
    idle = pro6000(gen=(1, 5, 5), reasons=1)
    assert statuses(run_checks(checks, snap_of(capture([idle]))), "BWD-GPU-003") == ["pass"]
    # ... but Gen1 while busy is
    busy_gen = pro6000(gen=(1, 5, 5), reasons=0)
    assert statuses(run_checks(checks, snap_of(capture([busy_gen]))), "BWD-GPU-003") == ["warn"]
    # slot caps the GPU at Gen4
    slot = pro6000(gen=(4, 4, 5), reasons=0)
    assert "Gen4" in by_id(run_checks(checks, snap_of(capture([slot]))))["BWD-GPU-003"][0].message


def test_thermal_slowdown(checks):
    hot = maxq(reasons=0x40 | 0x20)
    f = by_id(run_checks(checks, snap_of(capture([hot]))))
    clk = f["BWD-GPU-005"][0]
    assert clk.status == "fail" and clk.root_cause == "gpu_health" and "gpu.advisory" in clk.remedies
    assert "hw_thermal_slowdown" in clk.message
    capped = maxq(reasons=0x4)
    assert statuses(run_checks(checks, snap_of(capture([capped]))), "BWD-GPU-005") == ["warn"]


def test_pending_remap_and_recovery(checks):
    f = by_id(run_checks(checks, snap_of(capture([pro6000(remap=(0, 1, 1, 0))]))))
    mem = f["BWD-GPU-007"][0]
    assert mem.status == "fail" and "pending" in mem.message and mem.root_cause == "gpu_health"
    f = by_id(run_checks(checks, snap_of(capture([b200(recovery=1)]))))
    assert f["BWD-GPU-007"][0].status == "fail" and "gpu_reset" in f["BWD-GPU-007"][0].message


def test_mig(checks):
    slices = [{"index": k, "uuid": f"MIG-aaaaaaaa-0000-0000-0000-00000000000{k}",
               "name": "NVIDIA RTX PRO 6000 Blackwell Workstation Edition MIG 1g.24gb", "memory_total_mib": 24000}
              for k in range(4)]
    cap = capture([pro6000(mig=(1, 1), mig_devices=slices)])
    f = by_id(run_checks(checks, snap_of(cap, {"host.env": {}})))
    m = f["BWD-GPU-008"][0]
    assert m.status == "fail" and m.root_cause == "mig" and m.remedies == ["gpu.mig-guidance"]
    two = ",".join(s["uuid"] for s in slices[:2])
    f = by_id(run_checks(checks, snap_of(cap, {"host.env": {"CUDA_VISIBLE_DEVICES": two}})))
    assert f["BWD-GPU-008"][0].status == "fail" and "2 MIG devices" in f["BWD-GPU-008"][0].message
    f = by_id(run_checks(checks, snap_of(cap, {"host.env": {"CUDA_VISIBLE_DEVICES": slices[0]["uuid"]}})))
    assert f["BWD-GPU-008"][0].status == "pass"
    f = by_id(run_checks(checks, snap_of(cap, {"host.env": {"CUDA_VISIBLE_DEVICES": slices[0]["uuid"]},
                                               "vllm.config": {"tensor_parallel_size": 2}})))
    assert f["BWD-GPU-008"][0].status == "fail"
    # MIG on RTX PRO needs R575
    old = capture([pro6000(mig=(1, 1), mig_devices=slices)], driver="570.133.07", cuda=12080)
    d = by_id(run_checks(checks, snap_of(old)))["BWD-DRV-002"][0]
    assert d.status == "fail" and "575.51.03" in d.message


def test_nvlink_and_fabric_faults(checks):
    degraded = [b200() for _ in range(7)] + [b200(nvlinks=[True] * 16 + [False] * 2)]
    f = by_id(run_checks(checks, snap_of(capture(degraded))))
    nv = [x for x in f["BWD-GPU-004"] if x.status == "fail"]
    assert len(nv) == 1 and nv[0].subject == "gpu7" and "degraded" in nv[0].message
    nofm = [b200(fabric={"state": 1, "status": 0, "clique_id": 0, "health_mask": 0}) for _ in range(8)]
    fm = by_id(run_checks(checks, snap_of(capture(nofm))))["BWD-GPU-010"][0]
    assert fm.status == "fail" and fm.root_cause == "fabric_manager_missing" and "fabric-manager.install" in fm.remedies


def test_memory_contention(checks):
    procs = [{"pid": 4242, "name": "python3", "type": "compute", "used_bytes": 20 << 30}]
    f = by_id(run_checks(checks, snap_of(capture([pro6000(processes=procs, used_mib=20 * 1024 + 300)]))))
    c = f["BWD-GPU-009"][0]
    assert c.status == "warn" and c.root_cause == "gpu_memory_contention" and "pid 4242" in c.message


def test_forward_compat(checks):
    env = {"LD_LIBRARY_PATH": "/usr/local/cuda/compat:/usr/lib"}
    f = by_id(run_checks(checks, snap_of(capture([rtx5090()]), {"host.env": env})))
    fc = f["BWD-DRV-004"][0]
    assert fc.status == "fail" and fc.root_cause == "driver_too_old_for_cuda" and "driver.remove-compat" in fc.remedies
    f = by_id(run_checks(checks, snap_of(capture([b200()]), {"host.env": env})))
    assert f["BWD-DRV-004"][0].status == "pass"
    f = by_id(run_checks(checks, snap_of(capture([b200()]), {"host.env": {"LD_LIBRARY_PATH": "/usr/lib"}})))
    assert f["BWD-DRV-004"][0].status == "pass"


def test_persistence_off_and_unknown_sku(checks):
    odd = device("NVIDIA Future GPU 9000", 0x4FFF, (12, 0), 65536, persistence=0)
    f = by_id(run_checks(checks, snap_of(capture([odd]))))
    assert f["BWD-GPU-006"][0].status == "warn" and f["BWD-GPU-006"][0].remedies == ["gpu.persistence-mode"]
    rec = f["BWD-GPU-001"][0]
    assert rec.status == "warn" and "12.0" in rec.message
    assert f["BWD-DRV-002"][0].status == "pass"  # judged by CC 12.0


def test_target_only(checks):
    snap = Snapshot()
    snap.set("target", {"query": "rtx-pro-6000", "name": "NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
                        "compute_capability": "12.0", "gpu": "rtx-pro-6000"}, "cli")
    snap.set("driver.version", "550.54.14", "nvidia-smi")
    f = by_id(run_checks(checks, snap))
    assert f["BWD-DRV-002"][0].status == "fail" and f["BWD-DRV-002"][0].subject == "target"
    assert f["BWD-GPU-001"][0].status == "pass" and "GDDR7" in f["BWD-GPU-001"][0].message
    assert "no NVLink" in f["BWD-GPU-004"][0].message
    assert statuses(run_checks(checks, snap), "BWD-GPU-003") == ["skip"]


def test_snapshot_fields_never_zero_for_unsupported():
    cap = capture([rtx5090()])
    g = Snapshot(replay_facts(copy.deepcopy(cap))).value("gpu.0")
    assert g["ecc"].reason == "NVMLError_NotSupported"
    assert g["fabric"].reason == "NVMLError_NotSupported"


@pytest.mark.parametrize("key,pci,driver,status", [
    ("rtx-pro-6000", "0x2bb1", "570.123.07", "pass"),
    ("rtx-pro-6000", "0x2bb1", "570.133.20", "pass"),
    ("rtx-pro-6000", "0x2bb1", "570.124.04", "fail"),  # numerically later, but its README does not list 0x2bb1
    ("rtx-pro-4000", "0x2c34", "570.169", "pass"),
    ("rtx-pro-4000", "0x2c33", "570.169", "fail"),  # the SFF id is first listed in 570.190
    ("rtx-pro-4000", "0x2c33", "570.190", "pass"),
    ("rtx-5090", "0x2b85", "570.86.16", "pass"),
    ("rtx-5090", "0x2b8c", "575.64.05", "fail"),  # the 5090 D v2 is first listed in 580.76.05
    ("rtx-5070-ti", "0x2c05", "570.123.01", "pass"),
    ("rtx-5060-ti", "0x2d04", "570.123.07", "fail"),  # first listed in 570.123.10
])
def test_first_listed_driver_is_not_a_numeric_floor(checks, key, pci, driver, status):
    spec = kb.find_gpu(key)
    snap = Snapshot()
    snap.set("gpu.0", {"name": spec.name, "compute_capability": spec.compute_capability, "pci_device_id": pci}, "nvml")
    snap.set("driver.version", driver, "nvml")
    f = by_id(run_checks(checks, snap))["BWD-DRV-002"][0]
    assert f.status == status, f.message
    if status == "fail":
        assert "does not list" in f.message and f.details["first_listed_driver"]
