"""End-to-end CLI tests through the real entry point (subprocess), on this GPU-less machine."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema

from conftest import ROOT, clean_env, run_cli

SCHEMA = json.loads((ROOT / "bwdoctor" / "schema" / "report.schema.json").read_text())


def validate(report: dict) -> None:
    jsonschema.validate(report, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_run_in_an_environment_without_vllm_is_not_ready():
    # this test environment has neither vLLM nor torch: it cannot serve, whatever else is fine
    code, out, err = run_cli(["run"], env=clean_env(PATH="/usr/bin:/bin"))
    assert code == 1, out + err
    first = out.splitlines()[0]
    assert first.startswith("NOT READY: vLLM is not installed in the inspected environment " + sys.executable)
    assert f"Inspected: Python {sys.version.split()[0]} at {sys.executable}" in out
    assert "Summary:" in out
    assert "Traceback" not in out + err


def test_run_json_validates_and_from_gives_the_same_findings(tmp_path: Path):
    out_file = tmp_path / "report.json"
    code, out, err = run_cli(["run", "--format", "json", "--output", str(out_file)], env=clean_env())
    assert code == 1, err
    report = json.loads(out_file.read_text())
    validate(report)
    assert report["verdict"]["status"] == "not ready"
    assert report["inspected"]["python"]["executable"] == sys.executable
    code, out, err = run_cli(["run", "--from", str(out_file), "--format", "json"], env=clean_env())
    assert code == 1, err
    again = json.loads(out)
    assert again["verdict"] == report["verdict"]
    validate(again)
    assert again["mode"] == "from"
    strip = lambda r: sorted((f["id"], f["subject"] or "", f["status"], f["message"]) for f in r["findings"])  # noqa: E731
    assert strip(again) == strip(report)
    assert again["snapshot"]["facts"] == report["snapshot"]["facts"]


def test_bad_inputs_give_clear_errors_and_documented_exit_codes(tmp_path: Path):
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\x00\xff\xfe not json")
    code, out, err = run_cli(["run", "--from", str(garbage)], env=clean_env())
    assert code == 2 and "not a JSON bwdoctor report" in err and "Traceback" not in err
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"schema_version": 1, "findings": []}))
    code, out, err = run_cli(["run", "--from", str(wrong)], env=clean_env())
    assert code == 2 and "no 'snapshot'" in err
    code, out, err = run_cli(["run", "--from", str(tmp_path / "absent.json")], env=clean_env())
    assert code == 2 and "absent.json" in err
    code, out, err = run_cli(["run", "--level", "extreme"], env=clean_env())
    assert code == 2
    code, out, err = run_cli(["explain", "BWD-NOPE-999"], env=clean_env())
    assert code == 2 and "no check id or root-cause label" in err


def test_output_file_unwritable_exits_3_without_partial_file(tmp_path: Path):
    missing_dir = tmp_path / "no" / "such" / "dir" / "r.json"
    code, out, err = run_cli(["run", "--output", str(missing_dir), "--format", "json"], env=clean_env())
    assert code == 3 and "cannot write" in err
    assert not missing_dir.exists()
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".bwdoctor-")]
    assert leftovers == []


def test_fail_on_threshold_and_exit_code_with_a_failing_plugin(tmp_path: Path):
    plug = tmp_path / "plugs"
    plug.mkdir()
    (plug / "failing.py").write_text(
        "from bwdoctor import CheckSpec, hookimpl, failed, warned\n"
        "@hookimpl\n"
        "def bwdoctor_checks():\n"
        "    return [CheckSpec('BWD-ZZT-001', 'always warns', lambda s: warned('w'), doc='No automatic remedy.'),\n"
        "            CheckSpec('BWD-ZZT-002', 'always fails', lambda s: failed('f'), doc='No automatic remedy.')]\n")
    env = clean_env()
    code, out, _ = run_cli(["--plugin-dir", str(plug), "run", "--select", "BWD-ZZT-001"], env=env)
    assert code == 0
    code, out, _ = run_cli(["--plugin-dir", str(plug), "run", "--select", "BWD-ZZT-001", "--fail-on", "warn"], env=env)
    assert code == 1
    code, out, _ = run_cli(["--plugin-dir", str(plug), "run", "--select", "ZZT"], env=env)
    assert code == 1
    code, out, _ = run_cli(["--plugin-dir", str(plug), "run", "--select", "ZZT", "--fail-on", "never"], env=env)
    assert code == 0
    env["BWDOCTOR_PLUGIN_PATH"] = str(plug)
    code, out, _ = run_cli(["run", "--skip", "BWD-ZZT-002", "--select", "ZZT"], env=env)
    assert code == 0 and "BWD-ZZT-001" in out and "BWD-ZZT-002" not in out


def test_broken_raising_and_hanging_plugins_each_cost_one_error(tmp_path: Path):
    plug = tmp_path / "plugs"
    plug.mkdir()
    (plug / "import_boom.py").write_text("raise ImportError('missing dependency zzz')\n")
    (plug / "check_boom.py").write_text(
        "from bwdoctor import CheckSpec, hookimpl\n"
        "@hookimpl\n"
        "def bwdoctor_checks():\n"
        "    return [CheckSpec('BWD-ZZR-001', 'raises', lambda s: 1/0, doc='x')]\n")
    (plug / "check_hang.py").write_text(
        "import time\n"
        "from bwdoctor import CheckSpec, hookimpl\n"
        "@hookimpl\n"
        "def bwdoctor_checks():\n"
        "    return [CheckSpec('BWD-ZZH-001', 'hangs', lambda s: time.sleep(120), timeout=1.0, doc='x')]\n")
    import time

    start = time.monotonic()
    code, out, err = run_cli(["--plugin-dir", str(plug), "run", "--format", "json"], env=clean_env())
    elapsed = time.monotonic() - start
    assert elapsed < 20, elapsed
    report = json.loads(out)
    validate(report)
    errors = [f for f in report["findings"] if f["status"] == "error"]
    assert sorted(f["id"] for f in errors) == ["BWD-CORE-001", "BWD-ZZH-001", "BWD-ZZR-001"]
    imp = next(f for f in errors if f["id"] == "BWD-CORE-001")
    assert "import_boom" in imp["message"] and "missing dependency zzz" in imp["message"]
    assert code == 1  # an error finding counts as fail for --fail-on
    assert report["summary"]["pass"] + report["summary"]["skip"] > 0  # the rest of the run went on


def test_example_plugin_installs_and_is_discovered_through_its_entry_point(tmp_path: Path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--target", str(site), str(ROOT / "examples" / "bwdoctor-example-plugin")],
                   check=True, capture_output=True, timeout=300)
    env = clean_env(PYTHONPATH=str(site))
    code, out, err = run_cli(["plugins", "--format", "json"], env=env)
    assert code == 0, err
    plugins = {p["name"]: p for p in json.loads(out)["plugins"]}
    assert plugins["example"]["origin"] == "entry-point"
    assert plugins["example"]["distribution"] == "bwdoctor-example-plugin"
    assert plugins["example"]["provides"] == {"collectors": 1, "checks": 1}
    code, out, err = run_cli(["run", "--select", "BWD-EXAMPLE-001", "--format", "json"], env=env)
    finding = json.loads(out)["findings"][0]
    assert finding["id"] == "BWD-EXAMPLE-001" and finding["status"] in ("pass", "warn")
    assert finding["evidence"][0]["source"] == "getrlimit(RLIMIT_NOFILE)"
    code, out, err = run_cli(["--disable", "example", "run", "--select", "BWD-EXAMPLE-001", "--format", "json"], env=env)
    # the check left with its plugin: selecting it is a usage error, not a silent pass
    assert code == 2 and "'BWD-EXAMPLE-001' matches no check" in err and out == ""


def test_list_explain_and_plugins_commands():
    code, out, _ = run_cli(["list", "--format", "json"], env=clean_env())
    assert code == 0
    ids = [r["id"] for r in json.loads(out)]
    assert "BWD-PKG-001" in ids and "BWD-CORE-001" in ids
    code, out, _ = run_cli(["explain", "bwd-pkg-001"], env=clean_env())
    assert code == 0 and "torchvision" in out and "torch.align-companions" in out
    code, out, _ = run_cli(["plugins"], env=clean_env())
    assert code == 0 and "collectors.host" in out


def test_help_documents_exit_codes():
    code, out, _ = run_cli(["--help"], env=clean_env())
    assert code == 0
    for line in ("0    nothing at or above", "1    not ready: findings at or above", "2    usage error",
                 "3    internal error", "130  interrupted"):
        assert line in out
    code, out, _ = run_cli(["run", "--help"], env=clean_env())
    assert "--fail-on" in out and "3    internal error" in out
    for command in ("snapshot", "fix"):  # neither has --fail-on: their help does not speak of it
        code, out, _ = run_cli([command, "--help"], env=clean_env())
        assert code == 0 and "fail-on" not in out and "Exit codes" in out


def test_snapshot_command_prints_facts_only():
    code, out, _ = run_cli(["snapshot"], env=clean_env())
    assert code == 0
    data = json.loads(out)
    keys = {f["key"] for f in data["facts"]}
    assert {"host.os", "host.python", "packages"} <= keys


def test_import_bwdoctor_imports_neither_torch_nor_vllm():
    code = ("import sys, bwdoctor, bwdoctor.cli, bwdoctor.runner, bwdoctor.manager\n"
            "from bwdoctor.manager import PluginManager\n"
            "PluginManager().registry()\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'vllm', 'triton', 'flashinfer')]\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_console_entry_point_is_installed():
    exe = shutil.which("bwdoctor")
    assert exe, "the bwdoctor console script is not on PATH"
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and "bwdoctor" in proc.stdout
