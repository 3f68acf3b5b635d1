"""Secrets planted in evidence, in the process environment, in a stored smoke log and in command
options never reach any output: the five report formats at every verbosity, the fix script, the
``--apply --dry-run`` listing, error messages. Harmless look-alikes survive."""

from __future__ import annotations

import json
import os
import sys

import pytest
from secret_corpus import HARMLESS, Corpus, plant_environment, plant_files, smoke_report

from bwdoctor.cli import main
from bwdoctor.redact import REDACTED, escape_controls, is_secret_name, redact, redact_text

from conftest import run_cli

FORMATS = ("console", "json", "markdown", "junit", "sarif")
VERBOSITY = ((), ("-v",), ("-vv",))


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BWDOCTOR_")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evidence")
    corpus = Corpus()
    plant_files(folder, corpus)
    environment = plant_environment(corpus)
    report = folder.parent / f"{folder.name}-smoke.json"
    report.write_text(json.dumps(smoke_report((folder / "vllm.log").read_text())))
    return folder, corpus, environment, report


def test_corpus_is_large_enough(planted):
    _, corpus, _, _ = planted
    assert len(corpus.markers) >= 60


def in_process(args, capfd):
    """The real entry point, in this process (the subprocess runs elsewhere cover start-up)."""
    capfd.readouterr()
    code = main(args)
    out, err = capfd.readouterr()
    return code, out, err


@pytest.mark.parametrize("fmt", FORMATS)
def test_evidence_secrets_reach_no_format(planted, fmt, capfd, cli_env):
    folder, corpus, _, report = planted
    for verbose in VERBOSITY:
        for args in (["analyze", str(folder)], ["run", "--from", str(report)]):
            code, out, err = in_process([*args, "--format", fmt, *verbose], capfd)
            assert code in (0, 1), err
            assert "Traceback" not in err
            leaks = corpus.leaks(out + err)
            assert not leaks, f"{args[0]} --format {fmt} {verbose}: {leaks}"


def test_process_environment_secrets_reach_no_format(planted, capfd, cli_env, monkeypatch):
    _, corpus, environment, _ = planted
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    for fmt in FORMATS:
        for verbose in (("-vv",),) if fmt != "json" else VERBOSITY:
            code, out, err = in_process(["run", "--format", fmt, *verbose], capfd)
            assert code in (0, 1), err
            leaks = corpus.leaks(out + err)
            assert not leaks, f"run --format {fmt} {verbose}: {leaks}"
    # the environment was seen: the names are reported, the values are not
    code, out, err = run_cli(["run", "--format", "json", "-vv"], env=clean_env(**environment))
    assert not corpus.leaks(out + err)
    assert "VLLM_API_KEY" in out and REDACTED in out


def test_fix_script_and_dry_run_carry_no_secret(planted, tmp_path):
    folder, corpus, environment, _ = planted
    work = tmp_path / "cfg"
    work.mkdir()
    for f in folder.iterdir():
        (work / f.name).write_bytes(f.read_bytes())
    for args in (["fix", str(work), "--target", "rtx-pro-6000"], ["fix", str(work), "-v"],
                 ["fix", str(work), "--apply", "--dry-run", "--yes"], ["fix", "--from", str(work.parent / "none.json")]):
        code, out, err = run_cli(args, env=clean_env(**environment))
        assert "Traceback" not in err
        leaks = corpus.leaks(out + err)
        assert not leaks, f"{args}: {leaks}"
    for f in folder.iterdir():  # a dry run edits nothing
        assert (work / f.name).read_bytes() == f.read_bytes()


def test_error_messages_and_options_carry_no_secret(planted):
    _, corpus, _, _ = planted
    secret = f"sk-proj-{corpus.m('--target option')}abcdefghijklmnop"
    code, out, err = run_cli(["run", "--target", secret], env=clean_env())
    assert code == 2 and not corpus.leaks(out + err), err
    url = f"http://svc:{corpus.m('--endpoint URL password')}@127.0.0.1:9/v1"
    code, out, err = run_cli(["run", "--endpoint", url, "--format", "json", "-vv"], env=clean_env())
    assert not corpus.leaks(out + err), out + err


def test_harmless_look_alikes_survive(planted):
    folder, _, _, report = planted
    code, out, err = run_cli(["run", "--from", str(report), "--format", "json", "-vv"], env=clean_env())
    code2, out2, err2 = run_cli(["analyze", str(folder), "--format", "json", "-vv"], env=clean_env())
    out += out2
    for word in HARMLESS:
        assert word in out, word
    engine = next(ln for ln in (folder / "vllm.log").read_text().splitlines() if "encoder_cudagraph_token_budgets" in ln)
    assert redact_text(engine) == engine


# ----------------------------------------------------------------------------- each form, alone

FORMS = [
    ("VLLM_EXTRA_ARGS=--api-key SECRETVALUE1 --port 8000", "SECRETVALUE1"),
    ("vllm serve m --api-key SECRETVALUE2", "SECRETVALUE2"),
    ("vllm serve m --api-key=SECRETVALUE3", "SECRETVALUE3"),
    ('vllm serve m --api-key "SECRET VALUE4"', "VALUE4"),
    ("Authorization: Basic dXNlcjpTRUNSRVRWQUxVRTU=", "dXNlcjpTRUNSRVRWQUxVRTU="),
    ("authorization=Bearer SECRETVALUE6abcdef", "SECRETVALUE6"),
    ("-----BEGIN EC PRIVATE KEY-----\nSECRETVALUE7\n-----END EC PRIVATE KEY-----", "SECRETVALUE7"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nSECRETVALUE8 (truncated)", "SECRETVALUE8"),
    ("redis://:SECRETVALUE9@cache:6379", "SECRETVALUE9"),
    ("https://h/x?a=1&password=SECRETVALUE10&b=2", "SECRETVALUE10"),
    ("{'api_key': ['SECRETVALUE11', 'SECRETVALUE11b']}", "SECRETVALUE11"),
    ('{"api_key": ["SECRETVALUE12"]}', "SECRETVALUE12"),
    ("key sk_live_SECRETVALUE13abcdefghij", "SECRETVALUE13"),
    ("PGPASSWORD=SECRETVALUE14", "SECRETVALUE14"),
    ("DB_PASS=SECRETVALUE15", "SECRETVALUE15"),
    ("REDIS_PASS: SECRETVALUE16", "SECRETVALUE16"),
    ("HF_HUB_PASS='SECRETVALUE17'", "SECRETVALUE17"),
    ("AZURE_OPENAI_KEY=SECRETVALUE18", "SECRETVALUE18"),
    ('MYSQL_PASSWORD="SECRET VALUE19"', "VALUE19"),
    ("ENV HF_TOKEN SECRETVALUE20", "SECRETVALUE20"),
    ("Namespace(api_key='SECRETVALUE21', model='m')", "SECRETVALUE21"),
    ('"env": "HF_TOKEN=\\"SECRETVALUE22\\""', "SECRETVALUE22"),
    ("postgresql://app:SECRETVALUE23@db/app", "SECRETVALUE23"),
    ("--hf-token SECRETVALUE24", "SECRETVALUE24"),
    ("X-API-Key: SECRETVALUE25", "SECRETVALUE25"),
    ("token hf_SECRETVALUE26abcdefghijklmn", "SECRETVALUE26"),
]


@pytest.mark.parametrize("text,secret", FORMS)
def test_each_form_is_redacted(text, secret):
    assert secret not in redact_text(text)
    assert secret not in json.dumps(redact({"line": text, "lines": [text]}))


@pytest.mark.parametrize("name", ["PGPASSWORD", "DB_PASS", "REDIS_PASS", "HF_HUB_PASS", "AZURE_OPENAI_KEY",
                                  "MYSQL_ROOT_PASSWORD", "HF_TOKEN", "VLLM_API_KEY", "--api-key", "hfToken",
                                  "AWS_SECRET_ACCESS_KEY", "client_secret", "Authorization", "GHTOKEN"])
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["encoder_cudagraph_token_budgets", "max_num_batched_tokens", "kv_cache_token_count",
                                  "HF_TOKEN_PATH", "cache_key", "prefix_cache_key", "tokens", "pass", "bypass",
                                  "TOKENIZERS_PARALLELISM", "--max-num-batched-tokens", "token_budget", "key",
                                  "secretary", "author", "passed", "bytes_per_token", "time_to_first_token",
                                  "eos_token", "pad_token_id"])
def test_harmless_names(name):
    assert not is_secret_name(name)


@pytest.mark.parametrize("text", [
    "INFO [core.py:70] config: 'encoder_cudagraph_token_budgets': [512, 1024], max_num_batched_tokens=8192",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b AWS",
    "run 123e4567-e89b-12d3-a456-426614174000",
    "model=meta-llama/Llama-3.1-8B-Instruct tokenizer=nvidia/Llama-3.3-70B-Instruct-FP8",
    "Maximum concurrency for 8192 tokens per request: 12.5x; prompt_tokens=12 completion_tokens=16",
    "HF_TOKEN=${HF_TOKEN} VLLM_API_KEY=$VLLM_API_KEY",
    "vllm serve m --max-num-batched-tokens 8192 --tokenizer-mode auto",
])
def test_harmless_text_survives(text):
    assert redact_text(text) == text


def test_structures():
    out = redact({"DB_PASS": 123456, "cfg": {"api_key": ["a", "b"]}, "argv": ["vllm", "--api-key", "s3cr3t", "--port", "1"],
                  "pem": ["x", "-----BEGIN PRIVATE KEY-----", "body", "-----END PRIVATE KEY-----", "y"],
                  "items": [{"name": "PGPASSWORD", "value": "p"}], "max_num_batched_tokens": 8192})
    assert out == {"DB_PASS": REDACTED, "cfg": {"api_key": [REDACTED, REDACTED]},
                   "argv": ["vllm", "--api-key", REDACTED, "--port", "1"],
                   "pem": ["x", f"-----BEGIN PRIVATE KEY-----{REDACTED}-----END PRIVATE KEY-----", REDACTED, REDACTED, "y"],
                   "items": [{"name": "PGPASSWORD", "value": REDACTED}], "max_num_batched_tokens": 8192}


def test_control_characters_escaped():
    assert escape_controls("a\x1b]52;c;Zm9v\x07b\x00c\x9b") == "a\\x1b]52;c;Zm9v\\x07b\\x00c\\x9b"
    assert escape_controls("tab\tnew\nline\r\n") == "tab\tnew\nline\r\n"


def test_redaction_is_fast_on_a_big_log():
    import time

    line = "INFO 12-01 10:00:00 [core.py:70] step=1 tokens=512 max_num_batched_tokens=8192 model=m key=v\n"
    text = line * 20000  # ~1.9 MB
    start = time.perf_counter()
    redact_text(text)
    assert time.perf_counter() - start < 5.0


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_snapshot_carries_no_secret(planted):
    _, corpus, environment, _ = planted
    for fmt in ("json", "console"):
        code, out, err = run_cli(["snapshot", "--format", fmt], env=clean_env(**environment))
        assert code == 0, err
        assert not corpus.leaks(out + err)
