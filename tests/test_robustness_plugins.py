"""Hostile plugins: each costs findings, never the run, the exit code contract or the
parseability of a report written to standard output."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from conftest import DATA, run_cli

LOG = DATA / "evidence" / "engine-gpu-v0.log"

HEADER = (
    "import os, sys, time\n"
    "from bwdoctor import CheckSpec, CollectorSpec, ParserSpec, RemedySpec, ReporterSpec, Fact, hookimpl, passed, failed\n"
)

PLUGINS = {
    "prints": HEADER + "print('JUNK AT IMPORT')\n"
    "@hookimpl\n"
    "def bwdoctor_checks():\n"
    "    print('JUNK IN HOOK')\n"
    "    return [CheckSpec('BWD-ZPR-001', 'prints', lambda s: (print('JUNK'), os.write(1, b'RAW JUNK\\n'),"
    " passed('ok'))[-1], doc='x')]\n",
    "exit_in_hook": HEADER + "@hookimpl\ndef bwdoctor_checks():\n    sys.exit(5)\n",
    "exit_at_import": HEADER + "sys.exit(3)\n",
    "kbint_at_import": HEADER + "raise KeyboardInterrupt('not the user')\n",
    "kbint_in_hook": HEADER + "@hookimpl\ndef bwdoctor_remedies():\n    raise KeyboardInterrupt('not the user')\n",
    "base_in_hook": HEADER + "class Odd(BaseException):\n    pass\n"
    "@hookimpl\ndef bwdoctor_parsers():\n    raise Odd('odd')\n",
    "hangs_at_import": HEADER + "time.sleep(600)\n",
    "wrong_types": HEADER + "@hookimpl\ndef bwdoctor_checks():\n"
    "    return [CheckSpec('BWD-ZWT-001', 'returns int', lambda s: 42, doc='x'), 'not a spec', None]\n"
    "@hookimpl\ndef bwdoctor_collectors():\n    return [CollectorSpec('zwt-col', lambda o: [1])]\n"
    "@hookimpl\ndef bwdoctor_cli_commands():\n    return ['not a command']\n",
    "check_exits": HEADER + "@hookimpl\ndef bwdoctor_checks():\n"
    "    return [CheckSpec('BWD-ZCE-001', 'exits', lambda s: sys.exit(9), doc='x')]\n",
    "hangs_everywhere": HEADER + "def det(e):\n    return e.name.endswith('.log')\n"
    "@hookimpl\ndef bwdoctor_checks():\n"
    "    return [CheckSpec('BWD-ZHC-001', 'busy', lambda s: [0 for _ in iter(int, 1)], timeout=0.5, doc='x'),\n"
    "            CheckSpec('BWD-ZHR-001', 'fails', lambda s: failed('f', remedies=['zr.hang']), doc='x')]\n"
    "@hookimpl\ndef bwdoctor_collectors():\n"
    "    return [CollectorSpec('zhang-inline', lambda o: time.sleep(600), timeout=0.5),\n"
    "            CollectorSpec('zhang-child', lambda o: time.sleep(600), isolate=True, timeout=0.5),\n"
    "            CollectorSpec('zdies-child', lambda o: os._exit(7), isolate=True, timeout=2.0)]\n"
    "@hookimpl\ndef bwdoctor_parsers():\n"
    "    return [ParserSpec('zhang-parser', lambda e: time.sleep(600), det, timeout=0.5)]\n"
    "@hookimpl\ndef bwdoctor_remedies():\n"
    "    return [RemedySpec('zr.hang', 'hangs', lambda f, s: time.sleep(600), timeout=0.5)]\n",
    "reporters": HEADER + "@hookimpl\ndef bwdoctor_reporters():\n"
    "    return [ReporterSpec('zint', lambda r, v: 5), ReporterSpec('zexit', lambda r, v: sys.exit(0))]\n",
}


def _env(plugdir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BWDOCTOR_")}
    env.update(BWDOCTOR_PLUGIN_PATH=str(plugdir), BWDOCTOR_PLUGIN_TIMEOUT="1")
    return env


def test_every_hostile_plugin_costs_one_finding_and_the_report_stays_valid(tmp_path: Path):
    plugdir = tmp_path / "plugins"
    plugdir.mkdir()
    for name, body in PLUGINS.items():
        (plugdir / f"{name}.py").write_text(body)
    env = _env(plugdir)
    start = time.monotonic()
    code, out, err = run_cli(["analyze", str(LOG), "--format", "json"], env=env, timeout=90)
    elapsed = time.monotonic() - start
    assert "Traceback" not in err
    assert code == 1, err  # error findings count as fail
    assert elapsed < 30, elapsed
    report = json.loads(out)  # the plugins' prints went to standard error
    assert "JUNK AT IMPORT" in err and "RAW JUNK" in err
    errors = {(f["id"], f["subject"] or ""): f["message"] for f in report["findings"] if f["status"] == "error"}
    msgs = " | ".join(f["message"] for f in report["findings"] if f["status"] == "error")
    for expect in ("exit_in_hook.bwdoctor_checks() raised SystemExit: 5",
                   "'exit_at_import'", "SystemExit: 3",
                   "KeyboardInterrupt: not the user",
                   "base_in_hook.bwdoctor_parsers() raised Odd: odd",
                   "'hangs_at_import'", "did not finish importing",
                   "returned str 'not a spec', expected CheckSpec",
                   "returned NoneType None, expected CheckSpec",
                   "expected a named click.Command",
                   "parser 'zhang-parser' failed", "remedy 'zr.hang' failed"):
        assert expect in msgs, (expect, msgs)
    assert "the check returned int" in errors[("BWD-ZWT-001", "")]
    assert "SystemExit: 9" in errors[("BWD-ZCE-001", "")]
    assert "timed out" in errors[("BWD-ZHC-001", "")]
    assert any(f["id"] == "BWD-ZPR-001" and f["status"] == "pass" for f in report["findings"])
    # the built-in parsers still read the log
    assert any(f["key"] == "vllm.config" for f in report["snapshot"]["facts"])


def test_live_run_with_hanging_and_dying_collectors(tmp_path: Path):
    plugdir = tmp_path / "plugins"
    plugdir.mkdir()
    (plugdir / "hangs_everywhere.py").write_text(PLUGINS["hangs_everywhere"])
    (plugdir / "wrong_types.py").write_text(PLUGINS["wrong_types"])
    start = time.monotonic()
    code, out, err = run_cli(["run", "--format", "json"], env=_env(plugdir), timeout=90)
    assert time.monotonic() - start < 30
    assert "Traceback" not in err and code == 1
    report = json.loads(out)
    msgs = " | ".join(f["message"] for f in report["findings"] if f["status"] == "error")
    assert "collector 'zhang-inline' failed: timed out" in msgs
    assert "collector 'zhang-child' failed: timed out" in msgs and "child process killed" in msgs
    assert "collector 'zdies-child' failed: child process died with exit code 7" in msgs
    assert "collector 'zwt-col' returned bad facts" in msgs


def test_plugin_commands_survive_hostile_plugins(tmp_path: Path):
    plugdir = tmp_path / "plugins"
    plugdir.mkdir()
    for name in ("prints", "exit_in_hook", "wrong_types", "base_in_hook", "kbint_in_hook"):
        (plugdir / f"{name}.py").write_text(PLUGINS[name])
    env = _env(plugdir)
    for args in (["list", "--format", "json"], ["plugins", "--format", "json"], ["explain", "BWD-CORE-001"]):
        code, out, err = run_cli(args, env=env)
        assert code == 0 and "Traceback" not in err, (args, err)
        if "json" in args:
            json.loads(out)


def test_reporter_returning_the_wrong_type_or_exiting(tmp_path: Path):
    plugdir = tmp_path / "plugins"
    plugdir.mkdir()
    (plugdir / "reporters.py").write_text(PLUGINS["reporters"])
    out_file = tmp_path / "r.txt"
    for fmt, expect in (("zint", "returned int, expected text"), ("zexit", "SystemExit")):
        code, out, err = run_cli(["analyze", str(LOG), "--format", fmt, "-o", str(out_file)], env=_env(plugdir))
        assert code == 3 and expect in err and "Traceback" not in err
        assert not out_file.exists()


def test_a_parser_that_runs_out_of_time_keeps_what_it_yielded(tmp_path: Path):
    plugdir = tmp_path / "plugins"
    plugdir.mkdir()
    (plugdir / "slow_parser.py").write_text(
        HEADER + "def scan(ev):\n"
        "    yield Fact('zslow.first', 1, 'slow:line 1')\n"
        "    time.sleep(600)\n"
        "    yield Fact('zslow.never', 2, 'slow')\n"
        "@hookimpl\ndef bwdoctor_parsers():\n"
        "    return [ParserSpec('zslow', scan, lambda e: e.name.endswith('.log'), provides=['zslow.*'], timeout=0.5)]\n")
    code, out, err = run_cli(["analyze", str(LOG), "--format", "json"], env=_env(plugdir), timeout=60)
    assert "Traceback" not in err
    report = json.loads(out)
    keys = {f["key"] for f in report["snapshot"]["facts"]}
    assert "zslow.first" in keys and "zslow.never" not in keys
    msg = next(f["message"] for f in report["findings"] if f["id"] == "BWD-CORE-004")
    assert "timed out" in msg and "kept the 1 fact(s)" in msg
