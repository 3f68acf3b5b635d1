"""An inconclusive warning (low severity) must not name a root cause on its own."""

from __future__ import annotations

from bwdoctor.diagnosis import diagnose
from bwdoctor.types import Finding


def _f(fid: str, status: str, cause: str, conf: float, severity: str = "warning") -> Finding:
    return Finding(id=fid, title="t", area=fid.split("-")[1], status=status, message=fid, root_cause=cause,
                   confidence=conf, severity=severity)


def test_low_severity_warning_alone_names_no_cause():
    assert diagnose([_f("BWD-DRV-002", "warn", "driver_too_old_for_cuda", 0.95, "low")]) == []


def test_low_severity_warning_does_not_beat_a_real_failure():
    d = diagnose([_f("BWD-DRV-002", "warn", "driver_too_old_for_cuda", 0.95, "low"),
                  _f("BWD-LOG-006", "fail", "flashinfer_jit_toolchain", 0.6)])
    assert [x["root_cause"] for x in d] == ["flashinfer_jit_toolchain"]


def test_ordinary_warning_still_counts():
    d = diagnose([_f("BWD-ENV-002", "warn", "mig", 0.5)])
    assert d and d[0]["root_cause"] == "mig"
