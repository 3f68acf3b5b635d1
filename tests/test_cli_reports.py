"""Reports and the smaller commands through the real entry point: the schema documents every field,
Markdown leads with the verdict, SARIF points into the files, explain takes every spelling, -vv
says more than -v, no PASS without a check behind it, arch lists every file, kb names the nearest
GPUs, and long steps show their stage."""

import json
import os
from pathlib import Path

import jsonschema

from conftest import ROOT, run_cli

SCHEMA = json.loads((ROOT / "bwdoctor" / "schema" / "report.schema.json").read_text())
CUDABIN = ROOT / "tests" / "data" / "cudabin"


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BWDOCTOR_") and k not in ("COLUMNS", "NO_COLOR")}
    env["PATH"] = "/usr/bin:/bin"
    env.update(extra)
    return env


def _undocumented(node, where="$"):
    """Property definitions of the schema without a description."""
    out = []
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            if isinstance(sub, dict) and "description" not in sub and "$ref" not in sub:
                out.append(f"{where}.{name}")
            out += _undocumented(sub, f"{where}.{name}")
        for key in ("items", "oneOf", "$defs", "additionalProperties"):
            sub = node.get(key)
            if isinstance(sub, dict):
                out += [x for k, v in (sub.items() if key == "$defs" else [(key, sub)]) for x in
                        _undocumented(v, f"{where}.{k}")]
            elif isinstance(sub, list):
                out += [x for i, v in enumerate(sub) for x in _undocumented(v, f"{where}.{key}[{i}]")]
    return out


def test_schema_documents_every_field_and_reports_validate(tmp_path):
    assert _undocumented(SCHEMA) == []
    assert set(SCHEMA["required"]) == set(SCHEMA["properties"])
    env_file = tmp_path / ".env"
    env_file.write_text("VLLM_ENABLE_FP8=1\nVLLM_MODEL=some/model\n")
    for args in (["run"], ["run", "--target", "b200", "--level", "standard"], ["analyze", str(env_file)],
                 ["analyze", str(ROOT / "tests" / "data" / "evidence" / "h200-nvidia-smi.txt")]):
        code, out, err = run_cli(args + ["--format", "json"], env=clean_env())
        jsonschema.validate(json.loads(out), SCHEMA, cls=jsonschema.Draft202012Validator)


def test_markdown_leads_with_the_verdict_and_folds_passes_and_skips():
    code, md, _ = run_cli(["run", "--target", "b200", "--format", "markdown"], env=clean_env())
    lines = md.splitlines()
    assert lines[0] == "## bwdoctor: **NOT READY**" and lines[2].startswith("vLLM is not installed")
    problems = md.index("### Problems")
    for folded in ("<details><summary>Passed (", "<details><summary>Not checked ("):
        assert md.index(folded) > problems
    table = md[problems:md.index("<details>")]
    assert "| SKIP |" not in table and "| PASS |" not in table


def test_sarif_points_at_the_file_and_line(tmp_path):
    env_file = tmp_path / "serve.env"
    env_file.write_text("VLLM_MODEL=some/model\nVLLM_ENABLE_FP8=1\n")
    code, out, _ = run_cli(["analyze", str(env_file), "--format", "sarif"], env=clean_env())
    results = json.loads(out)["runs"][0]["results"]
    located = [loc["physicalLocation"] for r in results if r["level"] in ("error", "warning")
               for loc in r["locations"] if "physicalLocation" in loc]
    assert located, results
    assert {loc["artifactLocation"]["uri"] for loc in located} == {str(env_file)}
    assert {2} <= {loc["region"]["startLine"] for loc in located}  # VLLM_ENABLE_FP8 is on line 2


def test_sarif_line_of_a_finding_about_a_file_line(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("# an old base image\nFROM nvidia/cuda:12.4.1-runtime-ubuntu22.04\n\nRUN pip3 install vllm==0.6.2\n")
    code, out, _ = run_cli(["analyze", str(dockerfile), "--target", "rtx-pro-6000", "--format", "sarif"],
                           env=clean_env())
    results = json.loads(out)["runs"][0]["results"]
    base = [r for r in results if r["ruleId"] == "BWD-CFG-003" and r["level"] == "error"]
    assert base, [(r["ruleId"], r["level"]) for r in results]
    first = base[0]["locations"][0]["physicalLocation"]
    assert first["artifactLocation"]["uri"] == str(dockerfile) and first["region"]["startLine"] == 2  # FROM


def test_explain_takes_ids_with_or_without_prefix_and_root_causes():
    for query in ("BWD-STACK-001", "STACK-001", "bwd-stack-001", "stack-001"):
        code, out, _ = run_cli(["explain", query], env=clean_env())
        assert code == 0 and out.startswith("BWD-STACK-001 - PyTorch has kernels for the GPU"), query
    code, out, _ = run_cli(["explain", "arch_not_in_torch_wheel"], env=clean_env())
    assert code == 0 and "BWD-STACK-001" in out and "torch.reinstall-cuda-variant" in out
    code, out, err = run_cli(["explain", "arch_not_in_torch"], env=clean_env())
    assert code == 2 and "arch_not_in_torch_wheel" in err


def test_verbosity_levels_and_plain_messages():
    code, plain, _ = run_cli(["run", "--target", "b200"], env=clean_env())
    code, v1, _ = run_cli(["run", "--target", "b200", "-v"], env=clean_env())
    code, v2, _ = run_cli(["run", "--target", "b200", "-vv"], env=clean_env())
    assert len(plain) < len(v1) < len(v2)
    assert "host.python_env" not in plain and "host.python_env" in v1  # fact names only with -v
    assert "details:" in v2 and "ms, severity" in v2 and "ms, severity" not in v1
    assert "fact '" not in plain and "was not collected" not in plain


def test_no_pass_without_evidence_behind_it(tmp_path):
    code, out, _ = run_cli(["run", "-v"], env=clean_env())  # no GPU on this machine
    assert "MIG is not enabled" not in out
    readme = tmp_path / "README.md"
    readme.write_text("We run vLLM on an NVIDIA H100 80GB HBM3.\n")
    env_file = tmp_path / ".env"
    env_file.write_text("MIG_PROFILE=3g.40gb\n")
    code, out, _ = run_cli(["analyze", str(readme), str(env_file), "--format", "json"], env=clean_env())
    findings = {(f["id"], f["status"]) for f in json.loads(out)["findings"]}
    assert ("BWD-GPU-008", "pass") not in findings and ("BWD-GPU-002", "pass") not in findings


def test_arch_lists_every_file_with_its_reason(tmp_path):
    fatbin = (CUDABIN / "family.fatbin").read_bytes()
    cut = tmp_path / "cut.fatbin"
    cut.write_bytes(fatbin[: len(fatbin) // 2])
    named = [str(CUDABIN / "multi.so"), str(CUDABIN / "not_elf.so"), str(CUDABIN / "plain_host.so"), str(cut)]
    code, out, _ = run_cli(["arch", *named, "--format", "json"], env=clean_env())
    rows = {r["path"]: r for r in json.loads(out)}
    assert code == 0 and list(rows) == named
    assert "sm_120a" in rows[named[0]]["sass"] and rows[named[0]]["reason"] is None
    assert rows[named[1]]["reason"] == "not an ELF file"
    assert rows[named[2]]["reason"] == "no CUDA device code"
    assert rows[named[3]]["note"].startswith("truncated fatbin")
    code, out, err = run_cli(["arch", str(CUDABIN / "multi.so"), str(tmp_path / "absent.so")], env=clean_env())
    assert code == 2 and "absent.so" in out and "cannot read" in out
    code, out, _ = run_cli(["arch", str(CUDABIN / "plain_host.so")], env=clean_env())
    assert "plain_host.so" in out and "(no CUDA device code)" in out
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, _ = run_cli(["arch", str(empty), "--format", "json"], env=clean_env())
    assert code == 0 and json.loads(out) == [{"path": str(empty), "sass": [], "ptx": [], "note": None,
                                              "reason": "no *.so, *.cubin or *.fatbin in this folder has CUDA device code"}]


def test_kb_with_an_unknown_gpu_is_an_error_naming_the_nearest():
    code, out, err = run_cli(["kb", "--gpu", "h2000"], env=clean_env())
    assert code == 2 and out == "" and "Nearest: h200" in err
    code, out, err = run_cli(["kb", "--gpu", "rtx5090", "--format", "json"], env=clean_env())
    assert code == 0 and [g["key"] for g in json.loads(out)["gpus"]] == ["rtx-5090"]


def test_a_big_log_shows_its_stages_on_stderr(tmp_path, monkeypatch):
    log = tmp_path / "serve.log"
    line = "INFO 12-01 10:00:00 [loggers.py:123] Avg prompt throughput: 1.0 tokens/s, Running: 1 reqs\n"
    with open(log, "w") as fh:
        fh.write(line * (1024 * 1024 * 2 // len(line)))
    env = clean_env()
    code, out, err = run_cli(["analyze", str(log), "--format", "json"], env=env)
    assert "reading evidence" not in err  # small: nothing to show
    import bwdoctor.pipeline as pipeline
    import bwdoctor.progress as progress

    monkeypatch.setattr(pipeline, "BIG_EVIDENCE_BYTES", 1024 * 1024)
    monkeypatch.setattr(progress, "PLAIN_AFTER_S", 0.0)  # lines from the start, however fast
    from click.testing import CliRunner

    from bwdoctor.cli import cli

    res = CliRunner().invoke(cli, ["analyze", str(log), "--format", "json"])
    lines = [x for x in res.stderr.splitlines() if x.startswith("bwdoctor: reading evidence: ")]
    assert lines and "serve.log" in lines[0] and "vllm-log" in lines[0] and "(at " in lines[0]
    assert lines[-1].startswith("bwdoctor: reading evidence: done (at ")
    assert Path(log).exists()


def test_without_a_terminal_each_stage_is_one_line(monkeypatch, capsys):
    import time

    from bwdoctor import progress

    monkeypatch.setattr(progress, "PLAIN_AFTER_S", 0.0)
    with progress.live_progress(True, "collecting facts", plain=True):
        for text in ("smoke: import 1 s / 240 s", "smoke: import 2 s / 240 s", "smoke: load 1 s / 300 s",
                     "smoke: load 2 s / 300 s", "smoke: generate 0 s / 180 s"):
            progress.report(text)
            time.sleep(0.15)
    lines = capsys.readouterr().err.splitlines()
    stages = [line.split(": ")[-1].split()[0] for line in lines]
    assert stages == ["import", "load", "generate", "done"], lines
    assert all(line.startswith("bwdoctor: collecting facts: ") and "(at " in line for line in lines)


def test_schema_command_prints_the_shipped_schema_and_reports_validate_against_it(tmp_path):
    out = tmp_path / "s.json"
    code, _, err = run_cli(["schema", "-o", str(out)], env=clean_env())
    assert code == 0, err
    assert json.loads(out.read_text()) == SCHEMA
    code, printed, err = run_cli(["schema"], env=clean_env())
    assert code == 0 and json.loads(printed) == SCHEMA, err
    report = tmp_path / "r.json"
    code, _, err = run_cli(["analyze", str(ROOT / "tests" / "data" / "evidence" / "h100-nvidia-smi.txt"), "-o",
                            str(report), "--fail-on", "never"], env=clean_env())
    assert code == 0, err
    jsonschema.validate(json.loads(report.read_text()), json.loads(out.read_text()))
