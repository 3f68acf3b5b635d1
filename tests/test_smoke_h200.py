"""What a real H200 taught the smoke generation (vLLM 0.22.1, torch 2.11.0+cu130, 2026-12-01): the
engine logs and bwdoctor's facts recorded there (tests/data/gpu/h200-vllm-0.22.1/README.md), read
back through the parsers, the collector's fact building and the checks a live run uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bwdoctor import Fact, RunOptions, Snapshot
from bwdoctor.manager import PluginManager
from bwdoctor.runner import _parse_collected_evidence, run_checks
from bwdoctor_checks._lib import stagewatch
from bwdoctor_checks._lib.torchprobe import ChildRun
from bwdoctor_checks.collectors import smoke as smoke_collectors

H200 = Path(__file__).parent / "data" / "gpu" / "h200-vllm-0.22.1"
RUNS = json.loads((H200 / "runs.json").read_text())["runs"]


def _facts(run: str, drop: tuple[str, ...] = ()) -> list[Fact]:
    return [Fact(f["key"], f["value"], f["source"]) for f in RUNS[run]["facts"] if not f["key"].startswith(drop)]


def _value(run: str, key: str) -> Any:
    return next(f["value"] for f in RUNS[run]["facts"] if f["key"] == key)


def _judge(facts: list[Fact], log: str | None = None) -> dict[str, list[Any]]:
    """The checks of a live run over these facts; ``log`` goes through the evidence parsers first,
    as the engine log of a live smoke generation does."""
    registry = PluginManager().registry()
    snap = Snapshot([f for f in facts if not f.key.startswith(("vllm.config", "log."))])
    if log is not None:
        snap.add(Fact("evidence.smoke-engine-log", log, "smoke:python3"))
        _parse_collected_evidence(registry, snap)
    out: dict[str, list[Any]] = {}
    for f in run_checks(registry.checks, snap):
        out.setdefault(f.id, []).append(f)
    return out


# ------------------------------------------------------------------ engine facts from the GPU logs


def test_tiny_model_engine_facts_from_the_h200_log():
    info = smoke_collectors.parse_engine_log((H200 / "tiny-smoke-engine.log").read_text())
    assert info["attention_backend"] == "FLASH_ATTN"
    assert info["kv_cache_token_count"] == 134_519_568 and info["kv_cache_device"] == "gpu"
    assert info["kv_cache_gib"] == 128.29 and info["max_concurrency"] == 525467.06
    eng = _value("tiny", "smoke.engine")
    assert (eng["device"], eng["dtype"], eng["gpu_name"], eng["compute_capability"]) == ("cuda", "bfloat16",
                                                                                         "NVIDIA H200", "9.0")


def test_one_b_model_kv_cache_record_matches_its_log():
    kv = json.loads((H200 / "m1b-kv-cache.json").read_text())
    for run, rec in kv["runs"].items():
        info = smoke_collectors.parse_engine_log((H200 / rec["engine_log"]).read_text())
        assert info["kv_cache_token_count"] == rec["kv_cache_tokens"], run
        assert info["kv_cache_gib"] == rec["available_kv_cache_gib"] and info["weights_gib"] == rec["weights_gib"]
        assert rec["settings"]["max_model_len"] == 2048 and rec["settings"]["gpu_memory_utilization"] == 0.92
    # FP8 weights halve the weight memory and leave that much more to the KV cache
    assert kv["runs"]["m1b-fp8"]["weights_gib"] == pytest.approx(kv["runs"]["m1b"]["weights_gib"] / 2, abs=0.01)


def test_smoke_passes_on_the_h200_and_reports_its_figures():
    found = _judge(_facts("tiny"), (H200 / "tiny-smoke-engine.log").read_text())
    ok = found["BWD-SMOKE-001"][0]
    assert ok.status == "pass" and "vLLM 0.22.1 on cuda generated 64 tokens" in ok.message
    assert found["BWD-SMOKE-002"][0].status == "pass"
    assert all(f.status in ("pass", "skip") for fs in found.values() for f in fs if f.id.startswith("BWD-LOG"))


# ------------------------------------------------------------------ roofline from the measured bandwidth


def test_roofline_uses_the_measured_bandwidth_and_knows_a_small_model_is_not_bandwidth_bound():
    found = _judge(_facts("m1b"))
    roof = found["BWD-SMOKE-003"][0]
    probe = _value("m1b", "probe.gpu.0")
    assert roof.details["bandwidth_gbs"] == probe["memory_bandwidth_gbs"] == 4255.3
    assert "measured on NVIDIA H200" in roof.details["bandwidth_source"]
    assert roof.details["percent"] == pytest.approx(21.4, abs=0.1)
    # 1.82 GiB read in 0.46 ms of a 2.1 ms step: the step's fixed cost decides, not the GPU
    assert roof.details["weight_read_ms"] == pytest.approx(0.459, abs=0.005)
    assert roof.status == "skip" and roof.root_cause is None and "fixed cost per step" in roof.message


# ------------------------------------------------------------------ FP8 on Hopper, proven from the log


def test_fp8_smoke_log_proves_native_w8a8_on_the_h200():
    found = _judge(_facts("m1b-fp8"), (H200 / "m1b-fp8-engine.log").read_text())
    proof = found["BWD-FP8V-003"][0]
    assert proof.status == "pass" and "native FP8 (W8A8" in proof.message
    assert proof.details["kernel"] == "CutlassFP8ScaledMMLinearKernel"
    assert "NVIDIA H200" in proof.message and "compute capability 9.0" in proof.message
    assert found["BWD-SMOKE-004"][0].status == "pass"
    assert found["BWD-FP8V-002"][0].status == "pass"


def test_the_same_fp8_log_on_a_gpu_without_native_fp8_is_not_called_native():
    # the Marlin fallback's own wording, with the GPU the fallback is for (an A100, compute capability 8.0)
    facts = [f for f in _facts("m1b-fp8") if not f.key.startswith("gpu.")]
    facts.append(Fact("gpu.0", {"name": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"}, "test"))
    log = (H200 / "m1b-fp8-engine.log").read_text().replace(
        "Selected CutlassFP8ScaledMMLinearKernel for Fp8OnlineLinearMethod",
        "Your GPU does not have native support for FP8 computation but FP8 quantization is being used. "
        "Weight-only FP8 compression will be used leveraging the Marlin kernel.")
    proof = _judge(facts, log)["BWD-FP8V-003"][0]
    assert proof.status == "warn" and "Marlin" in proof.message and "native FP8 (W8A8" not in proof.message


# ------------------------------------------------------------------ a stuck stage, for real


def test_stacks_of_the_aborted_engine_name_where_compile_was():
    log = (H200 / "stuck-compile-engine.log").read_text()
    stacks = stagewatch.stuck_frames(log)
    assert stacks and stacks[0]["frames"][0]["file"] == "torch/_inductor/codecache.py"
    assert not stacks[0]["waiting"]
    assert any(f["file"].startswith("vllm/") for f in stacks[0]["frames"])


def test_stuck_compile_run_through_the_collector_and_checks():
    log = (H200 / "stuck-compile-engine.log").read_text()
    recorded = _value("stuck-compile", "smoke.result")
    run = ChildRun(returncode=-9, timed_out=True, result={"ok": False, "stage": "load", "engine":
                   _value("stuck-compile", "smoke.engine"), "timings": _value("stuck-compile", "smoke.timings")},
                   log=log, duration_s=recorded["seconds"], stages=recorded["stages"], stuck_stage="compile",
                   stuck_in=stagewatch.stuck_frames(log), stuck_deadline_s=4.0, stuck_scope="stage")
    facts = smoke_collectors.facts_from_run(run, "/usr/bin/python3", RunOptions(level="quick", smoke=True))
    res = next(f.value for f in facts if f.key == "smoke.result")
    assert res["stuck_stage"] == "compile" and res["deadline_s"] == 4.0
    assert "stage 'compile' did not finish within its deadline of 4 s" in res["error"]
    assert "torch/_inductor/codecache.py" in res["error"]
    # what the engine logged after it was aborted for its stacks is not offered as the cause
    assert not any("Fatal Python error" in ln["text"] or "Engine core initialization failed" in ln["text"]
                   for ln in res["lines"])
    evidence = next(f.value for f in facts if f.key == "evidence.smoke-engine-log")
    assert "Fatal Python error" not in evidence
    found = _judge([f for f in facts if f.key != "evidence.smoke-engine-log"] + _facts("stuck-compile", ("smoke.",)),
                   evidence)
    fail = found["BWD-SMOKE-001"][0]
    assert fail.status == "fail" and "stuck in stage 'compile'" in fail.message and fail.root_cause is None
    assert not any(f.status in ("fail", "warn") for f in found.get("BWD-LOG-014", []))


def test_the_stall_of_a_forked_engine_core_is_kept_as_it_was_seen():
    # the engine core forked after the tiny model was built in the same process: it stopped for good
    # right after choosing its sampler, inside InputBatch (a CPU torch.zeros) and never began to load
    log = (H200 / "tiny-smoke-stall-forked-engine.log").read_text()
    assert "Using FlashInfer for top-p & top-k sampling" in log and "Starting to load model" not in log
    assert "gpu_input_batch.py" in log
    info = smoke_collectors.parse_engine_log(log)
    assert "kv_cache_token_count" not in info
    assert "hung" in (H200 / "fork-after-openmp.txt").read_text()


# ------------------------------------------------------------------ the endpoint smoke against vllm serve


def test_endpoint_smoke_against_vllm_serve_on_the_h200():
    found = _judge(_facts("endpoint"))
    for cid in ("BWD-EP-001", "BWD-EP-002", "BWD-EP-003", "BWD-EP-004"):
        assert found[cid][0].status == "pass", (cid, found[cid][0].message)
    assert "streamed 32 tokens from m1b" in found["BWD-EP-003"][0].message
    assert "vllm:kv_cache_usage_perc" in (H200 / "vllm-serve-metrics.txt").read_text()
