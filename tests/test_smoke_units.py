"""Smoke generation without vLLM: log reading, failure classification, roofline math, checks,
the child launcher's deadline, and the tiny-model builder's configuration."""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bwdoctor import Fact, RunOptions, Snapshot, Unavailable
from bwdoctor_checks._lib import classify as classify
from bwdoctor_checks._lib import rooflines as rooflines
from bwdoctor_checks._lib import tinymodel as _tinymodel
from bwdoctor_checks._lib.torchprobe import ChildRun, read_tail, run_child, tail_lines
from bwdoctor_checks.checks import smoke as smoke_checks
from bwdoctor_checks.collectors import smoke as smoke_collectors

from conftest import make_snapshot

DATA = Path(__file__).parent / "data" / "smoke"


# ------------------------------------------------------------------ log reading


def test_parse_engine_log_cpu_run():
    info = smoke_collectors.parse_engine_log((DATA / "vllm-cpu-tiny-llama.log").read_text())
    assert info["kv_cache_token_count"] == 1048576
    assert info["kv_cache_device"] == "cpu"
    assert info["kv_cache_gib"] == 1.0
    assert info["max_concurrency"] == 4096.0
    assert "attention_backend" not in info  # the CPU platform does not log it


def test_parse_engine_log_gpu_lines():
    text = "\n".join([
        "(EngineCore pid=1) INFO 01-01 00:00:00 [cuda.py:446] Using FLASH_ATTN backend.",
        "INFO [cuda.py:507] Using FLASHINFER attention backend out of potential backends: ['FLASHINFER'].",
        "INFO Using backend FLASH_ATTN for vit attention",
        "INFO [gpu_worker.py:760] Available KV cache memory: 51.23 GiB",
        "INFO [kv_cache_utils.py:2328] GPU KV cache size: 419,648 tokens",
        "INFO Model loading took 7.51 GiB memory and 3.2 seconds",
    ])
    info = smoke_collectors.parse_engine_log(text)
    assert info["attention_backend"] == "FLASHINFER"
    assert info["kv_cache_gib"] == 51.23
    assert info["kv_cache_token_count"] == 419648
    assert info["weights_gib"] == 7.51


def test_parse_engine_log_older_wording():
    assert smoke_collectors.parse_engine_log("INFO selector.py:1 Using Flash Attention backend.")["attention_backend"] == "FLASH_ATTN"
    assert smoke_collectors.parse_engine_log("INFO Using AttentionBackendEnum.TRITON_ATTN backend.")["attention_backend"] == "TRITON_ATTN"


def test_explain_lines_keep_the_error_not_the_traceback_frames():
    lines = smoke_collectors.explain_lines((DATA / "load-failure.log").read_text())
    texts = [ln["text"] for ln in lines]
    assert any("16.00 GiB KV cache is needed" in t for t in texts)
    assert any(t.startswith("RuntimeError: Engine core initialization failed") for t in texts)
    assert not any('File "' in t for t in texts)
    assert all(isinstance(ln["line"], int) and ln["line"] > 0 for ln in lines)


def test_explain_lines_ignore_known_noise_and_cap():
    text = "\n".join(["Triton is installed, but doesn't include CPU backend. Disabling Triton."]
                     + [f"RuntimeError: failure number {i}" for i in range(40)])
    lines = smoke_collectors.explain_lines(text, limit=5)
    assert len(lines) == 5 and lines[-1]["text"].endswith("39")


@pytest.mark.parametrize("text,cause", [
    ("RuntimeError: CUDA error: no kernel image is available for execution on the device", "arch_not_in_torch_wheel"),
    ("The NVIDIA driver on your system is too old (found version 12040)", "driver_too_old_for_cuda"),
    ("ImportError: /x/vllm/_C.abi3.so: undefined symbol: _ZN3c104cuda9SetDevice", "torch_vllm_abi_mismatch"),
    ("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`", "kv_cache_oom"),
    ("ValueError: Free memory on device (3.1/79.1 GiB) on startup is less than desired GPU memory utilization",
     "gpu_memory_contention"),
    ("triton.compiler.errors.CompilationError: type fp8e4nv not supported in this architecture", "fp8_unsupported_on_gpu"),
    ("ptxas fatal   : Value 'sm_120a' is not defined for option 'gpu-name'", "triton_ptxas_toolchain"),
    ("something unrelated went wrong", None),
])
def test_classify_failure(text, cause):
    assert classify.classify_failure(text)[0] == cause


# ------------------------------------------------------------------ roofline


def test_decode_roofline_math():
    # 16 GB of weights on 1,792 GB/s: 112 tokens/s ceiling (facts.md's RTX PRO 6000 example).
    assert rooflines.decode_roofline(16e9, 1792) == pytest.approx(112.0)
    assert rooflines.roofline_percent(56.0, 16e9, 1792) == pytest.approx(50.0)
    with pytest.raises(ValueError):
        rooflines.decode_roofline(0, 1792)


def _gpu_smoke(tps, weights_gib=14.96, tp=1, eager=False):
    return make_snapshot(**{
        "gpu__0": {"name": "NVIDIA H100 80GB HBM3", "pci_device_id": "0x2330", "compute_capability": "9.0"},
        "smoke__result": {"ok": True},
        "smoke__engine": {"device": "cuda", "tensor_parallel_size": tp, "enforce_eager": eager},
        "smoke__timings": {"decode_tps": tps},
        "smoke__memory": {"weights_gib": weights_gib},
    })


def test_roofline_check_pass_and_warn():
    # H100 SXM: 3,350 GB/s; 14.96 GiB of weights -> ceiling ~208.5 tokens/s.
    ok = smoke_checks._check_roofline(_gpu_smoke(150.0))
    assert ok.status == "pass" and ok.details["roofline_tps"] == pytest.approx(208.55, rel=1e-3)
    assert ok.details["percent"] == pytest.approx(71.9, abs=0.1)
    slow = smoke_checks._check_roofline(_gpu_smoke(40.0, eager=True))
    assert slow.status == "warn" and "enforce_eager" in slow.message


def test_roofline_check_tensor_parallel_splits_weights():
    out = smoke_checks._check_roofline(_gpu_smoke(150.0, tp=2))
    assert out.details["roofline_tps"] == pytest.approx(417.1, rel=1e-3)


def test_roofline_check_skips_cpu_and_tiny_models():
    cpu = make_snapshot(smoke__result={"ok": True}, smoke__engine={"device": "cpu"}, smoke__timings={"decode_tps": 800.0},
                smoke__memory={"weights_gib": 0.0025})
    assert smoke_checks._check_roofline(cpu).status == "skip"
    assert smoke_checks._check_roofline(_gpu_smoke(5000.0, weights_gib=0.0025)).status == "skip"


# ------------------------------------------------------------------ checks


def test_smoke_check_failure_quotes_log_and_classifies():
    lines = smoke_collectors.explain_lines((DATA / "load-failure.log").read_text())
    snap = make_snapshot(smoke__result={"ok": False, "stage": "load", "error": "RuntimeError: Engine core initialization "
                                "failed", "lines": lines}, smoke__log_tail="...")
    out = smoke_checks._check_runs(snap)
    assert out.status == "fail"
    assert out.root_cause == "kv_cache_oom" and out.remedies == ["vllm.memory-settings"]
    assert "KV cache is needed" in out.message
    assert out.details["log_lines"] == lines


def test_smoke_check_pass():
    snap = make_snapshot(smoke__result={"ok": True, "stage": "done"},
                 smoke__engine={"version": "0.32.0", "device": "cpu", "model_source": "tiny"},
                 smoke__timings={"load_s": 12.0, "ttft_s": 0.004, "decode_tps": 700.5},
                 smoke__generation={"generated_token_count": 64, "requested_token_count": 64})
    out = smoke_checks._check_runs(snap)
    assert out.status == "pass" and "64 tokens" in out.message and "700.5 tokens/s" in out.message
    assert smoke_checks._check_tokens(snap).status == "pass"


def test_token_count_check_warns_on_early_stop():
    snap = make_snapshot(smoke__generation={"generated_token_count": 10, "requested_token_count": 64, "finish_reason": "abort"})
    assert smoke_checks._check_tokens(snap).status == "warn"


def test_quantization_check():
    requested = {"quantization": "fp8"}
    ok = make_snapshot(smoke__result={"ok": True}, smoke__engine={"quantization": "fp8", "requested": requested,
                                                           "gpu_name": "NVIDIA H100 80GB HBM3"})
    assert smoke_checks._check_quantization(ok).status == "pass"
    ampere = make_snapshot(smoke__result={"ok": False, "error": "x"}, smoke__engine={"requested": requested},
                   gpu__0={"name": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"})
    out = smoke_checks._check_quantization(ampere)
    assert out.status == "fail" and out.root_cause == "fp8_unsupported_on_gpu"
    none = make_snapshot(smoke__result={"ok": True}, smoke__engine={"requested": {}})
    assert smoke_checks._check_quantization(none).status == "skip"


# ------------------------------------------------------------------ collector


def test_enabled_by_level_or_flag():
    assert smoke_collectors.smoke_enabled(RunOptions(level="full"))
    assert smoke_collectors.smoke_enabled(RunOptions(level="quick", smoke=True))
    assert not smoke_collectors.smoke_enabled(RunOptions(level="standard"))


def test_child_args_tiny_and_user_model():
    tiny = smoke_collectors.child_args(RunOptions(smoke=True))
    assert "model" not in tiny and tiny["dtype"] == "bfloat16" and tiny["enforce_eager"] is True
    user = smoke_collectors.child_args(RunOptions(smoke=True, model="/m", quantization="fp8", extra={"smoke_tokens": 8}))
    assert user["model"] == "/m" and user["quantization"] == "fp8" and user["max_tokens"] == 8
    assert "enforce_eager" not in user


def test_child_env_caps_cpu_kv_cache(monkeypatch):
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    assert smoke_collectors.child_env(RunOptions())["VLLM_CPU_KVCACHE_SPACE"] == "1"
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "4")
    assert smoke_collectors.child_env(RunOptions())["VLLM_CPU_KVCACHE_SPACE"] == "4"


def test_unavailable_without_vllm(monkeypatch):
    monkeypatch.delenv("BWDOCTOR_VLLM_PYTHON", raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(smoke_collectors.importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(Unavailable, match=r"vLLM is not installed in the inspected environment"):
        smoke_collectors.collect_smoke(RunOptions(smoke=True))


def test_unavailable_when_interpreter_missing(monkeypatch):
    monkeypatch.setenv("BWDOCTOR_VLLM_PYTHON", "/nonexistent/bin/python")
    with pytest.raises(Unavailable, match="not an executable"):
        smoke_collectors.collect_smoke(RunOptions(smoke=True))


def test_vllm_missing_in_other_interpreter_is_unavailable(tmp_path):
    # A real interpreter without vLLM (a bare virtual environment): the child's import fails and the
    # collector says so, naming the interpreter, instead of reporting a failed smoke.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True, timeout=60)
    python = str(tmp_path / "venv" / "bin" / "python")
    with pytest.raises(Unavailable, match=f"vLLM is not installed .* in {python}"):
        smoke_collectors.collect_smoke(RunOptions(smoke=True, extra={"python": python}))


def _fake_python(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-python"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_deadline_kills_a_hung_child_and_reports_it(tmp_path):
    python = _fake_python(tmp_path, "echo 'loading weights'; sleep 60 & sleep 60")
    opts = RunOptions(smoke=True, extra={"python": python, "smoke_timeout": 1.5})
    start = time.perf_counter()
    facts = {f.key: f.value for f in smoke_collectors.collect_smoke(opts)}
    assert time.perf_counter() - start < 15
    res = facts["smoke.result"]
    assert res["ok"] is False and res["timed_out"] is True
    assert "did not finish within 1.5 s" in res["error"]
    assert "loading weights" in facts["smoke.log_tail"]
    out = smoke_checks._check_runs(Snapshot([Fact(k, v, "t") for k, v in facts.items()]))
    assert out.status == "fail" and "did not finish" in out.message


def test_child_crash_without_result(tmp_path):
    python = _fake_python(tmp_path, "echo 'Segmentation fault' >&2; exit 139")
    facts = {f.key: f.value for f in smoke_collectors.collect_smoke(RunOptions(smoke=True, extra={"python": python}))}
    res = facts["smoke.result"]
    assert res["ok"] is False and res["returncode"] == 139 and "exit code 139" in res["error"]
    assert any("Segmentation fault" in ln["text"] for ln in res["lines"])


def test_facts_from_a_recorded_cpu_run():
    log = (DATA / "vllm-cpu-tiny-llama.log").read_text()
    result = {"ok": True, "stage": "done",
              "engine": {"version": "0.32.0", "device": "cpu", "dtype": "bfloat16", "quantization": None,
                         "requested": {"dtype": "bfloat16"}, "model_source": "tiny"},
              "timings": {"load_s": 34.5, "ttft_s": 0.01, "decode_tps": 97.9},
              "memory": {"peak_host_rss_gib": 3.0, "weights_file_bytes": 2692792},
              "generation": {"generated_token_count": 16, "requested_token_count": 16, "text": "x", "token_ids": [1] * 16}}
    run = ChildRun(0, False, result, log, 50.0)
    facts = {f.key: f.value for f in smoke_collectors.facts_from_run(run, "/venv/bin/python", RunOptions(smoke=True))}
    assert facts["smoke.engine"]["attention_backend"] == "CPU_ATTN"
    assert facts["smoke.memory"]["kv_cache_token_count"] == 1048576
    assert facts["smoke.memory"]["weights_source"] == "checkpoint files"
    assert facts["smoke.memory"]["weights_gib"] == pytest.approx(2692792 / 2 ** 30, rel=1e-2)
    assert "token_ids" not in facts["smoke.generation"]
    assert facts["smoke.result"]["lines"] == []
    assert len(facts["smoke.log_tail"].splitlines()) <= smoke_collectors.LOG_TAIL_LINES


def test_run_child_protocol_with_this_interpreter(tmp_path):
    # The child script runs under plain Python: an unknown mode is reported in the result, not raised.
    run = run_child(sys.executable, "nonexistent-mode", {}, 30, str(tmp_path / "w"))
    assert run.result.get("ok") is False and "KeyError" in run.result.get("error", "")
    assert run.result.get("finished") is True


def test_read_tail_and_tail_lines(tmp_path):
    p = tmp_path / "log"
    p.write_bytes(b"a\n" * 100 + b"progress 10%\rprogress 100%\nend\n")
    assert read_tail(str(p), 10).endswith("end\n")
    assert tail_lines(read_tail(str(p)), 2) == "progress 100%\nend"
    assert read_tail(str(tmp_path / "missing")) == ""


# ------------------------------------------------------------------ tiny model


def test_tiny_model_config():
    cfg = _tinymodel.model_config()
    assert cfg["hidden_size"] // cfg["num_attention_heads"] == cfg["head_dim"] == 64  # CPU backend needs >= 32
    assert cfg["num_attention_heads"] % cfg["num_key_value_heads"] == 0
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["torch_dtype"] == "bfloat16"
    # Untied head: 2 x 512 x 256 embeddings + 2 layers x (attention 196,608 + MLP 393,216 + norms 512) + norm 256.
    assert _tinymodel.parameter_count(cfg) == 2 * 512 * 256 + 2 * (196608 + 393216 + 512) + 256
    # The trained tokenizer may stop short of 512 entries: the vocabulary then shrinks both embeddings.
    assert _tinymodel.parameter_count(_tinymodel.model_config(vocab_size=300)) == (
        _tinymodel.parameter_count(cfg) - 2 * 212 * 256)


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None,
                    reason="transformers/torch not installed here (the vLLM tests build the model for real)")
def test_tiny_model_builds(tmp_path):
    out = _tinymodel.build(str(tmp_path / "m"))
    names = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names


def test_quantization_failure_with_its_own_cause_is_not_blamed_on_fp8():
    # an FP8 smoke on a Hopper GPU that failed because a module vLLM's FP8 path imports is not installed
    log = "\n".join([
        "INFO 12-01 10:00:00 [utils.py:278] non-default args: {'quantization': 'fp8', 'model': '/models/m'}",
        "(EngineCore pid=7) ERROR 12-01 10:00:09 [core.py:1100] EngineCore failed to start.",
        "(EngineCore pid=7) ERROR 12-01 10:00:09 [core.py:1100]   File \"/venv/vllm/model_executor/layers/"
        "quantization/humming.py\", line 49, in <module>",
        "(EngineCore pid=7) ERROR 12-01 10:00:09 [core.py:1100] ModuleNotFoundError: No module named 'humming'",
        "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}",
    ])
    lines = smoke_collectors.explain_lines(log)
    snap = make_snapshot(gpu__0={"name": "NVIDIA H200", "compute_capability": "9.0"},
                 smoke__result={"ok": False, "stage": "load", "error": "RuntimeError: Engine core initialization "
                                "failed. See root cause above.", "lines": lines},
                 smoke__engine={"requested": {"quantization": "fp8"}})
    out = smoke_checks._check_quantization(snap)
    assert out.status == "fail" and out.root_cause == "python_dependency_broken"
    assert out.remedies == ["python.install-dependency"]
    assert "'humming'" in out.message and "humming-kernels" in out.message and "not about fp8" in out.message
    runs = smoke_checks._check_runs(snap)
    assert runs.root_cause == "python_dependency_broken" and "humming-kernels" in runs.message
    # through the runner the check's own default cannot turn it back into an FP8 problem
    from bwdoctor.manager import PluginManager
    from bwdoctor.runner import run_checks

    found = {f.id: f for f in run_checks(PluginManager().registry().checks, snap)}
    assert found["BWD-SMOKE-004"].root_cause == "python_dependency_broken"
    assert found["BWD-SMOKE-001"].root_cause == "python_dependency_broken"


def test_quantization_failure_without_a_cause_implies_none():
    snap = make_snapshot(gpu__0={"name": "NVIDIA H200", "compute_capability": "9.0"},
                 smoke__result={"ok": False, "stage": "load", "error": "RuntimeError: something odd", "lines": []},
                 smoke__engine={"requested": {"quantization": "fp8"}})
    from bwdoctor.manager import PluginManager
    from bwdoctor.runner import run_checks

    f = next(x for x in run_checks(PluginManager().registry().checks, snap) if x.id == "BWD-SMOKE-004")
    assert f.status == "fail" and f.root_cause is None and f.remedies == []
