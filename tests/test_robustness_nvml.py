"""NVML that is there but broken is a failure with the loader's message ("not found" only when it
is absent); device nodes or /proc/driver/nvidia without a working NVML is a failure; the GPU lock
file in $TMPDIR never follows a link another user planted."""

from __future__ import annotations

import json
import os
import sys

import pytest

from bwdoctor import Unavailable
from bwdoctor_checks._lib.torchprobe import gpu_lock, open_private_lock
from bwdoctor_checks.collectors.nvml import driver_library_problem, gpu_device_evidence, no_nvml_facts

from conftest import run_cli


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BWDOCTOR_")}
    env.update(extra)
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the dynamic loader of Linux")
@pytest.mark.parametrize("content,said", [(b"", "file too short"), (b"\x7fELF" + b"\0" * 60, ""),
                                          (b"not a library at all" * 10, "invalid ELF header")])
def test_corrupt_nvml_library_is_a_failure_not_missing(tmp_path, content, said):
    (tmp_path / "libnvidia-ml.so.1").write_bytes(content)
    code, out, err = run_cli(["run", "--select", "BWD-DRV-001", "--format", "json"],
                             env=_env(LD_LIBRARY_PATH=str(tmp_path)))
    assert code == 1, out + err
    finding = next(f for f in json.loads(out)["findings"] if f["id"] == "BWD-DRV-001")
    assert finding["status"] == "fail"
    assert "not found" not in finding["message"] and "cannot be loaded" in finding["message"]
    assert said in finding["message"]


def test_absent_library_without_a_gpu_is_not_judged():
    with pytest.raises(Unavailable, match="not found"):
        no_nvml_facts("absent", "libnvidia-ml.so.1: cannot open shared object file: No such file or directory", [])


def test_device_nodes_without_nvml_is_a_failure(tmp_path):
    (tmp_path / "dev").mkdir()
    for n in ("nvidia0", "nvidiactl", "nvidia-uvm", "null"):
        (tmp_path / "dev" / n).write_text("")
    (tmp_path / "proc" / "driver" / "nvidia").mkdir(parents=True)
    devices = gpu_device_evidence(str(tmp_path))
    assert devices == ["/dev/nvidia0", "/dev/nvidiactl", "/proc/driver/nvidia"]
    facts = no_nvml_facts("absent", "libnvidia-ml.so.1: cannot open shared object file: No such file or directory",
                          devices)
    status = facts[0].value
    assert status["ok"] is False and "/dev/nvidia0" in status["message"]
    from bwdoctor.types import Snapshot
    from bwdoctor_checks.checks.gpu import check_nvml_status

    snap = Snapshot()
    snap.add(facts[0])
    out = check_nvml_status(snap)
    assert out.status == "fail" and out.root_cause == "driver_library_mismatch"


def test_library_problem_kinds(tmp_path):
    assert driver_library_problem(str(tmp_path / "nothing.so"))[0] == "absent"
    (tmp_path / "empty.so").write_bytes(b"")
    kind, msg = driver_library_problem(str(tmp_path / "empty.so"))
    assert kind == "broken" and "too short" in msg


def test_gpu_lock_never_follows_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    lock = tmp_path / "bwdoctor-gpu.lock"
    lock.symlink_to(victim)
    assert open_private_lock(str(lock)) is None
    with gpu_lock(0.5, str(lock)) as waited:
        assert waited == 0.0
    assert victim.read_text() == "precious\n" and lock.is_symlink()
    other = tmp_path / "other.lock"
    other.write_text("")
    if os.geteuid() == 0:
        os.chown(other, 4321, 4321)
        assert open_private_lock(str(other)) is None  # a file another user made
    mine = tmp_path / "mine.lock"
    fh = open_private_lock(str(mine))
    assert fh is not None and (mine.stat().st_mode & 0o777) == 0o600
    fh.close()
