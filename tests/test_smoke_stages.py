"""Stages of the smoke generation: progress lines, a deadline per stage, and the Python stacks of a
stuck run, through the launcher a live run uses (a real child process, really aborted)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bwdoctor import RunOptions, Snapshot
from bwdoctor.manager import PluginManager
from bwdoctor.runner import run_checks
from bwdoctor_checks._lib import stagewatch
from bwdoctor_checks._lib.torchprobe import run_child
from bwdoctor_checks.collectors import smoke as smoke_collectors

DATA = Path(__file__).parent / "data" / "smoke"
CHILD = str(DATA / "stage_child.py")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and /proc")


def _plan(**deadlines: float) -> stagewatch.StagePlan:
    return stagewatch.StagePlan("smoke", smoke_collectors.STAGES, deadlines, smoke_collectors.COMPILE_MARKS)


def _run(tmp_path: Path, mode: str, plan: stagewatch.StagePlan, timeout: float = 30.0):
    read_end, write_end = os.pipe()
    try:
        run = run_child(sys.executable, mode, {}, timeout, str(tmp_path / "w"), script_source=CHILD, stages=plan,
                        line_fd=write_end)
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        lines = fh.read().decode().splitlines()
    return run, lines


def test_parse_deadlines():
    assert stagewatch.parse_deadlines("load=900, compile=600;generate=x,=3,import=-1") == {"load": 900.0,
                                                                                       "compile": 600.0}
    assert stagewatch.parse_deadlines(None) == {}


def test_stages_are_followed_and_written_one_line_each(tmp_path):
    run, lines = _run(tmp_path, "ok", _plan(load=20, compile=20))
    assert run.result.get("ok") and not run.timed_out and run.stuck_stage is None
    names = [s["stage"] for s in run.stages]
    # the log line after the weights splits vLLM's load into load and compile
    assert names == ["import", "load", "compile", "generate"]
    assert all(s["seconds"] >= 0 for s in run.stages)
    # generate ended between two polls: the child's stamps still give it its own time
    assert 0.05 <= run.stages[-1]["seconds"] < 0.45
    started = [ln for ln in lines if ": stage " in ln]
    assert [ln.split(": stage ")[1].split()[0] for ln in started] == ["import", "load", "compile", "generate"]
    assert "(deadline 20 s)" in started[1]
    assert lines[-1].startswith("[bwdoctor] smoke: finished after")


def test_a_stuck_stage_is_named_with_the_frame_it_spins_in(tmp_path):
    run, lines = _run(tmp_path, "stuck", _plan(load=20, compile=1.5))
    assert run.timed_out and run.stuck_stage == "compile" and run.stuck_scope == "stage"
    assert run.stuck_deadline_s == 1.5
    # the child was aborted with faulthandler on: its stack is in the log and read back
    assert "Fatal Python error: Aborted" in run.log
    assert run.stuck_in and run.stuck_in[0]["frames"][0]["function"] == "spin_forever"
    assert not run.stuck_in[0]["waiting"]
    assert any("stuck in stage compile" in ln for ln in lines)
    # the collector and BWD-SMOKE-001 name the stage, its deadline and the frame
    facts = smoke_collectors.facts_from_run(run, sys.executable, RunOptions(level="quick", smoke=True))
    res = next(f.value for f in facts if f.key == "smoke.result")
    assert res["stuck_stage"] == "compile" and res["deadline_s"] == 1.5 and res["timed_out"]
    assert "stage 'compile' did not finish within its deadline of 1.5 s" in res["error"]
    assert "bwdoctor_child.py:" in res["error"] and "in spin_forever" in res["error"]
    pm = PluginManager()
    findings = run_checks(pm.registry().checks, Snapshot(facts))
    f = next(x for x in findings if x.id == "BWD-SMOKE-001")
    assert f.status == "fail" and "stuck in stage 'compile'" in f.message and "spin_forever" in f.message
    assert f.details["stuck_stage"] == "compile"


def test_the_whole_run_deadline_names_the_stage_it_ended(tmp_path):
    run, _ = _run(tmp_path, "stuck", _plan(load=20, compile=20), timeout=3.0)
    assert run.timed_out and run.stuck_stage == "compile" and run.stuck_scope == "run"
    facts = smoke_collectors.facts_from_run(run, sys.executable, RunOptions(level="quick", smoke=True,
                                                                              extra={"smoke_timeout": 3}))
    res = next(f.value for f in facts if f.key == "smoke.result")
    assert res["error"].startswith("the smoke generation did not finish within 3 s (stopped during stage 'compile')")


def test_stage_plan_reads_overrides(monkeypatch):
    monkeypatch.setenv("BWDOCTOR_SMOKE_STAGE_DEADLINES", "load=900")
    plan = smoke_collectors.stage_plan(RunOptions(level="quick", extra={"stage_deadlines": {"compile": 1200}}))
    assert plan.deadline("load") == 900 and plan.deadline("compile") == 1200
    assert plan.deadline("import") == smoke_collectors.STAGE_DEADLINES["import"]
