"""Fixes never leave a broken file: edits of multi-line constructs become advice, a patched file
is re-read by the parser that recognised it (and restored when it no longer parses), --apply
edits only regular files inside the folders given and keeps owner and mode. A fix built from
files edits only those files; steps shared by several findings appear once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from bwdoctor import fixscript
from bwdoctor.types import FixPlan, FixStep
from bwdoctor_remedies._fileparse import multiline_change, reparse_problem

from conftest import run_cli

SEED = Path(__file__).parent / "data" / "remedy" / "seed-config"

COMPOSE_BLOCK = """\
services:
  vllm:
    image: vllm/vllm-openai:v0.11.0
    command: ["--model", "m"]
    environment:
      VLLM_EXTRA: >
        something
        VLLM_ENABLE_FP8=true
      VLLM_GPU_MEMORY_UTILIZATION: |
        0.95
"""
DOCKERFILE_CONT = """\
FROM vllm/vllm-openai:v0.11.0
ENV VLLM_ENABLE_FP8=\\
    true
"""
DOTENV_QUOTED = """\
A=1
VLLM_USE_FLASHINFER="true
"
B="two
lines"
"""


def _env():
    return {k: v for k, v in os.environ.items() if not k.startswith("BWDOCTOR_")}


def _folder(tmp_path: Path, files: dict[str, str]) -> Path:
    d = tmp_path / "cfg"
    d.mkdir()
    for name, text in files.items():
        (d / name).write_text(text)
    return d


@pytest.mark.parametrize("name,text", [("docker-compose.yml", COMPOSE_BLOCK), ("Dockerfile", DOCKERFILE_CONT),
                                       (".env", DOTENV_QUOTED)])
def test_multiline_constructs_become_advice_and_files_stay_valid(tmp_path, name, text):
    d = _folder(tmp_path, {name: text})
    code, script, err = run_cli(["fix", str(d)], env=_env())
    assert code == 0, err
    assert "edit the file by hand" in script
    assert f"--- a/{name}" not in script  # no patch of it
    run = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=str(d), timeout=60)
    assert run.returncode == 0, run.stderr
    code, out, err = run_cli(["fix", str(d), "--apply", "--yes"], env=_env())
    assert "Traceback" not in err
    assert (d / name).read_text() == text  # nothing to patch: the file is as it was
    if name.endswith(".yml"):
        yaml.safe_load((d / name).read_text())


def test_detection_units():
    assert multiline_change(COMPOSE_BLOCK, COMPOSE_BLOCK.replace("        VLLM_ENABLE_FP8=true",
                                                                 "        # VLLM_ENABLE_FP8=true"), "compose")
    assert multiline_change(DOCKERFILE_CONT, DOCKERFILE_CONT.replace("ENV VLLM", "# ENV VLLM"), "dockerfile")
    assert multiline_change(DOTENV_QUOTED, DOTENV_QUOTED.replace("VLLM_USE", "# VLLM_USE"), "dotenv")
    simple = "A=1\nVLLM_X=2\n"
    assert not multiline_change(simple, "A=1\n# VLLM_X=2\n", "dotenv")
    assert not reparse_problem(simple, "A=1\n# VLLM_X=2\n", "dotenv")
    assert "not be valid YAML" in reparse_problem("a: 1\n", "a: [1\n", "compose")


def test_seed_folder_fix_is_scoped_deduplicated_and_whole(tmp_path):
    src = SEED
    d = tmp_path / "seed"
    shutil.copytree(src, d)
    for f in [d, *d.iterdir()]:
        f.chmod(0o755 if f.is_dir() else 0o644)  # the shared copy is read-only
    code, script, err = run_cli(["fix", str(d), "--target", "rtx-pro-6000"], env=_env())
    assert code == 0, err
    assert "\n  python3 -m pip install" not in script  # nothing runs on this machine
    assert "not on this machine" in script
    for line in script.splitlines():
        if line.startswith("printf") and "ADVICE" in line:
            assert "…" not in line  # advice is never cut
    diffs = [ln for ln in script.splitlines() if ln.startswith("--- a/")]
    assert len(diffs) == 2 * len(set(diffs))  # each file's diff once (dry-run check + apply)
    code, out, err = run_cli(["fix", str(d), "--target", "rtx-pro-6000", "--apply", "--dry-run", "--yes"], env=_env())
    assert "would run" not in out
    assert code == 0, err
    advice = [line for line in out.splitlines() if line.lstrip().startswith("ADVICE:")]
    assert advice and not [line for line in advice if "…" in line]  # nor in the dry run
    code, out, err = run_cli(["fix", str(d), "--target", "rtx-pro-6000", "--apply", "--yes"], env=_env())
    # every step ran and what the plans fix is fixed: exit 0; what no plan addresses (the evidence
    # lacks a driver version) is listed, not counted
    assert code == 0, out + err
    assert "still failing" not in out and "not addressed by any fix: BWD-EVID-001" in out
    assert "resolved: BWD-CFG-001[VLLM_MAX_NUM_SEQS]" in out  # the variable is gone, the check judges on
    docker = (d / "Dockerfile").read_text()
    assert "vllm==0.6.2" not in docker and "0.6.2+" not in docker  # pin and stale comment moved together
    code, out, err = run_cli(["analyze", str(d)], env=_env())
    assert "no parser recognised" not in out + err
    # the comments the fix leaves are not read back as a command line ("... on the vllm serve
    # command line" made a model named 'command')
    code, out, err = run_cli(["analyze", str(d), "--format", "json"], env=_env())
    requested = [f["value"] for f in json.loads(out)["snapshot"]["facts"] if f["key"] == "config.requested"]
    assert all(r.get("model") != "command" for r in requested), requested


def _patch_plan(path: Path, old: str, new: str, kind: str = "") -> FixPlan:
    diff = fixscript.unified_diff(old, new, path.name)
    step = FixStep(description="edit", patch={"path": str(path), "diff": diff, "kind": kind})
    return FixPlan(remedy_id="t.edit", title="edit", finding_ids=["X"], steps=[step])


def test_apply_refuses_symlink_escape(tmp_path):
    outside = tmp_path / "outside.env"
    outside.write_text("A=1\n")
    d = tmp_path / "cfg"
    d.mkdir()
    (d / ".env").symlink_to(outside)
    res = fixscript.apply_plans([_patch_plan(d / ".env", "A=1\n", "A=2\n")], yes=True, roots=[str(d)], echo=lambda s: None)
    assert not res.ok and "symbolic link" in res.failed[0].detail
    assert outside.read_text() == "A=1\n"
    linked = tmp_path / "linkdir"
    linked.symlink_to(tmp_path)  # a folder link out of the tree
    inner = d / "sub"
    inner.symlink_to(tmp_path)
    res = fixscript.apply_plans([_patch_plan(inner / "outside.env", "A=1\n", "A=2\n")], yes=True, roots=[str(d)],
                                echo=lambda s: None)
    assert not res.ok and "outside the folders given" in res.failed[0].detail
    assert outside.read_text() == "A=1\n"


def test_apply_keeps_owner_and_mode_and_refuses_read_only(tmp_path):
    d = tmp_path / "cfg"
    d.mkdir()
    f = d / ".env"
    f.write_text("A=1\n")
    f.chmod(0o640)
    if os.geteuid() == 0:
        os.chown(f, 4321, 4321)
    res = fixscript.apply_plans([_patch_plan(f, "A=1\n", "A=2\n")], yes=True, roots=[str(d)], echo=lambda s: None)
    assert res.ok, res.to_dict()
    st = f.stat()
    assert f.read_text() == "A=2\n" and (st.st_mode & 0o7777) == 0o640
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (4321, 4321)
    f.chmod(0o444)
    res = fixscript.apply_plans([_patch_plan(f, "A=2\n", "A=3\n")], yes=True, roots=[str(d)], echo=lambda s: None)
    assert not res.ok and "read-only" in res.failed[0].detail and f.read_text() == "A=2\n"
    f.chmod(0o644)
    h = d / "hard"
    os.link(f, h)
    res = fixscript.apply_plans([_patch_plan(f, "A=2\n", "A=3\n")], yes=True, roots=[str(d)], echo=lambda s: None)
    assert not res.ok and "hard links" in res.failed[0].detail


def test_apply_restores_a_file_the_parser_no_longer_reads(tmp_path):
    d = tmp_path / "cfg"
    d.mkdir()
    f = d / "docker-compose.yml"
    old = "services:\n  vllm:\n    image: x\n"
    f.write_text(old)
    bad = "services:\n  vllm:\n    image: [x\n"

    def verify(path: str, kind: str, text: str) -> str:
        try:
            yaml.safe_load(text)
        except yaml.YAMLError:
            return "it is not valid YAML"
        return ""

    res = fixscript.apply_plans([_patch_plan(f, old, bad, "compose")], yes=True, roots=[str(d)], verify=verify,
                                echo=lambda s: None)
    assert not res.ok and "restored" in res.failed[0].detail
    assert f.read_text() == old


def test_steps_shared_by_plans_render_once():
    step = FixStep(description="edit", patch={"path": "/x/.env", "diff": "--- a/.env\n+++ b/.env\n@@ -1 +1 @@\n-A=1\n+A=2\n"})
    advice = FixStep(description="Add --max-model-len 8192", advisory=True)
    plans = [FixPlan(remedy_id=f"r{i}", title=f"p{i}", finding_ids=[f"F{i}"], steps=[step, advice]) for i in range(4)]
    script = fixscript.render_script(plans, [], "test")
    assert script.count("--- a/.env") == 2 and script.count("ADVICE") == 2  # (header + one step)
    assert script.count("the same as step 1.1") == 3


def test_fix_hint_repeats_the_users_input_and_options(tmp_path):
    d = tmp_path / "seed"
    shutil.copytree(SEED, d)
    code, out, err = run_cli(["analyze", str(d), "--target", "rtx-pro-6000"], env=_env())
    flat = " ".join(out.split())
    assert f"fix plan(s) available: run bwdoctor fix {d} --target rtx-pro-6000 to see" in flat


def test_fix_hint_names_the_environment_inspected():
    from types import SimpleNamespace

    live = SimpleNamespace(mode="live", inputs=[], options={"target": "h200", "level": "quick",
                                                            "python": "/srv/vllm env/bin/python"})
    assert fixscript.fix_command(live) == "bwdoctor fix --target h200 --python '/srv/vllm env/bin/python'"


def test_select_limits_what_is_applied(tmp_path):
    d = tmp_path / "seed"
    shutil.copytree(SEED, d)
    for f in [d, *d.iterdir()]:
        f.chmod(0o755 if f.is_dir() else 0o644)
    before = (d / "docker-compose.vllm.yml").read_text()
    code, out, err = run_cli(["fix", str(d), "--target", "rtx-pro-6000", "--select", "BWD-CFG-006", "--apply", "--yes"],
                             env=_env())
    after = (d / "docker-compose.vllm.yml").read_text()
    assert "ipc: host" in after
    assert [ln for ln in before.splitlines() if "VLLM_" in ln] == [ln for ln in after.splitlines() if "VLLM_" in ln]
    assert (d / "Dockerfile").read_text() == (SEED / "Dockerfile").read_text()


def test_python_steps_use_the_inspected_interpreter():
    step = FixStep(description="Install vllm", argv=["python3", "-m", "pip", "install", "vllm==0.11.0"],
                   check=["python3", "-c", "pass", "vllm==0.11.0"], undo="python3 -m pip install vllm==0.6.2")
    plan = FixPlan(remedy_id="vllm.install", title="t", finding_ids=["X"], steps=[step])
    out = fixscript.use_interpreter([plan], "/opt/venv/bin/python")[0].steps[0]
    assert out.argv[0] == "/opt/venv/bin/python" and out.check[0] == "/opt/venv/bin/python"
    assert out.undo.startswith("/opt/venv/bin/python -m pip")
    advice = fixscript.files_only([plan])[0].steps[0]
    assert advice.advisory and "not on this machine" in advice.description


def test_dry_run_without_apply_previews_the_script(tmp_path):
    d = tmp_path / "seed"
    shutil.copytree(SEED, d)
    code, out, err = run_cli(["fix", str(d), "--target", "rtx-pro-6000", "--dry-run"], env=_env())
    assert code == 0 and out.startswith("#!/usr/bin/env bash"), err
    assert (d / "Dockerfile").read_text() == (SEED / "Dockerfile").read_text()
