import json

import pytest

from bwdoctor.types import (
    Fact,
    Finding,
    FixPlan,
    FixStep,
    Report,
    Snapshot,
    Unsupported,
    from_jsonable,
    to_jsonable,
)


def sample_snapshot() -> Snapshot:
    snap = Snapshot(meta={"host": "x"})
    snap.set("driver.version", "580.159.04", "nvml")
    snap.set("gpu.0", {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0",
                       "nvlink": [{"link": 0, "active": Unsupported("NVMLError_NotSupported")}],
                       "pcie": {"gen_current": 5, "width_current": 16}, "tuple": (1, 2)}, "nvml")
    snap.set("packages", {"torch": {"version": "2.11.0+cu130"}}, "importlib.metadata")
    snap.mark_missing("probe.*", "runs at --level full")
    return snap


def test_snapshot_round_trips_losslessly_through_json():
    snap = sample_snapshot()
    text = snap.to_json()
    back = Snapshot.from_json(text)
    assert back == snap
    assert back.value("gpu.0")["nvlink"][0]["active"] == Unsupported("NVMLError_NotSupported")
    assert back.value("gpu.0")["tuple"] == [1, 2]
    assert json.loads(back.to_json()) == json.loads(text)


def test_unsupported_is_never_zero_or_true():
    u = Unsupported("NVMLError_NotSupported")
    assert not u
    assert u != 0 and u is not None
    assert to_jsonable(u) == {"__unsupported__": "NVMLError_NotSupported"}
    assert from_jsonable({"__unsupported__": "x"}) == Unsupported("x")


def test_fact_rejects_non_json_values():
    with pytest.raises(TypeError):
        Fact("x", object(), "test")


def test_dict_facts_merge_and_record_both_sources():
    snap = Snapshot()
    snap.set("host.env", {"A": "1"}, ".env:line 1")
    snap.set("host.env", {"B": "2"}, "compose:line 4")
    assert snap.value("host.env") == {"A": "1", "B": "2"}
    assert snap.get("host.env").source == ".env:line 1; compose:line 4"


def test_missing_reasons_follow_patterns_and_prefixes():
    snap = Snapshot()
    snap.mark_missing("gpu.*", "no NVIDIA driver: libnvidia-ml.so.1 not found")
    snap.mark_missing("torch", "torch is not installed")
    assert snap.why_missing("gpu.0") == "no NVIDIA driver: libnvidia-ml.so.1 not found"
    assert snap.why_missing("torch.cuda") == "torch is not installed"
    assert snap.why_missing("other") == "no facts about other were collected or given"
    assert snap.why_missing("config.base_image") == \
        "no facts about the serving configuration (base image) were collected or given"
    assert not snap.has("gpu.*")
    snap.set("gpu.1", {"name": "x"}, "t")
    assert snap.has("gpu.*") and snap.gpus() == [(1, {"name": "x"})]


def test_snapshot_rejects_newer_or_malformed_schema():
    with pytest.raises(ValueError):
        Snapshot.from_dict({"schema_version": 99, "facts": []})
    with pytest.raises(ValueError):
        Snapshot.from_dict({"schema_version": 1, "facts": "nope"})
    with pytest.raises(ValueError):
        Snapshot.from_dict({"schema_version": 1, "facts": [{"value": 1}]})


def test_report_round_trips():
    snap = sample_snapshot()
    f = Finding(id="BWD-GPU-001", title="t", area="GPU", status="fail", message="m", severity="high",
                subject="gpu0", evidence=[snap.get("driver.version")], root_cause="driver_too_old_for_cuda",
                remedies=["driver.upgrade"], confidence=0.9, details={"x": [1]})
    plan = FixPlan("driver.upgrade", "Upgrade", [f.key], [FixStep("do", ["apt-get", "install", "x"], ["true"], True)])
    rep = Report(mode="live", snapshot=snap, findings=[f], plans=[plan], diagnosis=[{"root_cause": "x"}],
                 tool_version="0.1.0", created="now")
    back = Report.from_dict(json.loads(json.dumps(rep.to_dict())))
    assert back.to_dict() == rep.to_dict()
    assert back.findings[0].key == "BWD-GPU-001[gpu0]"
    assert rep.summary()["fail"] == 1
