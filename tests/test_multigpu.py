"""Multi-GPU checks on recorded facts (2, 4 and 8 GPUs: PCIe-only, PCIe without P2P, NVSwitch), the
IOMMU/ACS readers on a recorded /sys tree, NCCL shadowing, and the all-reduce harness itself run
for real with two gloo processes on the CPU (a hang injected ends at its deadline as one finding)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bwdoctor import RunOptions, Snapshot
from bwdoctor.runner import run_checks
from bwdoctor_checks.checks import mgpu
from bwdoctor_checks.collectors import multigpu

from conftest import make_snapshot

SPECS = {s.id: s for s in mgpu.bwdoctor_checks()}


def gpu(name: str, pci: str, gen: int = 5, width: int = 16) -> dict:
    return {"name": name, "pci_device_id": pci, "pcie": {"gen_max": gen, "width_max": width}}


def machine(names: list[tuple[str, str]], nvlink: bool, gen: int = 5, **facts) -> Snapshot:
    pairs = [{"a": a, "b": b, "common_ancestor": "system" if not nvlink else "board",
              "p2p": {"read": "ok", "write": "ok", "nvlink": "ok" if nvlink else "not_supported"}}
             for a in range(len(names)) for b in range(a + 1, len(names))]
    nvml = make_snapshot({"gpu.count": len(names), "gpu.topology": {"pairs": pairs}},
                         gpus=[gpu(name, pci, gen=gen) for name, pci in names], source="nvml")
    return make_snapshot(base=nvml, source="recorded", **facts)


def p2p(n: int, gbs: float, can_access: bool = True, verified: bool = True, bad: tuple[int, int] | None = None) -> dict:
    pairs = []
    for s in range(n):
        for d in range(n):
            if s != d:
                ok = verified if bad is None else (s, d) != bad
                pairs.append({"src": s, "dst": d, "can_access": can_access, "verified": ok, "gbs": gbs,
                              "bytes": 256 << 20})
    return {"device_count": n, "pairs": pairs, "timed_out": False, "deadline_s": 120.0}


def allreduce(n: int, busbw: float, **kw) -> dict:
    sizes = [{"bytes": (1 << 20) << k, "seconds": 0.01, "algbw_gbs": busbw / 2, "busbw_gbs": busbw * (k + 1) / 11,
              "correct": True} for k in range(11)]
    value = {"backend": "nccl", "world_size": n, "sizes": sizes, "nccl_version": "2.27.3", "ok": True,
             "timed_out": False, "deadline_s": 240.0, "stage": "done"}
    value.update(kw)
    return value


def judge(snap: Snapshot, *ids: str) -> dict[str, list]:
    findings = run_checks([SPECS[i] for i in ids], snap)
    out: dict[str, list] = {}
    for f in findings:
        out.setdefault(f.id, []).append(f)
    return out


def statuses(findings) -> set[str]:
    return {f.status for f in findings}


RTX_PRO = ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "0x2bb1")
L40S = ("NVIDIA L40S", "0x26b9")
H100 = ("NVIDIA H100 80GB HBM3", "0x2330")


# ------------------------------------------------------------------ 2 GPUs, PCIe only (RTX PRO 6000)


def test_two_pcie_gpus_broken_p2p_behind_acs_redirect():
    snap = machine([RTX_PRO, RTX_PRO], nvlink=False,
                   probe__p2p=p2p(2, 3.1, bad=(0, 1)),
                   host__iommu={"groups": 84, "enabled": True, "passthrough": None, "cmdline": ["intel_iommu=on"]},
                   host__pci_acs={"gpus": ["0000:41:00.0", "0000:42:00.0"], "bridges": [
                       {"bdf": "0000:40:01.1", "gpus": ["0000:41:00.0", "0000:42:00.0"], "readable": True,
                        "acs": {"source_validation": True, "request_redirect": True, "completion_redirect": True,
                                "upstream_forwarding": True, "egress_control": False, "translation_blocking": False,
                                "direct_translated": False}}]})
    res = judge(snap, "BWD-MGPU-001", "BWD-MGPU-002", "BWD-MGPU-004")
    p2p_fail = [f for f in res["BWD-MGPU-001"] if f.status == "fail"]
    assert len(p2p_fail) == 1 and "wrong data" in p2p_fail[0].message and p2p_fail[0].root_cause == "nccl_p2p"
    assert "nccl.p2p-disable" in p2p_fail[0].remedies
    # 3.1 GB/s over a gen5 x16 link (63 GB/s one way) is the root-complex detour
    bw = [f for f in res["BWD-MGPU-002"] if f.status == "warn"]
    assert bw and "PCIe gen5 x16" in bw[0].message and "ACS" in bw[0].message
    acs = {f.subject: f for f in res["BWD-MGPU-004"]}
    assert acs["acs"].status == "warn" and "0000:40:01.1" in acs["acs"].message
    assert acs["iommu"].status == "warn" and "iommu=pt" in acs["iommu"].message


def test_two_pcie_gpus_allreduce_hang_is_one_named_finding():
    rows = allreduce(2, 40.0)["sizes"][:3]
    snap = machine([RTX_PRO, RTX_PRO], nvlink=False,
                   probe__allreduce={"backend": "nccl", "world_size": 2, "sizes": rows, "ok": False,
                                     "timed_out": True, "deadline_s": 240.0, "stage": "all_reduce 16 MiB"})
    (f,) = judge(snap, "BWD-MGPU-003")["BWD-MGPU-003"]
    assert f.status == "fail" and f.root_cause == "nccl_p2p"
    assert "all_reduce 16 MiB" in f.message and "240 s" in f.message and "1 MiB, 2 MiB, 4 MiB" in f.message


def test_two_pcie_gpus_healthy():
    snap = machine([RTX_PRO, RTX_PRO], nvlink=False, probe__p2p=p2p(2, 52.0),
                   probe__allreduce=allreduce(2, 45.0),
                   host__iommu={"groups": 0, "enabled": False, "passthrough": None, "cmdline": []})
    res = judge(snap, "BWD-MGPU-001", "BWD-MGPU-002", "BWD-MGPU-003", "BWD-MGPU-004")
    assert all(statuses(v) == {"pass"} for v in res.values()), {k: [f.message for f in v] for k, v in res.items()}
    (ar,) = res["BWD-MGPU-003"]
    assert ar.details["roofline_gbs"] == pytest.approx(63.0, rel=0.01) and 60 < ar.details["percent"] < 80


# ------------------------------------------------------------------ 4 GPUs, PCIe without P2P (L40S)


def test_four_gpus_without_p2p_warn_low_not_fail():
    snap = machine([L40S] * 4, nvlink=False, gen=4, probe__p2p=p2p(4, 0.0, can_access=False),
                   probe__allreduce=allreduce(4, 12.0))
    res = judge(snap, "BWD-MGPU-001", "BWD-MGPU-003")
    assert statuses(res["BWD-MGPU-001"]) == {"warn"} and len(res["BWD-MGPU-001"]) == 12
    assert all(f.severity == "low" and "--disable-custom-all-reduce" in f.message for f in res["BWD-MGPU-001"])
    (ar,) = res["BWD-MGPU-003"]
    assert ar.status == "warn" and "gen4 x16" in ar.message  # 12 GB/s of 31.5 GB/s one way


# ------------------------------------------------------------------ 8 GPUs, NVSwitch (H100 SXM)


def test_eight_nvswitch_gpus_judged_against_nvlink():
    snap = machine([H100] * 8, nvlink=True, probe__p2p=p2p(8, 370.0), probe__allreduce=allreduce(8, 360.0))
    res = judge(snap, "BWD-MGPU-001", "BWD-MGPU-002", "BWD-MGPU-003")
    assert statuses(res["BWD-MGPU-001"]) == {"pass"} and len(res["BWD-MGPU-001"]) == 56
    assert statuses(res["BWD-MGPU-002"]) == {"pass"}
    assert res["BWD-MGPU-002"][0].details["roofline_gbs"] == 450
    (ar,) = res["BWD-MGPU-003"]
    assert ar.status == "pass" and "NVLink" in ar.message and ar.details["percent"] == pytest.approx(80.0)


def test_eight_nvswitch_gpus_degraded_nvlink_warns():
    snap = machine([H100] * 8, nvlink=True, probe__p2p=p2p(8, 90.0), probe__allreduce=allreduce(8, 60.0))
    res = judge(snap, "BWD-MGPU-002", "BWD-MGPU-003")
    assert statuses(res["BWD-MGPU-002"]) == {"warn"} and "nvlink -s" in res["BWD-MGPU-002"][0].message
    assert res["BWD-MGPU-003"][0].status == "warn"


def test_allreduce_wrong_sums_fail():
    ar = allreduce(2, 45.0)
    ar["sizes"][-1]["correct"] = False
    snap = machine([RTX_PRO, RTX_PRO], nvlink=False, probe__allreduce=ar)
    (f,) = judge(snap, "BWD-MGPU-003")["BWD-MGPU-003"]
    assert f.status == "fail" and "wrong sums" in f.message


def test_gloo_dry_run_is_not_judged_against_a_gpu_link():
    ar = allreduce(2, 1.5, backend="gloo", device="cpu")
    snap = machine([RTX_PRO, RTX_PRO], nvlink=False, probe__allreduce=ar)
    (f,) = judge(snap, "BWD-MGPU-003")["BWD-MGPU-003"]
    assert f.status == "skip" and "gloo" in f.message


# ------------------------------------------------------------------ NCCL shadowing


def test_older_system_nccl_in_ld_library_path_fails():
    snap = machine([RTX_PRO, RTX_PRO], nvlink=False, nccl__version="2.27.3", nccl__libraries={"libraries": [
        {"path": "/usr/local/nccl/lib/libnccl.so.2", "origin": "LD_LIBRARY_PATH", "version": "2.21.5"}]})
    (f,) = judge(snap, "BWD-MGPU-005")["BWD-MGPU-005"]
    assert f.status == "fail" and f.root_cause == "nccl_version_mismatch" and "2.21.5" in f.message
    assert f.remedies == ["nccl.unshadow"]


def test_system_nccl_only_in_loader_cache_passes():
    snap = machine([RTX_PRO], nvlink=False, nccl__version="2.27.3", nccl__libraries={"libraries": [
        {"path": "/usr/lib/x86_64-linux-gnu/libnccl.so.2", "origin": "ld.so.cache", "version": "2.18.1"}]})
    (f,) = judge(snap, "BWD-MGPU-005")["BWD-MGPU-005"]
    assert f.status == "pass"


def test_nccl_libraries_reader_finds_ld_library_path_copy(tmp_path):
    lib = tmp_path / "libnccl.so.2"
    lib.write_bytes(b"\0ELF junk NCCL version 2.19.3+cuda12.2\0")
    found = multigpu.nccl_libraries({"LD_LIBRARY_PATH": f"/nonexistent:{tmp_path}"}, [])
    assert found["libraries"] == [{"path": str(lib), "origin": "LD_LIBRARY_PATH", "version": "2.19.3"}]


# ------------------------------------------------------------------ /sys readers on a recorded tree


def _config_with_acs(ctrl: int) -> bytes:
    cfg = bytearray(4096)
    # extended capability list: AER (0x0001) at 0x100 -> ACS (0x000d) at 0x148 -> end
    cfg[0x100:0x104] = (0x0001 | (1 << 16) | (0x148 << 20)).to_bytes(4, "little")
    cfg[0x148:0x14C] = (0x000D | (1 << 16) | (0 << 20)).to_bytes(4, "little")
    cfg[0x14C:0x14E] = (0x007F).to_bytes(2, "little")  # capabilities
    cfg[0x14E:0x150] = ctrl.to_bytes(2, "little")
    return bytes(cfg)


def test_acs_control_bits_from_config_space():
    bits = multigpu.acs_control(_config_with_acs(0b0001_1101))
    assert bits == {"source_validation": True, "translation_blocking": False, "request_redirect": True,
                    "completion_redirect": True, "upstream_forwarding": True, "egress_control": False,
                    "direct_translated": False}
    assert multigpu.acs_control(bytes(4096)) is None
    assert multigpu.acs_control(b"\xff" * 256) is None


def _sys_tree(root: Path, readable: bool) -> None:
    devs = root / "sys" / "devices" / "pci0000:40" / "0000:40:01.1"
    for gpu_bdf in ("0000:41:00.0", "0000:42:00.0"):
        d = devs / "0000:41:00.0" if gpu_bdf == "0000:41:00.0" else devs / gpu_bdf
        d.mkdir(parents=True, exist_ok=True)
        (d / "vendor").write_text("0x10de\n")
        (d / "class").write_text("0x030200\n")
    (devs / "config").write_bytes(_config_with_acs(0b0000_1100) if readable else _config_with_acs(0b1100)[:256])
    bus = root / "sys" / "bus" / "pci" / "devices"
    bus.mkdir(parents=True)
    for bdf in ("0000:40:01.1", "0000:41:00.0", "0000:42:00.0"):
        target = devs if bdf == "0000:40:01.1" else devs / bdf
        os.symlink(os.path.relpath(target, bus), bus / bdf)
    (devs / "vendor").write_text("0x8086\n")
    (devs / "class").write_text("0x060400\n")
    groups = root / "sys" / "kernel" / "iommu_groups"
    for i in range(3):
        (groups / str(i)).mkdir(parents=True)
    (root / "proc").mkdir()
    (root / "proc" / "cmdline").write_text("BOOT_IMAGE=/vmlinuz ro amd_iommu=on quiet\n")


def test_recorded_sys_tree_gives_iommu_and_acs_facts(tmp_path):
    _sys_tree(tmp_path, readable=True)
    facts = {f.key: f.value for f in multigpu.collect_pcie(RunOptions(extra={"sys_root": str(tmp_path)}))}
    assert facts["host.iommu"] == {"groups": 3, "enabled": True, "passthrough": None, "cmdline": ["amd_iommu=on"]}
    acs = facts["host.pci_acs"]
    assert acs["gpus"] == ["0000:41:00.0", "0000:42:00.0"]
    (bridge,) = acs["bridges"]
    assert bridge["bdf"] == "0000:40:01.1" and bridge["gpus"] == ["0000:41:00.0", "0000:42:00.0"]
    assert bridge["acs"]["request_redirect"] and bridge["acs"]["completion_redirect"]


def test_unreadable_config_space_says_so(tmp_path):
    _sys_tree(tmp_path, readable=False)
    facts = {f.key: f.value for f in multigpu.collect_pcie(RunOptions(extra={"sys_root": str(tmp_path)}))}
    snap = machine([RTX_PRO, RTX_PRO], nvlink=False, host__pci_acs=facts["host.pci_acs"],
                   host__iommu={"groups": 3, "enabled": True, "passthrough": True, "cmdline": ["iommu=pt"]})
    (f,) = judge(snap, "BWD-MGPU-004")["BWD-MGPU-004"]
    assert f.status == "skip" and "needs root" in f.message


# ------------------------------------------------------------------ the harness, for real (gloo on CPU)


def _torch_python() -> str | None:
    py = os.environ.get("BWDOCTOR_VLLM_PYTHON")
    return py if py and os.access(py, os.X_OK) else None


@pytest.mark.vllm
def test_allreduce_harness_gloo_dry_run_and_injected_hang():
    py = _torch_python()
    if py is None:
        if os.environ.get("BWDOCTOR_REQUIRE_VLLM"):
            pytest.fail("BWDOCTOR_VLLM_PYTHON is required here")
        pytest.skip("needs an interpreter with torch (BWDOCTOR_VLLM_PYTHON)")
    base = {"mgpu_backend": "gloo", "mgpu_device": "cpu", "mgpu_world_size": 2, "mgpu_trials": 2,
            "mgpu_sizes": [1 << 20, 4 << 20], "torch_python": py}
    (fact,) = multigpu.collect_allreduce(RunOptions(extra=dict(base, mgpu_timeout=90)))
    value = fact.value
    assert value["ok"] and value["backend"] == "gloo" and [r["bytes"] for r in value["sizes"]] == [1 << 20, 4 << 20]
    assert all(r["correct"] and r["busbw_gbs"] > 0 for r in value["sizes"])

    (hung,) = multigpu.collect_allreduce(RunOptions(extra=dict(base, mgpu_timeout=20, mgpu_hang_rank=1,
                                                                mgpu_hang_at_bytes=4 << 20)))
    assert hung.value["timed_out"] and hung.value["stage"] == "all_reduce 4 MiB"
    snap = machine([RTX_PRO, RTX_PRO], nvlink=False, probe__allreduce=hung.value)
    (f,) = judge(snap, "BWD-MGPU-003")["BWD-MGPU-003"]
    assert f.status == "fail" and "all_reduce 4 MiB" in f.message and "20 s" in f.message
