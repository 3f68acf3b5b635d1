"""Child processes: a crash is a failure naming the signal or status; every child runs in its own
process group and dies with its descendants at its deadline and when bwdoctor is ended by
SIGTERM, SIGHUP or SIGINT (exit 143, 129, 130); output is read with a byte cap and leniently."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bwdoctor.isolation import call_in_child, describe_exit, run_capped

from conftest import ROOT


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for a reaper counts as gone
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pids, timeout=10.0) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def _fake_torch(tmp_path: Path, body: str) -> str:
    pkg = tmp_path / "site" / "torch"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(body)
    py = tmp_path / "python"
    py.write_text(f"#!/bin/sh\nPYTHONPATH={tmp_path / 'site'} exec {sys.executable} \"$@\"\n")
    py.chmod(0o755)
    return str(py)


def _cli(args, env_extra=None, timeout=120):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BWDOCTOR_")}
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-m", "bwdoctor.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=str(ROOT))
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("body,named", [
    ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", "SIGSEGV"),
    ("import os\nos._exit(7)\n", "exit code 7"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGABRT)\n", "SIGABRT"),
])
def test_torch_that_crashes_on_import_is_a_failure_naming_it(tmp_path, body, named):
    py = _fake_torch(tmp_path, body)
    code, out, err = _cli(["run", "--level", "standard", "--select", "BWD-PROBE-001", "--format", "json"],
                          {"BWDOCTOR_TORCH_PYTHON": py})
    assert code == 1, err
    finding = next(f for f in json.loads(out)["findings"] if f["id"] == "BWD-PROBE-001")
    assert finding["status"] == "fail"
    assert named in finding["message"] and "CPU-only" not in finding["message"]
    assert finding["root_cause"] != "arch_not_in_torch_wheel"


def test_describe_exit():
    assert describe_exit(-11) == "killed by signal 11 (SIGSEGV)"
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(0) == "exit code 0"


def _crash_in_child() -> None:
    import faulthandler

    faulthandler.disable()  # (pytest's handler would print the child's stack)
    os.kill(os.getpid(), signal.SIGSEGV)


def test_isolated_child_crash_names_the_signal():
    res = call_in_child(_crash_in_child, (), 10.0)
    assert not res.ok and "SIGSEGV" in res.error


def test_capped_run_kills_grandchildren_at_the_deadline(tmp_path):
    pidfile = tmp_path / "grandchild"
    start = time.monotonic()
    res = run_capped(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; sleep 300"], timeout=1.0)
    assert res.timed_out and time.monotonic() - start < 8
    grandchild = int(pidfile.read_text())
    assert not _wait_gone([grandchild]), "the grandchild outlived the deadline"


def test_capped_run_survives_a_flood_and_bad_bytes():
    start = time.monotonic()
    res = run_capped(["sh", "-c", "printf '\\377\\376 Cuda compilation tools, release 12.8\\n'; yes flood"],
                     timeout=2.0, cap=4096)
    assert len(res.output) <= 4096 and res.truncated
    assert "release 12.8" in res.output and "\ufffd" in res.output
    assert time.monotonic() - start < 8


def test_toolkit_collector_survives_hostile_nvcc(tmp_path):
    from bwdoctor_checks.collectors.stack import _run_version

    nvcc = tmp_path / "nvcc"
    nvcc.write_text("#!/bin/sh\nprintf '\\377\\376 release 12.9, V12.9.41\\n'\n(sleep 300 &)\nexec yes flood\n")
    nvcc.chmod(0o755)
    start = time.monotonic()
    assert _run_version([str(nvcc), "--version"], timeout=1.0) is None  # killed at the deadline: no answer
    assert time.monotonic() - start < 8
    good = tmp_path / "nvcc2"
    good.write_text("#!/bin/sh\nprintf '\\377 Cuda compilation tools, release 12.9, V12.9.41\\n'\n")
    good.chmod(0o755)
    assert _run_version([str(good), "--version"]) == "12.9"
    bad = tmp_path / "nvcc3"
    bad.write_text("#!/bin/sh\necho 'release 12.9'\nkill -SEGV $$\n")
    bad.chmod(0o755)
    assert _run_version([str(bad), "--version"]) is None  # a crashed tool tells nothing


PLUGIN = '''
import os, subprocess, time
from bwdoctor import CollectorSpec, hookimpl

def collect(options):
    gc = subprocess.Popen(["sleep", "300"])
    with open(os.environ["RB_PIDS"], "w") as fh:
        fh.write(f"{os.getpid()} {gc.pid}")
    time.sleep(300)
    return []

@hookimpl
def bwdoctor_collectors():
    return [CollectorSpec(name="hang", func=collect, provides=["hang.x"], isolate=True, timeout=280)]
'''


# the way the smoke generation starts vLLM: in a session of its own (its engine processes die with
# it at a deadline), remembered so that the end of the run ends it too
OWN_SESSION = PLUGIN.replace(
    'gc = subprocess.Popen(["sleep", "300"])',
    'from bwdoctor.isolation import register_child\n'
    '    gc = subprocess.Popen(["sleep", "300"], start_new_session=True)\n'
    '    register_child(gc.pid, True)')


def _default_signals() -> None:
    """bwdoctor keeps a signal its caller ignores (under nohup, SIGHUP; in a background job,
    SIGINT), as it should: the run under test starts with the default dispositions, whatever the
    test runner inherited."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


@pytest.mark.parametrize("sig,code,plugin", [(signal.SIGTERM, 143, PLUGIN), (signal.SIGHUP, 129, PLUGIN),
                                             (signal.SIGINT, 130, PLUGIN), (signal.SIGINT, 130, OWN_SESSION),
                                             (signal.SIGTERM, 143, OWN_SESSION)])
def test_signal_ends_the_run_and_every_child(tmp_path, sig, code, plugin):
    plugins = tmp_path / "plugins"
    plugins.mkdir(mode=0o755)
    (plugins / "hang.py").write_text(textwrap.dedent(plugin))
    (plugins / "hang.py").chmod(0o644)
    pids = tmp_path / "pids"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BWDOCTOR_")}
    env["RB_PIDS"] = str(pids)
    proc = subprocess.Popen([sys.executable, "-m", "bwdoctor.cli", "--plugin-dir", str(plugins), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT),
                            start_new_session=True, preexec_fn=_default_signals)
    try:
        end = time.monotonic() + 60
        while not (pids.exists() and pids.read_text().strip()) and time.monotonic() < end:
            time.sleep(0.1)
        child, grandchild = (int(x) for x in pids.read_text().split())
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert not _wait_gone([child, grandchild]), "a child outlived bwdoctor"


def test_torch_that_exits_zero_on_import_is_a_failure(tmp_path):
    py = _fake_torch(tmp_path, "import os\nos._exit(0)\n")
    code, out, err = _cli(["run", "--level", "standard", "--select", "BWD-PROBE-001", "--format", "json"],
                          {"BWDOCTOR_TORCH_PYTHON": py})
    assert code == 1, err
    finding = next(f for f in json.loads(out)["findings"] if f["id"] == "BWD-PROBE-001")
    assert finding["status"] == "fail" and "exit code 0" in finding["message"] and "CPU-only" not in finding["message"]
