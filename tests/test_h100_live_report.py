"""A report captured by `bwdoctor run --level quick --format json` on a real H100 SXM host
(driver 580.159.04, torch 2.11.0+cu130), re-checked with today's checks through `run --from`."""

import json

from conftest import DATA, run_cli

REPORT = DATA / "gpu" / "h100-live-report.json"


def findings(args):
    code, out, err = run_cli(["run", "--from", str(REPORT), "--format", "json", *args])
    assert "Traceback" not in err
    return code, json.loads(out)


def test_the_h100_is_reported_correctly_with_no_false_failure():
    code, rep = findings([])
    assert code == 0
    facts = {f["key"]: f["value"] for f in rep["snapshot"]["facts"]}
    assert facts["gpu.0"]["name"] == "NVIDIA H100 80GB HBM3"
    assert facts["gpu.0"]["compute_capability"] == "9.0"
    assert facts["driver.version"] == "580.159.04" and facts["driver.cuda_version"] == "13.0"
    bad = [(f["id"], f["message"]) for f in rep["findings"] if f["status"] in ("fail", "warn", "error")]
    assert bad == []
    by = {(f["id"], f["subject"]): f for f in rep["findings"]}
    assert by[("BWD-STACK-001", "gpu0")]["status"] == "pass" and "native" in by[("BWD-STACK-001", "gpu0")]["message"]
    assert by[("BWD-GPU-003", "gpu0")]["status"] == "pass"  # PCIe Gen5 x16


def test_target_judges_the_stack_for_a_blackwell_workstation_instead_of_the_h100():
    code, rep = findings(["--target", "sm_120"])
    by = {(f["id"], f["subject"]): f for f in rep["findings"]}
    stack = by[("BWD-STACK-001", "target")]
    assert stack["status"] == "pass" and "sm_120" in stack["message"]
    assert ("BWD-STACK-001", "gpu0") not in by
    # the H100 itself is still in the facts, but its hardware checks are not judged for the target
    assert by[("BWD-GPU-003", None)]["status"] == "skip"
