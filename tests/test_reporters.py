"""Every output format, read back by a real consumer; secrets planted in facts never leak."""

import json
import os
from pathlib import Path

import jsonschema
import pytest
from junitparser import Error, Failure, JUnitXml, Skipped

from conftest import DATA, ROOT, run_cli

SECRETS = {
    "hf": "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345",
    "openai": "sk-proj-A1b2C3d4E5f6G7h8I9j0K1l2",
    "aws_key": "AKIAIOSFODNN7EXAMPLE",
    "aws_secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "url_password": "hunter2-not-a-real-pass",
    "plain_password": "CorrectHorseBatteryStaple",
    "github": "ghp_0123456789abcdefghijABCDEFGHIJklmnop",
}

PLUGIN = f'''
from bwdoctor import CheckSpec, CollectorSpec, Fact, hookimpl, failed, warned, passed, skipped

def collect(options):
    yield Fact("host.env", {{"HF_TOKEN": "{SECRETS['hf']}", "AWS_SECRET_ACCESS_KEY": "{SECRETS['aws_secret']}",
                            "AWS_ACCESS_KEY_ID": "{SECRETS['aws_key']}", "DB_PASSWORD": "{SECRETS['plain_password']}",
                            "CUDA_VISIBLE_DEVICES": "0"}}, "environment")
    yield Fact("leaky.url", "https://admin:{SECRETS['url_password']}@registry.example.com/v2/", "compose:line 3")
    yield Fact("leaky.cmd", "vllm serve m --api-key {SECRETS['openai']} --hf-token={SECRETS['hf']}", "cmdline")
    yield Fact("leaky.list", [{{"name": "GITHUB_TOKEN", "value": "{SECRETS['github']}"}}], "ci")

def chk(s):
    return [failed("token {SECRETS['openai']} found in " + s.value("leaky.url"), ["host.env", "leaky.url", "leaky.cmd", "leaky.list"],
                   subject="a", root_cause="container_runtime"),
            warned("a warning", ["host.env"], subject="b"),
            passed("fine", subject="c"), skipped("n/a", subject="d")]

@hookimpl
def bwdoctor_collectors():
    return [CollectorSpec("leaky", collect, provides=["leaky.*"])]

@hookimpl
def bwdoctor_checks():
    return [CheckSpec("BWD-LEAK-001", "Secrets test", chk, doc="No automatic remedy.")]
'''


@pytest.fixture(scope="module")
def plugdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("plugs")
    (d / "leaky.py").write_text(PLUGIN)
    return d


def env():
    return {k: v for k, v in os.environ.items() if not k.startswith("BWDOCTOR_")}


def render(plugdir: Path, fmt: str, *extra: str) -> tuple[int, str]:
    code, out, err = run_cli(["--plugin-dir", str(plugdir), "run", "--select", "BWD-LEAK-001", "--format", fmt,
                              *extra], env=env())
    assert "Traceback" not in err, err
    return code, out


@pytest.mark.parametrize("fmt", ["console", "json", "markdown", "junit", "sarif"])
def test_no_secret_reaches_any_format(plugdir, fmt):
    code, out = render(plugdir, fmt, "-v")
    assert code == 1
    for name, secret in SECRETS.items():
        assert secret not in out, f"{name} leaked in {fmt}"
    assert "REDACTED" in out or fmt == "junit"


def test_snapshot_command_redacts_too(plugdir):
    code, out, err = run_cli(["--plugin-dir", str(plugdir), "snapshot"], env=env())
    assert code == 0
    for secret in SECRETS.values():
        assert secret not in out
    facts = {f["key"]: f["value"] for f in json.loads(out)["facts"]}
    assert facts["host.env"]["CUDA_VISIBLE_DEVICES"] == "0"


def test_junit_is_read_back_by_a_junit_consumer(plugdir, tmp_path):
    code, out = render(plugdir, "junit")
    path = tmp_path / "r.xml"
    path.write_text(out)
    xml = JUnitXml.fromfile(str(path))
    cases = {c.name: c for suite in xml for c in suite}
    by_subject = {name.split("[")[-1].rstrip("]"): c for name, c in cases.items()}
    assert isinstance(by_subject["a"].result[0], Failure)
    assert by_subject["b"].result == []  # warn passes unless --fail-on warn
    assert isinstance(by_subject["d"].result[0], Skipped)
    assert xml.failures == 1
    code, out = render(plugdir, "junit", "--fail-on", "warn")
    path.write_text(out)
    xml = JUnitXml.fromfile(str(path))
    assert xml.failures == 2


def test_junit_marks_check_errors_as_errors(tmp_path):
    d = tmp_path / "p"
    d.mkdir()
    (d / "boom.py").write_text("from bwdoctor import CheckSpec, hookimpl\n@hookimpl\ndef bwdoctor_checks():\n"
                               "    return [CheckSpec('BWD-BOOM-001', 'boom', lambda s: 1/0, doc='x')]\n")
    code, out, err = run_cli(["--plugin-dir", str(d), "run", "--select", "BOOM", "--format", "junit"], env=env())
    path = tmp_path / "r.xml"
    path.write_text(out)
    xml = JUnitXml.fromfile(str(path))
    [case] = [c for s in xml for c in s]
    assert isinstance(case.result[0], Error)
    assert xml.errors == 1 and xml.failures == 0


def test_sarif_validates_against_the_sarif_2_1_0_schema(plugdir):
    code, out = render(plugdir, "sarif")
    doc = json.loads(out)
    schema = json.loads((DATA / "schemas" / "sarif-2.1.0-rtm.5.json").read_text())
    jsonschema.Draft4Validator(schema).validate(doc)
    results = doc["runs"][0]["results"]
    levels = sorted(r["level"] for r in results)
    assert levels == ["error", "note", "warning"]
    assert all(r["ruleId"] == "BWD-LEAK-001" for r in results)


def test_json_report_validates_against_the_documented_schema(plugdir):
    code, out = render(plugdir, "json")
    schema = json.loads((ROOT / "bwdoctor" / "schema" / "report.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(json.loads(out))


def test_markdown_has_summary_findings_and_evidence(plugdir):
    code, out = render(plugdir, "markdown")
    assert out.startswith("## bwdoctor: **NOT READY**")
    assert "1 fail, 1 warn" in out
    problems = out.index("### Problems")
    assert "| FAIL | `BWD-LEAK-001` [a]" in out[problems:]
    # passes and skips are folded away below the problems
    assert out.index("<details><summary>Passed (1)</summary>") > problems
    assert out.index("<details><summary>Not checked (1)</summary>") > problems
    assert "<details><summary>Evidence</summary>" in out


def test_console_groups_by_area_and_shows_evidence_under_verbose(plugdir):
    code, out = render(plugdir, "console")
    assert "LEAK" in out and "FAIL BWD-LEAK-001 [a]" in out and "leaky.url" not in out
    code, out = render(plugdir, "console", "-v")
    assert "leaky.url" in out and "(compose:line 3)" in out
