"""Config parsers: Dockerfile, compose, .env and command lines, detected by content."""

from __future__ import annotations

from pathlib import Path

import pytest

import bwdoctor_checks.parsers.config as pc
from bwdoctor.runner import load_evidence

DATA = Path(__file__).parent / "data" / "config"


def _facts(path: Path, parser) -> dict:
    ev = load_evidence(path)
    out: dict = {}
    for f in parser(ev):
        out[f.key] = f.value
    return out


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def test_dockerfile_multistage_args_pins_and_cmd():
    p = DATA / "blobs" / "Containerfile.multi"
    assert pc.detect_dockerfile(load_evidence(p))
    f = _facts(p, pc.parse_dockerfile)
    assert f["config.base_image"]["cuda_version"] == "12.8"
    assert f["config.base_image"]["tag"] == "12.8.1-devel-ubuntu24.04"  # ARG default resolved, stage alias followed
    assert f["config.vllm_pin"] == {"version": "0.10.0", "spec": "==0.10.0", "origin": "pip", "file": str(p), "line": 7}
    assert f["config.pip_pins"]["torch"]["version"] == "2.7.1"
    assert f["config.pip_indexes"][0]["variant"] == "cu128"
    assert f["config.env"]["VLLM_ATTENTION_BACKEND"] == "FLASHINFER"
    files = f["config.files"][str(p)]
    assert files["kind"] == "dockerfile" and files["vars"] == {"VLLM_ATTENTION_BACKEND": 5, "HF_HOME": 6}
    assert files["from_line"] == 4 and files["vllm_pin_line"] == 7
    assert f["config.requested"]["kv_cache_dtype"] == "fp8"
    assert f["config.requested"]["max_model_len"] == 32000


def test_dockerfile_inside_a_blob_and_vllm_image(tmp_path):
    p = _write(tmp_path, "notes.txt", "My image:\n\n```\nFROM vllm/vllm-openai:v0.9.0\nENV VLLM_USE_V1=1\n"
                                      "CMD [\"--model\", \"Qwen/Qwen3-4B\", \"-tp\", \"2\"]\n```\nthen it fails\n")
    assert pc.detect_dockerfile(load_evidence(p))
    f = _facts(p, pc.parse_dockerfile)
    assert f["config.base_image"]["vllm_version"] == "0.9.0"
    assert f["config.base_image"]["cuda_version"] == "12.8"
    assert f["config.vllm_pin"]["origin"] == "image"
    assert f["config.env_sources"]["VLLM_USE_V1"].endswith(":5")
    assert f["config.requested"]["tensor_parallel_size"] == 2


def test_compose_map_env_gpus_and_command():
    p = DATA / "compose-tp" / "stack.yaml"
    assert pc.detect_compose(load_evidence(p))
    f = _facts(p, pc.parse_compose)
    c = f["config.compose"]
    assert c["service"] == "llm" and c["gpu_count"] == 2 and c["ipc"] is None and c["shm_bytes"] is None
    assert f["config.env"]["VLLM_ATTENTION_BACKEND"] == "FLASH_ATTN"
    assert f["config.files"][str(p)]["vars"] == {"HF_TOKEN": 7, "VLLM_ATTENTION_BACKEND": 8, "VLLM_USE_V1": 9}
    assert f["config.files"][str(p)]["service_line"] == 2
    assert f["config.requested"]["tensor_parallel_size"] == 2
    assert f["config.vllm_pin"]["version"] == "0.10.1"


def test_compose_list_env_ipc_shm_runtime(tmp_path):
    p = _write(tmp_path, "whatever.txt", "version: '3'\nservices:\n  api:\n    image: vllm/vllm-openai:latest\n"
                                         "    runtime: nvidia\n    ipc: host\n    shm_size: 16gb\n"
                                         "    command: vllm serve my/model --max-model-len=4096\n"
                                         "    environment:\n      - VLLM_LOGGING_LEVEL=INFO\n      - BARE_NAME\n")
    assert pc.detect_compose(load_evidence(p))
    f = _facts(p, pc.parse_compose)
    assert f["config.compose"]["ipc"] == "host" and f["config.compose"]["shm_bytes"] == 16 << 30
    assert f["config.compose"]["gpus"] == "runtime"
    assert f["config.env"] == {"VLLM_LOGGING_LEVEL": "INFO", "BARE_NAME": ""}
    assert f["config.requested"] == {"model": "my/model", "max_model_len": 4096, "source": f"{p}:8"}
    assert "config.vllm_pin" not in f  # latest is no version


def test_dotenv_values_lines_and_export():
    p = DATA / "blobs" / "serve.env"
    assert pc.detect_dotenv(load_evidence(p))
    f = _facts(p, pc.parse_dotenv)
    assert f["config.env"]["VLLM_ENABLE_FP8"] == "1"
    assert f["config.env"]["DB_PASSWORD"] == "s3cr3t value"
    assert f["config.files"][str(p)]["vars"]["VLLM_ATTENTON_BACKEND"] == 3


def test_cmdline_docker_run_blob():
    p = DATA / "blobs" / "issue-paste.md"
    ev = load_evidence(p)
    assert pc.detect_cmdline(ev) and not pc.detect_dotenv(ev) and not pc.detect_compose(ev)
    f = _facts(p, pc.parse_cmdline)
    d = f["config.docker_run"]
    assert d["gpu_count"] == 2 and d["runtime"] == "nvidia" and d["ipc"] is None and d["line"] == 4
    assert f["config.env"] == {"VLLM_MAX_MODEL_LEN": "8192", "VLLM_LOGGING_LEVEL": "DEBUG"}
    assert f["config.requested"]["quantization"] == "fp8" and f["config.requested"]["tensor_parallel_size"] == 2
    assert f["config.image"]["vllm_version"] == "0.8.5"


def test_cmdline_vllm_serve_and_api_server(tmp_path):
    p = _write(tmp_path, "run.sh", "#!/bin/sh\nVLLM_LOGGING_LEVEL=DEBUG vllm serve org/model-FP8 \\\n"
                                   "  --gpu-memory-utilization 0.95 --enforce-eager -q fp8\n"
                                   "python3 -m vllm.entrypoints.openai.api_server --model other/m --kv-cache-dtype fp8_e5m2\n")
    f = _facts(p, pc.parse_cmdline)
    assert f["config.serve_args"]["--gpu-memory-utilization"] == "0.95"
    assert f["config.env"]["VLLM_LOGGING_LEVEL"] == "DEBUG"
    req = f["config.requested"]
    assert req["gpu_memory_utilization"] == 0.95 and req["enforce_eager"] is True
    assert req["kv_cache_dtype"] == "fp8_e5m2"


@pytest.mark.parametrize("text", [
    "torch==2.6.0\nvllm==0.8.5\nnumpy==1.26.4\n",                      # pip freeze
    "INFO 01-02 03:04:05 engine.py:1] hello\nFROM the start it failed\n",  # prose
    "just: a\nyaml: document\n",
])
def test_negative_detection(tmp_path, text):
    ev = load_evidence(_write(tmp_path, "blob.txt", text))
    assert not pc.detect_dotenv(ev)
    assert not pc.detect_compose(ev)
    assert not pc.detect_dockerfile(ev)


def test_sizes_and_images():
    assert pc.parse_size("64m") == 64 << 20 and pc.parse_size("10gb") == 10 << 30 and pc.parse_size("1.5G") == 3 << 29
    assert pc.parse_size("lots") is None and pc.parse_size(True) is None
    assert pc.image_info("pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime")["cuda_version"] == "12.4"
    assert pc.image_info("registry.local:5000/team/img:1.0-cu126")["cuda_version"] == "12.6"
    assert pc.image_info("nvcr.io/nvidia/cuda:13.0.0-base-ubuntu24.04")["cuda_version"] == "13.0"
    assert pc.image_info("ubuntu:22.04")["cuda_version"] is None


def test_dotenv_lines_it_cannot_read_are_reported_not_logged(tmp_path):
    """python-dotenv's parser gives each binding with its line: a launch script read for its exports
    is quiet about its other lines; a .env file with a line dotenv cannot read says which."""
    from conftest import run_cli

    script = tmp_path / "start.sh"
    script.write_text("export VLLM_USE_V1=1\nvllm serve org/some-model --max-model-len 4096\n")
    code, out, err = run_cli(["analyze", str(script), "--fail-on", "never"])
    assert code == 0 and err == "", err

    env = tmp_path / ".env"
    env.write_text("VLLM_USE_V1=1\nthis line is no assignment\nHF_HOME=/data/hf\n")
    facts = _facts(env, pc.parse_dotenv)
    assert facts["config.errors"][0]["error"] == "python-dotenv cannot read line(s) 2"
    assert set(facts["config.env"]) >= {"VLLM_USE_V1", "HF_HOME"}
