"""BWD-STACK-002 on pre-Volta GPUs: no vLLM release has kernels below compute capability 7.0, so a
Pascal GPU or --target fails the arch check instead of being skipped for lack of a per-release rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from bwdoctor import Snapshot
from bwdoctor.runner import run_checks
from bwdoctor_checks.checks import stack as stack_checks

from conftest import make_snapshot

BIN = Path(__file__).parent / "data" / "cudabin"


def _spec():
    (spec,) = [s for s in stack_checks.bwdoctor_checks() if s.id == "BWD-STACK-002"]
    return spec


def _snap(vllm: dict | None, gpus: list[dict] = (), target: str | None = None, **facts) -> Snapshot:
    return make_snapshot({"vllm": vllm} if vllm is not None else {}, gpus=gpus, target=target, **facts)


def _run(snap: Snapshot):
    return run_checks([_spec()], snap)


P40 = {"name": "Tesla P40", "compute_capability": "6.1"}
P100 = {"name": "Tesla P100-PCIE-16GB", "compute_capability": "6.0"}
V100 = {"name": "Tesla V100-SXM2-32GB", "compute_capability": "7.0"}
T4 = {"name": "Tesla T4", "compute_capability": "7.5"}


def test_p40_with_a_version_only_vllm_fails():
    (f,) = _run(_snap({"version": "0.6.2"}, gpus=[P40]))
    assert f.status == "fail" and f.root_cause == "arch_not_in_vllm_wheel"
    assert f.subject == "gpu0" and f.severity == "critical"
    assert "no vLLM build has sm_61 kernels" in f.message and "compute capability 7.0+" in f.message
    assert f.details["vllm_supported"] is False and f.details["cc"] == "6.1"
    assert f.remedies == ["vllm.install-supported"]


@pytest.mark.parametrize("target,sm", [("p100-pcie-16gb", "sm_60"), ("Tesla P40", "sm_61"), ("sm_60", "sm_60"),
                                       ("GTX 1080 Ti", "sm_61"), ("6.1", "sm_61")])
def test_prevolta_target_without_gpus_fails(target, sm):
    (f,) = _run(_snap({"version": "0.11.0"}, target=target))
    assert f.status == "fail" and f.subject == "target"
    assert f"no vLLM build has {sm} kernels" in f.message


def test_unknown_vllm_version_still_fails():
    (f,) = _run(_snap({"version": None}, gpus=[P100]))
    assert f.status == "fail" and "no vLLM release can run here" in f.message and "None" not in f.message
    assert "sm_60" in f.message


def test_scanned_release_wheel_on_p40_fails():
    sass = ["sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90"]
    scan = {"files": [{"path": "/site/vllm/_C.abi3.so", "sass": sass, "ptx": ["compute_90"]}], "sass": sass,
            "ptx": ["compute_90"]}
    (f,) = _run(_snap({"version": "0.10.0"}, gpus=[P40], cudabin__vllm=scan))
    assert f.status == "fail" and "no vLLM build has sm_61 kernels" in f.message
    assert "cudabin.vllm" in [e.key for e in f.evidence]


def test_source_build_with_sm61_kernels_is_a_warning():
    sass = ["sm_61", "sm_70"]
    scan = {"files": [{"path": "/site/vllm/_C.abi3.so", "sass": sass, "ptx": []}], "sass": sass, "ptx": []}
    (f,) = _run(_snap({"version": "0.6.3+custom"}, gpus=[P40], cudabin__vllm=scan))
    assert f.status == "warn" and "source build" in f.message and "7.0+" in f.message


def test_collect_env_arch_list_on_p4_fails_with_the_prevolta_reason():
    (f,) = _run(_snap({"version": "0.9.2"}, target="Tesla P4", vllm__cuda_archs=["7.0", "7.5", "8.0", "9.0"]))
    assert f.status == "fail" and "no vLLM build has sm_61 kernels" in f.message


def test_mixed_volta_and_pascal_host_judges_each():
    fs = _run(_snap({"version": "0.9.0"}, gpus=[V100, P40, P40]))
    by_subject = {f.subject: f for f in fs}
    assert set(by_subject) == {"gpu0", "gpu1"}  # one outcome per distinct compute capability
    assert by_subject["gpu0"].status == "pass"
    assert by_subject["gpu1"].status == "fail" and "sm_61" in by_subject["gpu1"].message


def test_volta_and_turing_are_not_affected():
    (f,) = _run(_snap({"version": "0.9.0"}, gpus=[T4]))
    assert f.status == "pass"
    (f,) = _run(_snap({"version": "0.5.0"}, gpus=[V100]))
    assert f.status == "fail" and "predates" in f.message


def test_cpu_build_message_wins_over_the_arch_reason():
    (f,) = _run(_snap({"version": "0.9.0", "build": "cpu"}, gpus=[P40]))
    assert f.status == "fail" and "CPU build" in f.message


def test_real_extension_scan_on_a_pascal_target(tmp_path):
    """Collect a fake site-packages with a real nvcc-built vLLM extension, then judge a P40 target."""
    from test_stack_scenarios import snapshot_of, vllm_dist

    vllm_dist(tmp_path, "0.9.0", BIN / "vllm_no_sm120.so", "torch==2.7.0")
    snap = snapshot_of(tmp_path, target="p40")
    assert snap.value("cudabin.vllm")["files"]
    (f,) = run_checks([_spec()], snap)
    assert f.status == "fail" and f.root_cause == "arch_not_in_vllm_wheel"
    assert "no vLLM build has sm_61 kernels" in f.message
