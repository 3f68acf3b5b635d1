"""``vllm serve`` in sentences is no command line: English words after it are not models, and what a
sentence does name is kept as a guess; real command lines (code blocks, prompts, scripts, Dockerfile
CMD, compose command) keep every argument."""

from __future__ import annotations

from pathlib import Path

import pytest

import bwdoctor_checks.parsers.config as pc
from bwdoctor import pipeline
from bwdoctor.manager import PluginManager
from bwdoctor.runner import load_evidence


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _facts(path: Path, parser) -> dict:
    return {f.key: f.value for f in parser(load_evidence(path))}


def _snapshot(*paths: Path) -> dict:
    request = pipeline.Request(mode="analyze", paths=tuple(str(p) for p in paths), fail_on="never")
    report = pipeline.build_report(PluginManager(), request).to_dict()
    snap = report["snapshot"]
    return {"facts": {f["key"]: f for f in snap["facts"]}, "guessed": snap["meta"].get("guessed") or {}}


README_PROSE = """# Serving notes

To raise the context, add this flag on the vllm serve command line and restart.
Afterwards run vllm serve with your model; the vllm serve process logs its settings.
For everything else, see vllm serve --help.
"""


def test_sentences_about_vllm_serve_name_no_model(tmp_path):
    p = _write(tmp_path, "README.md", README_PROSE)
    assert "config.serve_args" not in _facts(p, pc.parse_cmdline)
    assert _facts(p, pc.parse_serve_text) == {}
    assert "config.serve_args" not in _snapshot(p)["facts"]


@pytest.mark.parametrize("words, model", [
    ("with your model", None),
    ("command line", None),
    ("process", None),
    ("--help", None),
    ("Qwen/Qwen2.5-7B-Instruct on one GPU", "Qwen/Qwen2.5-7B-Instruct"),
    ("with Qwen/Qwen2.5-7B-Instruct.", "Qwen/Qwen2.5-7B-Instruct"),
    ("/srv/weights/mistral", "/srv/weights/mistral"),
    ("Llama-3.1-8B-Instruct, it works", "Llama-3.1-8B-Instruct"),  # a name the model table knows
    ("--model to choose the weights", None),
])
def test_prose_serve_args_keep_only_model_references(words, model):
    assert pc.prose_serve_args(words).get("model") == model


def test_code_block_in_readme_is_a_command(tmp_path):
    p = _write(tmp_path, "README.md", README_PROSE + "\nStart it like this:\n\n```bash\n"
               "vllm serve meta-llama/Llama-3.1-8B-Instruct --max-model-len 8192\n```\n")
    f = _facts(p, pc.parse_cmdline)
    assert f["config.serve_args"]["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert f["config.requested"]["max_model_len"] == 8192
    got = _snapshot(p)
    assert got["facts"]["config.serve_args"]["value"]["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert "config.serve_args" not in got["guessed"]  # a command line is no guess


@pytest.mark.parametrize("line", [
    "$ vllm serve my-finetune --port 9000",
    "(venv) user@box:~/work$ vllm serve my-finetune --port 9000",
    "CUDA_VISIBLE_DEVICES=1 nohup vllm serve my-finetune --port 9000",
    "cd /srv && vllm serve my-finetune --port 9000",
    "Command: vllm serve my-finetune --port 9000",
    "I start it with `vllm serve my-finetune --port 9000` every morning",
])
def test_command_lines_keep_any_model_word(tmp_path, line):
    p = _write(tmp_path, "notes.txt", f"Some notes.\n{line}\n")
    assert _facts(p, pc.parse_cmdline)["config.serve_args"]["model"] == "my-finetune"
    assert _facts(p, pc.parse_serve_text) == {}


def test_shell_script_lines_are_commands(tmp_path):
    p = _write(tmp_path, "start.sh", "#!/bin/bash\nset -e\nexec vllm serve local-model --dtype half\n")
    assert _facts(p, pc.parse_cmdline)["config.serve_args"] == {"model": "local-model", "--dtype": "half"}


def test_a_command_continued_over_lines_is_a_command(tmp_path):
    p = _write(tmp_path, "issue.txt", "after pulling the image I started docker run --gpus all \\\n"
               "  vllm/vllm-openai:v0.9.0 --model some-checkpoint\n")
    f = _facts(p, pc.parse_cmdline)
    assert f["config.serve_args"]["model"] == "some-checkpoint"


def test_a_model_named_in_a_sentence_is_marked_guessed(tmp_path):
    p = _write(tmp_path, "issue.md", "We deploy vllm serve Qwen/Qwen2.5-7B-Instruct --max-model-len 16384 on "
                                     "one card\n")
    got = _snapshot(p)
    fact = got["facts"]["config.serve_args"]
    assert fact["value"]["model"] == "Qwen/Qwen2.5-7B-Instruct" and fact["value"]["--max-model-len"] == "16384"
    assert got["guessed"]["config.serve_args"] == fact["source"]


def test_a_command_line_wins_over_a_sentence(tmp_path):
    p = _write(tmp_path, "issue.md", "I tried vllm serve Qwen/Qwen2.5-7B-Instruct first.\n\n```\n"
                                     "vllm serve meta-llama/Llama-3.1-8B-Instruct --max-model-len 8192\n```\n")
    got = _snapshot(p)
    assert got["facts"]["config.serve_args"]["value"]["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert "config.serve_args" not in got["guessed"]


def test_dockerfile_cmd_exec_form(tmp_path):
    p = _write(tmp_path, "Dockerfile", "FROM python:3.12-slim\nRUN pip install vllm==0.9.1\n"
                                       'CMD ["vllm", "serve", "Qwen/Qwen2.5-7B-Instruct"]\n')
    f = _facts(p, pc.parse_dockerfile)
    assert f["config.serve_args"]["model"] == "Qwen/Qwen2.5-7B-Instruct"
    assert f["config.requested"]["model"] == "Qwen/Qwen2.5-7B-Instruct"


def test_compose_command_model_flag(tmp_path):
    p = _write(tmp_path, "docker-compose.yml", "services:\n  llm:\n    image: vllm/vllm-openai:v0.9.0\n"
                                               "    command: --model /models/llama\n")
    assert pc.detect_compose(load_evidence(p))
    f = _facts(p, pc.parse_compose)
    assert f["config.serve_args"]["model"] == "/models/llama"
    assert f["config.requested"]["model"] == "/models/llama"


def _deployment_snapshot(guessed: bool):
    from bwdoctor import Fact
    from bwdoctor.types import Snapshot

    snap = Snapshot()
    src = "serve-text:README.md:line 3" if guessed else "cmdline:run.sh"
    snap.add(Fact("config.serve_args", {"model": "Qwen/Qwen2.5-7B-Instruct", "--max-model-len": "4096"}, src))
    snap.add(Fact("vllm.config", {"model": "meta-llama/Llama-3.1-8B-Instruct", "max_model_len": 8192},
                  "vllm-log:line 12"))
    if guessed:
        snap.meta["guessed"] = {"config.serve_args": src}
    return snap


def test_engine_config_wins_over_a_sentence_and_a_command_line_over_the_engine():
    from bwdoctor_checks._lib import fitdeploy as fd

    d, model, src = fd.read_deployment(_deployment_snapshot(guessed=True))
    assert model == "meta-llama/Llama-3.1-8B-Instruct" and d.max_model_len == 8192 and "engine config" in src
    d, model, src = fd.read_deployment(_deployment_snapshot(guessed=False))
    assert model == "Qwen/Qwen2.5-7B-Instruct" and d.max_model_len == 4096 and src == "vllm serve"


def test_a_guessed_model_is_said_to_be_a_guess():
    from bwdoctor_checks._lib import fitdeploy as fd

    snap = _deployment_snapshot(guessed=True)
    snap.facts.pop("vllm.config")
    _, model, src = fd.read_deployment(snap)
    assert model == "Qwen/Qwen2.5-7B-Instruct" and "a guess" in src and "README.md:line 3" in src
