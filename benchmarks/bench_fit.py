"""Accuracy of the memory budget's KV-cache estimate against what vLLM itself logs.

For each architecture, a small random-weight model is built locally with transformers (no model hub:
a byte-level BPE tokenizer trained on a few sentences, the architecture's own config class shrunk
to a few layers, keeping what decides the KV cache: KV heads, head size, sliding-window layout,
MLA latents). vLLM loads it in a child interpreter with a fixed KV space (the CPU build's
VLLM_CPU_KVCACHE_SPACE, 1 GiB) and logs "KV cache size: N tokens"; the budget's arithmetic
(bwdoctor_checks/_lib/fitcalc.py) computes the tokens for the same bytes, model and settings.

    python benchmarks/bench_fit.py [--python /path/to/vllm/python] [--only llama,gemma2] [--json out.json]

A GPU engine log that holds both "Available KV cache memory: X GiB" and "KV cache size: N tokens"
for a known architecture can be added with --log PATH --log-model NAME (the table row or a folder).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bwdoctor_checks._lib import fitcalc as fc  # noqa: E402

KV_GIB = 1
MAX_LEN = 512
CPU = fc.kbm.fit_data()["engine_defaults"]["cpu"]
CPU_BLOCK_SIZE = CPU["block_size"]  # the CPU backend's default block size
CPU_BATCHED_TOKENS = CPU["max_num_batched_tokens_llm_class"]  # the CPU LLM-class default max_num_batched_tokens

# model_type -> config fields (the architecture's own config class, shrunk)
ARCHS: dict[str, dict[str, Any]] = {
    "llama": dict(model_type="llama", hidden_size=512, intermediate_size=1024, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=2, head_dim=64),
    "qwen2": dict(model_type="qwen2", hidden_size=512, intermediate_size=1024, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=2, use_sliding_window=False),
    "mistral": dict(model_type="mistral", hidden_size=512, intermediate_size=1024, num_hidden_layers=4,
                    num_attention_heads=4, num_key_value_heads=1, head_dim=128, sliding_window=None),
    "qwen3": dict(model_type="qwen3", hidden_size=512, intermediate_size=1024, num_hidden_layers=3,
                  num_attention_heads=8, num_key_value_heads=4, head_dim=128),
    "phi3": dict(model_type="phi3", hidden_size=512, intermediate_size=1024, num_hidden_layers=4,
                 num_attention_heads=8, num_key_value_heads=8, pad_token_id=0),
    "gemma2": dict(model_type="gemma2", hidden_size=512, intermediate_size=1024, num_hidden_layers=4,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=128, sliding_window=128),
    "gemma3": dict(model_type="gemma3_text", hidden_size=512, intermediate_size=1024, num_hidden_layers=6,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=128, sliding_window=128,
                   sliding_window_pattern=6),
    "deepseek_v3": dict(model_type="deepseek_v3", hidden_size=256, intermediate_size=512, moe_intermediate_size=128,
                        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, n_routed_experts=4,
                        n_shared_experts=1, num_experts_per_tok=2, first_k_dense_replace=1, n_group=1, topk_group=1,
                        kv_lora_rank=512, q_lora_rank=None, qk_rope_head_dim=64, qk_nope_head_dim=64, v_head_dim=64,
                        topk_method="noaux_tc"),
    "mixtral": dict(model_type="mixtral", hidden_size=512, intermediate_size=512, num_hidden_layers=2,
                    num_attention_heads=8, num_key_value_heads=2, head_dim=64, num_local_experts=4,
                    num_experts_per_tok=2, sliding_window=None),
}

CHILD = r'''
import json, os, sys, time
spec = json.loads(sys.argv[2]); out = sys.argv[1]
def build():
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=512, special_tokens=["<unk>", "<s>", "</s>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 50, tr)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(out)
    kw = dict(spec); mt = kw.pop("model_type")
    kw.update(vocab_size=len(fast), bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
              max_position_embeddings=2048, torch_dtype="bfloat16")
    cfg = AutoConfig.for_model(mt, **kw)
    torch.manual_seed(0)
    m = AutoModelForCausalLM.from_config(cfg).to(torch.bfloat16)
    m.save_pretrained(out, safe_serialization=True)
def main():
    build()
    from vllm import LLM, SamplingParams
    llm = LLM(model=out, dtype="bfloat16", max_model_len=int(sys.argv[3]), enforce_eager=True)
    o = llm.generate(["hello world"], SamplingParams(max_tokens=4, temperature=0, ignore_eos=True))
    print("GENERATED", len(o[0].outputs[0].token_ids), flush=True)
if __name__ == "__main__":
    main()
'''

KV_RE = re.compile(r"KV cache size: ([\d,]+) tokens")
KV_SPACE_RE = re.compile(r"Explicitly set \(?([\d.]+)(?:/[\d.]+)?\)? GiB for KV cache|Available KV cache memory: ([\d.]+) GiB")


def run_one(python: str, name: str, spec: dict[str, Any], timeout: float, keep: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"arch": name, "engine": "vLLM CPU", "logged": None, "estimate": None, "error": None}
    with tempfile.TemporaryDirectory(prefix=f"bwd-fit-{name}-") as tmp:
        child = os.path.join(tmp, "child.py")
        Path(child).write_text(CHILD)
        env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=str(KV_GIB), OMP_NUM_THREADS="1", VLLM_LOGGING_LEVEL="INFO")
        t0 = time.monotonic()
        try:
            p = subprocess.run([python, child, os.path.join(tmp, "model"), json.dumps(spec), str(MAX_LEN)],
                               capture_output=True, text=True, timeout=timeout, env=env)
            log = p.stdout + p.stderr
        except subprocess.TimeoutExpired as exc:
            log = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else str(exc.stdout or "")
            row["error"] = f"timed out after {timeout:g} s"
        row["seconds"] = round(time.monotonic() - t0, 1)
        m = KV_RE.search(log)
        if m:
            row["logged"] = int(m.group(1).replace(",", ""))
        elif row["error"] is None:
            tail = [ln for ln in log.splitlines() if "Error" in ln or "error" in ln][-2:]
            row["error"] = "; ".join(t[:200] for t in tail) or "no KV cache size line"
        cfg_path = os.path.join(tmp, "model", "config.json")
        if keep:
            dest = Path(keep) / name
            (dest / "model").mkdir(parents=True, exist_ok=True)
            (dest / "engine.log").write_text(log)
            if os.path.isfile(cfg_path):
                (dest / "model" / "config.json").write_text(Path(cfg_path).read_text())
        if os.path.isfile(cfg_path):
            cfg = json.loads(Path(cfg_path).read_text())
            model = fc.describe(cfg, name, "folder", cfg_path)
            sp = KV_SPACE_RE.search(log)
            kv_gib = float(sp.group(1) or sp.group(2)) if sp else float(KV_GIB)
            cap = fc.kv_capacity(model, kv_gib * fc.GiB, MAX_LEN, block_size=16 if model.mla else CPU_BLOCK_SIZE,
                                 max_num_batched_tokens=CPU_BATCHED_TOKENS)
            row.update(estimate=cap.tokens, kv_gib=kv_gib, layers=model.layers, sliding=model.sliding_layers,
                       bytes_per_token=cap.bytes_per_token)
    return row


def log_row(path: str, model_name: str) -> dict[str, Any]:
    """A GPU log's logged KV size against the estimate for the same KV memory and model."""
    text = Path(path).read_text(errors="replace")
    row: dict[str, Any] = {"arch": model_name, "engine": f"log {os.path.basename(path)}", "logged": None,
                           "estimate": None, "error": None}
    m, sp = KV_RE.search(text), KV_SPACE_RE.search(text)
    L = re.search(r"Maximum concurrency for ([\d,]+) tokens per request", text)
    model = fc.resolve_model(model_name)
    if os.path.isdir(model_name):
        cfg = json.loads((Path(model_name) / "config.json").read_text())
        model = fc.describe(cfg, model_name, "folder", model_name)
    if not (m and sp and L and model and model.layers):
        row["error"] = "the log lacks the KV lines or the model is not known"
        return row
    kv_gib = float(sp.group(1) or sp.group(2))
    cap = fc.kv_capacity(model, kv_gib * fc.GiB, int(L.group(1).replace(",", "")))
    row.update(logged=int(m.group(1).replace(",", "")), estimate=cap.tokens, kv_gib=kv_gib)
    return row


def kv_json_rows(path: str) -> list[dict[str, Any]]:
    """Rows from a recorded KV-sizing file (``tests/data/gpu/h200-vllm-0.22.1/m1b-kv-cache.json``): per run,
    (1) the KV arithmetic at the engine's own "Available KV cache memory" and (2) the whole budget from
    the GPU's total memory (weights, activations, CUDA graphs, runtime estimated), both against the
    logged "KV cache size"."""
    doc = json.loads(Path(path).read_text())
    cfg = doc["model_config"]
    total = re.search(r"(\d+) MiB", str(doc.get("machine", "")))
    gpu_name = str(doc.get("machine", "GPU")).split(" (")[0].replace("NVIDIA ", "")
    rows = []
    for name, run in doc["runs"].items():
        st = run["settings"]
        m = fc.describe(cfg, name, "folder", path, quantization=st.get("quantization"))
        L = int(st["max_model_len"])
        log = Path(path).parent / str(run.get("engine_log") or "")
        batched = None
        if log.is_file():
            b = re.search(r"max_num_batched_tokens=(\d+)", log.read_text(errors="replace"))
            batched = int(b.group(1)) if b else None
        cap = fc.kv_capacity(m, run["available_kv_cache_gib"] * fc.GiB, L, kv_cache_dtype=st.get("kv_cache_dtype") or "auto",
                             block_size=int(st.get("block_size") or 16))
        rows.append({"arch": f"{name} (Llama 1B)", "engine": f"{gpu_name} KV", "logged": run["kv_cache_tokens"],
                     "estimate": cap.tokens, "kv_gib": run["available_kv_cache_gib"], "error": None})
        if total:
            gpu = fc.Gpu(gpu_name, int(total.group(1)) / 1024, fp8=True)
            d = fc.Deployment(max_model_len=L, gpu_memory_utilization=st.get("gpu_memory_utilization"),
                              max_num_batched_tokens=batched, kv_cache_dtype=st.get("kv_cache_dtype") or "auto",
                              enforce_eager=bool(st.get("enforce_eager")), quantization=st.get("quantization"))
            bud = fc.budget(m, d, gpu)
            rows.append({"arch": f"{name} (Llama 1B)", "engine": f"{gpu_name} all", "logged": run["kv_cache_tokens"],
                         "estimate": bud.capacity.tokens if bud.capacity else 0, "kv_gib": round(fc.gib(bud.kv_bytes), 2),
                         "error": None, "weights_estimate_gib": round(fc.gib(bud.weights), 2),
                         "weights_logged_gib": run.get("weights_gib")})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=os.environ.get("BWDOCTOR_VLLM_PYTHON") or "/work/main/.venv-vllm/bin/python")
    ap.add_argument("--only", default="")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--log", action="append", default=[])
    ap.add_argument("--log-model", action="append", default=[])
    ap.add_argument("--kv-json", action="append", default=[], metavar="PATH",
                    help="a recorded KV-sizing file of a GPU run (model config, settings, logged sizes)")
    ap.add_argument("--json")
    ap.add_argument("--keep-logs", metavar="DIR", help="keep each engine log and config.json under DIR/<arch>/")
    a = ap.parse_args()
    names = [n for n in ARCHS if not a.only or n in a.only.split(",")] if a.only != "none" else []
    rows = []
    for n in names:
        r = run_one(a.python, n, ARCHS[n], a.timeout, a.keep_logs)
        rows.append(r)
        print(f"# {n}: logged {r['logged']} estimate {r['estimate']} ({r.get('seconds')} s) {r['error'] or ''}",
              file=sys.stderr, flush=True)
    if len(a.log) != len(a.log_model):
        ap.error("give one --log-model per --log")
    for path, model in zip(a.log, a.log_model, strict=True):
        rows.append(log_row(path, model))
    for path in a.kv_json:
        rows.extend(kv_json_rows(path))
    print(f"{'architecture':18} {'engine':12} {'KV GiB':>7} {'logged tokens':>14} {'estimate':>12} {'error':>8}")
    for r in rows:
        if r["logged"] and r["estimate"] is not None:
            err = 100.0 * (r["estimate"] - r["logged"]) / r["logged"]
            r["error_pct"] = round(err, 2)
            print(f"{r['arch']:18} {r['engine']:12} {r.get('kv_gib', 0):7.2f} {r['logged']:14,} {r['estimate']:12,} "
                  f"{err:+7.2f}%")
        else:
            print(f"{r['arch']:18} {r['engine']:12} {'':7} {'-':>14} {str(r['estimate'] or '-'):>12}  {r['error']}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    bad = [r for r in rows if "error_pct" in r and abs(r["error_pct"]) > 10]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
