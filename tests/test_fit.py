"""The memory and speed budget (BWD-FIT, `bwdoctor fit`): knowledge base rows, vLLM's KV arithmetic,
the deployment read from configuration, and the verdicts on the guide's own configuration."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from bwdoctor.cli import cli
from bwdoctor.kb import models as kbm
from bwdoctor_checks._lib import fitcalc as fc

ROOT = Path(__file__).resolve().parent.parent
KB = ROOT / "bwdoctor" / "kb"
DATA = Path(__file__).parent / "data" / "fit"
SEED = Path("/work/shared/fixtures/seed-config")


def _gpu(key: str) -> fc.Gpu:
    from bwdoctor import kb

    s = kb.find_gpu(key)
    return fc.Gpu(s.name, s.memory_gib, s.memory_bandwidth_gbs, s.bf16_dense_tflops, s.fp8_dense_tflops,
                  s.fp4_dense_tflops, s.fp8)


@pytest.mark.parametrize("name", ["models", "fit"])
def test_kb_files_match_their_schemas(name):
    jsonschema.validate(json.loads((KB / f"{name}.json").read_text()), json.loads((KB / f"{name}.schema.json").read_text()))


def test_every_row_counts_to_its_model_card():
    """Parameters computed from each row's config.json values agree with the total the model card quotes."""
    for row in kbm.models():
        m = fc.from_table(row.names[0])
        assert m is not None and m.origin == "table", row.key
        assert abs(m.params_total / 1e9 - row.params_b) / row.params_b < 0.03, (row.key, m.params_total)
        # cards quote active parameters with or without the embeddings
        act = m.params_active / 1e9
        assert min(abs(act - row.active_params_b), abs(act - m.params_embed / 2e9 - row.active_params_b),
                   abs(act - m.params_embed / 1e9 - row.active_params_b)) / row.active_params_b < 0.05, row.key
        assert all(s.startswith("https://huggingface.co/") for s in row.sources[:1]), row.key


@pytest.mark.parametrize("name,key,quant", [
    ("neuralmagic/Meta-Llama-3.1-70B-Instruct-FP8", "llama-3.1-70b", "fp8"),
    ("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", "llama-3.1-70b", "fp8"),
    ("Qwen/Qwen2.5-72B-Instruct-AWQ", "qwen2.5-72b", "awq"),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b", None),
    ("deepseek-ai/DeepSeek-R1", "deepseek-v3", None),
    ("openai/gpt-oss-120b", "gpt-oss-120b", None),
])
def test_names_find_their_rows(name, key, quant):
    row = kbm.find_model(name)
    assert row is not None and row.key == key
    assert kbm.quantization_from_name(name) == quant


def test_a_parameter_count_in_the_name_is_an_estimate():
    m = fc.resolve_model("someorg/NewModel-13B-Chat")
    assert m is not None and m.estimate and round(m.params_total / 1e9) == 13 and m.layers == 0
    moe = fc.resolve_model("x/Thing-30B-A3B")
    assert moe is not None and round(moe.params_active / 1e9) == 3
    assert fc.resolve_model("x/no-size-here") is None


def test_kv_bytes_per_token_follow_vllm_page_sizes():
    llama70 = fc.from_table("meta-llama/Llama-3.1-70B-Instruct")
    assert fc.kv_bytes_per_token_layer(llama70) * llama70.layers == 80 * 2 * 8 * 128 * 2
    assert fc.kv_bytes_per_token_layer(llama70, "fp8") * 2 == fc.kv_bytes_per_token_layer(llama70)
    assert fc.kv_bytes_per_token_layer(llama70, tp=2) * 2 == fc.kv_bytes_per_token_layer(llama70)
    ds = fc.from_table("deepseek-ai/DeepSeek-V3")
    assert ds.mla and fc.kv_bytes_per_token_layer(ds) == (512 + 64) * 2
    assert fc.kv_bytes_per_token_layer(ds, tp=8) == (512 + 64) * 2  # the latent is not split across ranks
    assert fc.kv_bytes_per_token_layer(ds, "fp8_ds_mla") == 656
    g3 = fc.from_table("google/gemma-3-27b-it")
    assert (g3.layers, g3.sliding_layers, g3.sliding_window) == (62, 52, 1024)
    oss = fc.from_table("openai/gpt-oss-20b")
    assert (oss.sliding_layers, oss.full_layers) == (12, 12)


def test_hybrid_models_hold_more_tokens_than_full_attention():
    g3 = fc.from_table("google/gemma-3-27b-it")
    hyb = fc.kv_capacity(g3, 20 * fc.GiB, 32768)
    full = fc.kv_capacity(g3, 20 * fc.GiB, 32768, hybrid=False)
    assert hyb.tokens > 2 * full.tokens  # 10 full + 52 sliding layers, 8192 tokens in flight


def test_cpu_log_kv_size_reproduced_exactly():
    """The vLLM CPU fixture: 1 GiB of KV space, 2 layers x 2 KV heads x 64 x BF16 → 1,048,576 tokens, 4096x at 256."""
    cfg = json.loads((DATA / "cpu-0.32" / "model" / "config.json").read_text())
    m = fc.describe(cfg, "tiny", "folder", str(DATA))
    cap = fc.kv_capacity(m, 1 * fc.GiB, 256)
    assert cap.tokens == 1_048_576 and cap.concurrency == 4096


def _run(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


@pytest.mark.parametrize("folder,log,tokens", [
    ("cpu-0.32", "generate-tiny-llama.log", 1_048_576),   # full attention
    ("cpu-0.32-gemma2", "engine.log", 233_016),           # 2 sliding-window + 2 full layers in one block pool
    ("cpu-0.32-deepseek-mla", "engine.log", 466_032),     # MLA: one 512 + 64 latent per token and layer
])
def test_analyze_log_with_model_folder_compares_with_the_logged_kv_size(folder, log, tokens):
    r = _run(["analyze", str(DATA / folder / log), str(DATA / folder / "model"), "--format", "json"])
    rep = json.loads(r.output)
    f = next(x for x in rep["findings"] if x["id"] == "BWD-FIT-004")
    assert f["status"] == "pass", f["message"]
    assert f["details"]["logged_tokens"] == tokens and f["details"]["estimated_tokens"] == tokens


@pytest.mark.skipif(not SEED.is_dir(), reason="the shared seed-config fixture is not on this machine")
def test_seed_config_budget_on_rtx_pro_6000():
    r = _run(["analyze", str(SEED), "--target", "rtx-pro-6000", "--format", "json"])
    rep = json.loads(r.output)
    by = {(x["id"]): x for x in rep["findings"] if x["id"].startswith("BWD-FIT")}
    mem = by["BWD-FIT-001"]
    assert mem["status"] == "fail"
    for text in ("weights 67.7", "draft model 15.0", "LoRA", "16,384", "does not fit", "VLLM_MAX_MODEL_LEN"):
        assert text in mem["message"], text
    assert mem["details"]["settings"]["max_num_seqs"] == 512
    assert mem["details"]["settings"]["gpu_memory_utilization"] == 0.95
    assert any(x["change"] == "--tensor-parallel-size 2" or x["change"].startswith("--tensor-parallel-size 2")
               for x in mem["details"]["remedies"])
    mig = by["BWD-FIT-002"]
    assert mig["status"] == "fail" and "4g.48gb is not a MIG profile" in mig["message"]
    assert "67.7 GiB of weights" in mig["message"]
    speed = by["BWD-FIT-003"]
    assert "24.7 tokens/s" in speed["message"] and "200 tokens/s ≥ 9" in speed["message"]


def test_fit_command_verdicts_and_exit_codes():
    ok = _run(["fit", "meta-llama/Llama-3.1-70B-Instruct-FP8", "--target", "rtx-pro-6000", "--max-model-len", "16384",
               "--max-num-seqs", "512", "--gpu-memory-utilization", "0.95", "--format", "json"])
    assert ok.exit_code == 0, ok.output
    res = json.loads(ok.output)
    assert res["verdict"] == "fits_partly" and res["kv"]["concurrency"] > 3
    assert 24 < res["speed"]["decode_bound_tps"] < 26
    big = _run(["fit", "Qwen/Qwen2.5-72B-Instruct", "--target", "h100"])
    assert big.exit_code == 1 and "does not fit" in big.output and "--tensor-parallel-size 4" in big.output
    bad = _run(["fit", "x/no-size-here", "--target", "h100"])
    assert bad.exit_code == 2
    tgt = _run(["fit", "meta-llama/Llama-3.1-8B", "--target", "nonsense-gpu"])
    assert tgt.exit_code == 2


def _safetensors(path: Path, tensors: dict[str, tuple[str, list[int], int]]) -> int:
    header, off = {}, 0
    for name, (dtype, shape, nbytes) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + nbytes]}
        off += nbytes
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * off)
    return off


def test_fit_reads_a_model_folder_exactly(tmp_path):
    cfg = json.loads((DATA / "cpu-0.32" / "model" / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "fp8", "activation_scheme": "dynamic"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    n = _safetensors(tmp_path / "model.safetensors", {"a": ("F8_E4M3", [256, 256], 65536), "b": ("BF16", [512, 256], 262144)})
    r = _run(["fit", str(tmp_path), "--target", "h100", "--format", "json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["model"]["origin"] == "folder" and res["model"]["format"] == "fp8"
    assert res["budget_gib"]["weights"] == round(n / 2**30, 3)
    (tmp_path / "config.json").write_text("{not json")
    assert _run(["fit", str(tmp_path), "--target", "h100"]).exit_code == 2


def test_recorded_gpu_and_a_serve_command(tmp_path):
    """Evidence of an H100 (nvidia-smi -q) and a vllm serve line: the recorded GPU is judged."""
    cmd = tmp_path / "serve.sh"
    cmd.write_text("vllm serve meta-llama/Llama-3.1-8B-Instruct --max-model-len 32768 --max-num-seqs 256 "
                   "--gpu-memory-utilization 0.9 --kv-cache-dtype fp8\n")
    r = _run(["analyze", str(ROOT / "tests" / "data" / "evidence" / "h100-nvidia-smi-q.txt"), str(cmd), "--format", "json"])
    by = {x["id"]: x for x in json.loads(r.output)["findings"] if x["id"].startswith("BWD-FIT")}
    mem = by["BWD-FIT-001"]
    assert mem["status"] == "pass" and "H100" in mem["subject"], mem["message"]
    assert mem["details"]["settings"]["max_model_len"] == 32768
    assert mem["details"]["settings_origin"]["kv_cache_dtype"].startswith("--kv-cache-dtype")
    # FP8 KV: 32 layers x 2 x 8 heads x 128 x 1 byte
    assert mem["details"]["kv"]["bytes_per_token"] == 32 * 2 * 8 * 128
    assert "one stream decodes at most" in by["BWD-FIT-003"]["message"]
    assert by["BWD-FIT-002"]["status"] == "skip"  # no MIG plan in this configuration


H200 = ROOT / "tests" / "data" / "gpu" / "h200-vllm-0.22.1"


@pytest.mark.skipif(not (H200 / "m1b-kv-cache.json").is_file(), reason="the H200 vLLM capture is not in tests/data")
@pytest.mark.parametrize("run", ["m1b", "m1b-fp8"])
def test_h200_whole_budget_matches_the_engine(run):
    """The whole budget (weights, activations, CUDA graphs, runtime from the GPU's total memory) against the
    KV cache vLLM 0.22.1 sized on a real H200 for a ~1B Llama, BF16 and online FP8: within 1%."""
    doc = json.loads((H200 / "m1b-kv-cache.json").read_text())
    r = doc["runs"][run]
    st = r["settings"]
    m = fc.describe(doc["model_config"], run, "folder", "m1b", quantization=st["quantization"])
    total_mib = int(doc["machine"].split(" MiB")[0].rsplit("(", 1)[1])
    d = fc.Deployment(max_model_len=st["max_model_len"], gpu_memory_utilization=st["gpu_memory_utilization"],
                      max_num_batched_tokens=16384)  # the engine logged it (LLM class default on H200)
    b = fc.budget(m, d, fc.Gpu("H200", total_mib / 1024, 4800, fp8=True))
    assert abs(b.capacity.tokens - r["kv_cache_tokens"]) / r["kv_cache_tokens"] < 0.01
    assert abs(fc.gib(b.weights) - r["weights_gib"]) < 0.05


@pytest.mark.skipif(not (H200 / "m1b-smoke-engine.log").is_file(), reason="the H200 vLLM capture is not in tests/data")
def test_h200_engine_log_with_its_model_folder(tmp_path):
    doc = json.loads((H200 / "m1b-kv-cache.json").read_text())
    folder = tmp_path / "m1b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(doc["model_config"]))
    r = _run(["analyze", str(H200 / "m1b-smoke-engine.log"), str(folder), "--format", "json"])
    f = next(x for x in json.loads(r.output)["findings"] if x["id"] == "BWD-FIT-004")
    assert f["status"] == "pass" and abs(f["details"]["error_pct"]) < 0.01, f["message"]
    assert abs(f["details"]["weights_estimated_gib"] - 1.82) < 0.05
