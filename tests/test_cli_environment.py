"""The environment a run inspects (--python, the vllm command on PATH), the verdict, and the exit
codes of asked-for checks that could not run; through the real entry point."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from conftest import ROOT, run_cli

SCHEMA = json.loads((ROOT / "bwdoctor" / "schema" / "report.schema.json").read_text())


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BWDOCTOR_")}
    env["PATH"] = "/usr/bin:/bin"
    env.update(extra)
    return env


def _dist(site: Path, name: str, version: str, requires: list[str] = ()) -> None:
    d = site / f"{name}-{version}.dist-info"
    d.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"] + [f"Requires-Dist: {r}" for r in requires]
    (d / "METADATA").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def serving_env(tmp_path_factory) -> Path:
    """A venv that holds a CUDA torch and vLLM (their metadata, torch/version.py), not bwdoctor's own."""
    root = tmp_path_factory.mktemp("envs") / "serve"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    py = root / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    _dist(site, "torch", "2.8.0+cu128")
    (site / "torch").mkdir()
    (site / "torch" / "version.py").write_text("__version__ = '2.8.0+cu128'\ncuda = '12.8'\nhip = None\n")
    _dist(site, "vllm", "0.11.0", ["torch==2.8.0"])
    (site / "vllm").mkdir()
    return root


def report_of(args, env=None):
    code, out, err = run_cli(args + ["--format", "json"], env=env or clean_env())
    assert "Traceback" not in err, err
    data = json.loads(out)
    jsonschema.validate(data, SCHEMA, cls=jsonschema.Draft202012Validator)
    return code, data, err


def test_python_option_inspects_a_venv_folder(serving_env):
    code, rep, _ = report_of(["run", "--python", str(serving_env), "--target", "rtx-pro-6000"])
    env = rep["inspected"]["python"]
    assert env["executable"] == str(serving_env / "bin" / "python3") or env["executable"].startswith(str(serving_env))
    assert env["prefix"] == str(serving_env) and env["kind"] == "venv" and env["selected_by"] == "--python"
    facts = {f["key"]: f["value"] for f in rep["snapshot"]["facts"]}
    assert facts["vllm"]["version"] == "0.11.0" and facts["torch"]["variant"] == "cu128"
    assert "vllm" in facts["packages"] and "pytest" not in facts["packages"]  # not bwdoctor's environment
    env_check = {f["subject"]: f["status"] for f in rep["findings"] if f["id"] == "BWD-STACK-011"}
    assert env_check == {"vllm": "pass", "torch": "pass"}
    assert rep["options"]["python"] == str(serving_env)
    assert "site_packages" not in rep["options"]
    assert rep["verdict"]["status"] == "ready" and code == 0, rep["verdict"]


def test_python_option_takes_an_interpreter_and_the_environment_variable(serving_env):
    py = str(serving_env / "bin" / "python")
    _, rep, _ = report_of(["run", "--python", py])
    assert rep["inspected"]["python"]["prefix"] == str(serving_env)
    _, rep, _ = report_of(["run"], env=clean_env(BWDOCTOR_PYTHON=py))
    assert rep["inspected"]["python"]["prefix"] == str(serving_env)
    assert rep["inspected"]["python"]["selected_by"] == "BWDOCTOR_PYTHON"


def test_the_vllm_command_on_path_is_followed_and_said(serving_env, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "vllm"
    script.write_text(f"#!{serving_env / 'bin' / 'python'}\nimport sys\nfrom vllm.entrypoints.cli.main import main\n")
    script.chmod(0o755)
    code, out, err = run_cli(["run"], env=clean_env(PATH=f"{bindir}:/usr/bin:/bin"))
    assert f"chosen by vllm on PATH): bwdoctor's interpreter has no vLLM; inspected the one that runs {script}" in out
    _, rep, _ = report_of(["run"], env=clean_env(PATH=f"{bindir}:/usr/bin:/bin"))
    assert rep["inspected"]["python"]["selected_by"] == "vllm on PATH"
    assert rep["inspected"]["python"]["prefix"] == str(serving_env)


def test_a_python_that_is_no_environment_is_a_usage_error(tmp_path):
    for bad in (tmp_path, tmp_path / "absent", Path("/dev/null")):
        code, out, err = run_cli(["run", "--python", str(bad)], env=clean_env())
        assert code == 2 and "--python" in err and str(bad) in err and out == "", err


def test_no_vllm_in_the_inspected_environment_is_not_ready_in_every_format():
    code, rep, _ = report_of(["run"])
    assert code == 1
    assert rep["verdict"]["status"] == "not ready"
    assert rep["verdict"]["reason"].startswith("vLLM is not installed in the inspected environment")
    assert rep["inspected"]["python"]["executable"] == sys.executable
    assert rep["inspected"]["gpus"].startswith("no GPU seen: ")  # the console's banner, machine-readable
    code, md, _ = run_cli(["run", "--format", "markdown"], env=clean_env())
    assert code == 1 and md.startswith("## bwdoctor: **NOT READY**")
    code, xml, _ = run_cli(["run", "--format", "junit"], env=clean_env())
    assert '<property name="verdict" value="not ready" />' in xml and '<property name="gpus" value="no GPU seen' in xml
    code, sarif, _ = run_cli(["run", "--format", "sarif"], env=clean_env())
    assert json.loads(sarif)["runs"][0]["properties"]["verdict"]["status"] == "not ready"
    # the CI gate of docs/gating.md fails without vLLM and torch
    code, out, _ = run_cli(["run", "--target", "rtx-pro-6000", "--select", "STACK", "--select", "FP8"],
                           env=clean_env())
    assert code == 1 and out.startswith("NOT READY: vLLM is not installed")


def test_asked_for_checks_that_could_not_run_fail():
    code, rep, _ = report_of(["run", "--smoke", "--select", "SMOKE"])
    smoke = [f for f in rep["findings"] if f["id"] == "BWD-SMOKE-001"][0]
    assert code == 1 and smoke["status"] == "fail" and smoke["details"]["requested_by"] == "--smoke"
    assert "vLLM is not installed in the inspected environment" in smoke["message"]
    code, rep, _ = report_of(["run", "--select", "BWD-DRV-002"])  # no GPU here: the check cannot run
    (drv,) = [f for f in rep["findings"] if f["id"] == "BWD-DRV-002"]
    assert code == 1 and drv["status"] == "fail" and drv["details"]["requested_by"] == "--select BWD-DRV-002"
    code, rep, _ = report_of(["run", "--endpoint", "http://127.0.0.1:9", "--select", "EP"])
    assert code == 1 and any(f["id"] == "BWD-EP-001" and f["status"] == "fail" for f in rep["findings"])


def test_select_or_disable_that_matches_nothing_is_exit_2():
    code, out, err = run_cli(["run", "--select", "BWD-GPU-999"], env=clean_env())
    assert code == 2 and "'BWD-GPU-999' matches no check" in err and out == ""
    code, out, err = run_cli(["--disable", "nonsense", "run"], env=clean_env())
    assert code == 2 and "no plugin named 'nonsense'" in err
    code, out, err = run_cli(["run"], env=clean_env(BWDOCTOR_DISABLE="checks.gpu,nonsense"))
    assert code == 2 and "no plugin named 'nonsense'" in err and "BWDOCTOR_DISABLE" in err
    code, out, err = run_cli(["run", "--skip", "BWD-GPU-999"], env=clean_env())
    assert code == 2 and "'BWD-GPU-999' matches no check" in err and "--skip" in err
    code, out, err = run_cli(["--disable", "checks.gpu", "run", "--select", "STACK", "--format", "json"],
                             env=clean_env())
    assert code == 1 and json.loads(out)["verdict"]["status"] == "not ready"


def test_help_documents_the_exit_codes_and_variables():
    code, out, _ = run_cli(["run", "--help"], env=clean_env())
    assert code == 0
    for text in ("Exit codes:", "not ready", "130", "BWDOCTOR_PYTHON", "NO_COLOR", "--python"):
        assert text in out, text
    # every variable the code reads is in the help, but those it sets for its own children
    internal = {"BWDOCTOR_PROGRESS_FD", "BWDOCTOR_PATCH_"}
    read = set()
    for folder in ("bwdoctor", "bwdoctor_checks", "bwdoctor_remedies"):
        for path in (ROOT / folder).rglob("*.py"):
            read |= set(re.findall(r"[\"'](_?BWDOCTOR_[A-Z_]+)", path.read_text(encoding="utf-8")))
    flat = " ".join(out.split())
    assert {"BWDOCTOR_SMOKE_LOG", "BWDOCTOR_DEBUG"} <= read
    assert sorted(v for v in read - internal if v not in flat) == []
    readme = (ROOT / "README.md").read_text()
    assert "could not tell" in readme and "--python" in readme and "130" in readme
