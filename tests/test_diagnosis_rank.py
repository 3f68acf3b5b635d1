"""Diagnosis ranking: environment proof beats resemblance, evidence combines per cause, empty when
no fail/warn finding carries a root cause."""

from __future__ import annotations

from bwdoctor.diagnosis import diagnose
from bwdoctor.types import Finding


def F(fid: str, status: str, cause: str | None, conf: float | None, area: str | None = None, msg: str = "m",
      subject: str | None = None) -> Finding:
    return Finding(id=fid, title="t", area=area or fid.split("-")[1], status=status, message=msg, root_cause=cause,
                   confidence=conf, subject=subject)


def test_empty_when_nothing_blames_the_environment():
    assert diagnose([]) == []
    assert diagnose([F("BWD-GPU-001", "pass", None, None), F("BWD-LOG-014", "warn", "none_env_ok", 0.2),
                     F("BWD-LOG-005", "warn", None, 0.5), F("BWD-X-001", "error", "gpu_health", 0.9),
                     F("BWD-X-002", "skip", "mig", 0.9)]) == []


def test_environment_proof_ranks_above_resemblance():
    d = diagnose([F("BWD-LOG-002", "fail", "arch_not_in_vllm_wheel", 0.55, msg="no kernel image"),
                  F("BWD-STACK-001", "fail", "arch_not_in_torch_wheel", 0.95, msg="torch has no sm_120")])
    assert [x["root_cause"] for x in d] == ["arch_not_in_torch_wheel", "arch_not_in_vllm_wheel"]
    assert d[0]["findings"] == ["BWD-STACK-001"] and d[0]["summary"].startswith("torch has no sm_120")
    assert 0 < d[1]["confidence"] < d[0]["confidence"] <= 1


def test_evidence_for_one_cause_combines_with_diminishing_returns():
    one = diagnose([F("BWD-LOG-003", "fail", "driver_too_old_for_cuda", 0.6)])[0]["confidence"]
    two = diagnose([F("BWD-LOG-003", "fail", "driver_too_old_for_cuda", 0.6),
                    F("BWD-DRV-002", "fail", "driver_too_old_for_cuda", 0.6)])[0]
    assert two["confidence"] > one
    assert two["findings"] == ["BWD-DRV-002", "BWD-LOG-003"]
    # three weak resemblances do not beat one strong environment proof
    d = diagnose([F(f"BWD-LOG-00{i}", "fail", "kv_cache_oom", 0.5) for i in range(3)]
                 + [F("BWD-GPU-003", "fail", "gpu_memory_contention", 0.85)])
    assert d[0]["root_cause"] == "gpu_memory_contention"


def test_warn_counts_less_than_fail_and_weak_causes_are_dropped():
    d = diagnose([F("BWD-A-001", "warn", "shm_too_small", 0.8), F("BWD-B-001", "fail", "nccl_p2p", 0.6)])
    assert d[0]["root_cause"] == "nccl_p2p"
    assert diagnose([F("BWD-A-001", "warn", "torch_vllm_abi_mismatch", 0.3)]) == []


def test_ties_prefer_environment_checks_and_subjects_are_kept():
    d = diagnose([F("BWD-LOG-009", "fail", "fp8_unsupported_on_gpu", 0.8),
                  F("BWD-FP8-001", "fail", "dtype_unsupported_on_gpu", 0.8, subject="gpu0")])
    assert d[0]["root_cause"] == "dtype_unsupported_on_gpu" and d[0]["findings"] == ["BWD-FP8-001[gpu0]"]


def test_accepts_finding_dicts_and_ignores_garbage():
    d = diagnose([{"id": "BWD-LOG-001", "status": "fail", "root_cause": "arch_not_in_torch_wheel", "confidence": "0.9",
                   "area": "LOG", "message": "x"}, {"status": "fail"}, {"id": "BWD-Y-001", "status": "fail",
                                                                        "root_cause": "not-a-label", "confidence": 1}])
    assert [x["root_cause"] for x in d] == ["arch_not_in_torch_wheel"]
