"""CUDA binary-compatibility rules, Blackwell first."""

import pytest

from bwdoctor_checks._lib import compat as c


@pytest.mark.parametrize("sass,cc,runs", [
    ("sm_100", "10.0", True), ("sm_100", "10.3", True), ("sm_100", "12.0", False), ("sm_100", "12.1", False),
    ("sm_103", "10.0", False), ("sm_103", "10.3", True),
    ("sm_120", "12.0", True), ("sm_120", "12.1", True), ("sm_120", "10.0", False),
    ("sm_121", "12.0", False), ("sm_121", "12.1", True),
    ("sm_100a", "10.0", True), ("sm_100a", "10.3", False),
    ("sm_120a", "12.0", True), ("sm_120a", "12.1", False),
    ("sm_100f", "10.0", True), ("sm_100f", "10.3", True), ("sm_100f", "12.0", False),
    ("sm_120f", "12.0", True), ("sm_120f", "12.1", True), ("sm_103f", "10.0", False),
    ("sm_90a", "9.0", True), ("sm_90a", "12.0", False), ("sm_90", "12.0", False),
    ("sm_80", "8.6", True), ("sm_80", "8.9", True), ("sm_86", "8.0", False), ("sm_80", "9.0", False),
])
def test_sass(sass, cc, runs):
    assert c.sass_runs_on(sass, cc) is runs


@pytest.mark.parametrize("ptx,cc,ok", [
    ("compute_90", "12.0", True), ("compute_90", "10.0", True), ("compute_90", "8.9", False),
    ("compute_120", "12.1", True), ("compute_121", "12.0", False),
    ("compute_90a", "9.0", True), ("compute_90a", "12.0", False),
    ("compute_100f", "10.3", True), ("compute_100f", "12.0", False),
])
def test_ptx(ptx, cc, ok):
    assert c.ptx_jits_to(ptx, cc) is ok


def test_verdicts():
    assert c.verdict(["sm_80", "sm_90"], [], "12.0").verdict == c.NO_KERNEL
    assert c.verdict(["sm_80", "sm_90"], ["compute_90"], "12.0").verdict == c.PTX_JIT
    assert c.verdict(["sm_100", "sm_120"], [], "12.1").verdict == c.NATIVE
    assert c.verdict(["sm_90a"], [], "9.0").verdict == c.NATIVE
    assert c.verdict(["sm_90a"], [], "12.0").verdict == c.NO_KERNEL
    assert c.verdict(["sm_100a"], ["compute_100a"], "10.3").verdict == c.NO_KERNEL
    assert c.verdict([], [], "sm_120").cc == "12.0"
    with pytest.raises(ValueError):
        c.verdict([], [], "blackwell")


def test_explain_names_what_is_there():
    msg = c.explain("torch", ["sm_80", "sm_90"], ["compute_90a"], "12.0")
    assert msg.startswith("torch: no kernel for sm_120")
    assert "has sm_80, sm_90" in msg and "compute_90a cannot be JIT-compiled" in msg
    assert "slow first start" in c.explain("vllm", ["sm_80"], ["compute_80"], "12.0")
