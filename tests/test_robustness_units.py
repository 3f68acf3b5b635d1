"""Host building blocks under hostile input, in process (fast)."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from bwdoctor import cli
from bwdoctor.isolation import user_interrupted
from bwdoctor.runner import load_evidence
from bwdoctor.types import Evidence, Report


def test_lines_stream_a_huge_line_in_bounded_memory(tmp_path: Path):
    path = tmp_path / "one-line.log"
    with open(path, "wb") as fh:
        fh.write(b"INFO first\n")
        for _ in range(40):
            fh.write(b"A" * (1 << 20))  # 40 MiB without a newline
        fh.write(b"\nERROR last\r\n")
    ev = load_evidence(path)
    tracemalloc.start()
    lines = list(ev.lines())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert lines[0] == "INFO first" and lines[-1] == "ERROR last"
    assert len(lines) == 3 and len(lines[1]) == Evidence.LINE_LIMIT
    assert peak < 8 * 1024 * 1024, peak


def test_lines_keep_line_boundaries_and_odd_bytes(tmp_path: Path):
    path = tmp_path / "odd.log"
    exact = b"B" * Evidence.LINE_LIMIT
    path.write_bytes(b"a\x00b\n\xff\xfe\n" + exact + b"\nlast-without-newline")
    lines = list(load_evidence(path).lines())
    assert lines == ["a\x00b", "\ufffd\ufffd", exact.decode(), "last-without-newline"]


def test_load_evidence_refuses_what_is_not_a_regular_file(tmp_path: Path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path, Path("/dev/zero")):
        with pytest.raises(OSError):
            load_evidence(path)


@pytest.mark.parametrize("data, expect", [
    ({"schema_version": 1, "snapshot": {"schema_version": 1, "facts": [{"value": 1}]}}, "facts[0]"),
    ({"schema_version": 1, "snapshot": {"schema_version": 1, "facts": [{"key": None}]}}, "non-empty string"),
    ({"schema_version": 0, "snapshot": {}}, "schema_version 0"),
    ({"schema_version": 1, "snapshot": {"schema_version": 1, "facts": []}, "findings": [{"id": "BWD-X-001"}]},
     "findings[0]: unknown finding status None"),
    ({"schema_version": 1, "snapshot": {"schema_version": 1, "facts": []},
      "findings": [{"id": "BWD-X-001", "status": "fail", "evidence": "x"}]}, "findings[0]: 'evidence' must be a list"),
    ({"schema_version": 1, "snapshot": {"schema_version": 1, "facts": []}, "plans": [{"remedy_id": "r"}]},
     "plans[0]: missing 'title'"),
    ({"schema_version": 1, "snapshot": {"schema_version": 1, "facts": []}, "tool": [1]}, "tool: expected an object"),
    ({"schema_version": 1, "snapshot": {"schema_version": 1, "facts": []}, "diagnosis": "x"},
     "'diagnosis' must be a list"),
    ({"schema_version": 1, "snapshot": []}, "snapshot: expected an object"),
])
def test_report_from_dict_names_what_is_wrong(data, expect):
    with pytest.raises(ValueError) as info:
        Report.from_dict(data)
    assert expect in str(info.value)


def test_report_from_dict_still_reads_a_real_report():
    from bwdoctor.types import Finding, Snapshot

    snap = Snapshot()
    snap.set("host.os", {"name": "Linux"}, "uname")
    rep = Report(mode="live", snapshot=snap, findings=[Finding("BWD-X-001", "t", "X", "pass", "ok")])
    again = Report.from_dict(rep.to_dict())
    assert again.to_dict() == rep.to_dict()


def test_write_atomic_refuses_a_read_only_file(tmp_path: Path, monkeypatch):
    target = tmp_path / "ro.json"
    target.write_text("keep")
    real_access = os.access
    monkeypatch.setattr(cli.os, "access", lambda p, m: False if str(p) == str(target) else real_access(p, m))
    with pytest.raises(cli.CouldNotRun) as info:
        cli.emit("new", str(target))
    assert "read-only" in str(info.value.message)
    assert target.read_text() == "keep"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bwdoctor-")]


def test_write_atomic_keeps_undecodable_characters_as_escapes(tmp_path: Path):
    target = tmp_path / "out.txt"
    cli.write_atomic(str(target), "name bad\udcffname ok\n")
    assert target.read_text(encoding="utf-8") == "name bad\\udcffname ok\n"


def test_a_plugins_own_keyboard_interrupt_is_not_the_users():
    import subprocess
    import sys

    code = (
        "import os, signal\n"
        "from bwdoctor.isolation import install_interrupt_handler, user_interrupted\n"
        "assert user_interrupted(KeyboardInterrupt())  # no handler: every Ctrl-C is the user's\n"
        "install_interrupt_handler()\n"
        "assert not user_interrupted(KeyboardInterrupt())  # raised by code, not by a signal\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    signal.sigtimedwait([], 0.1) if hasattr(signal, 'sigtimedwait') else None\n"
        "    for _ in range(10**6): pass\n"
        "except KeyboardInterrupt as exc:\n"
        "    assert user_interrupted(exc)\n"
        "    print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.stdout.strip() == "ok", proc.stderr
    assert not user_interrupted(SystemExit(1))
