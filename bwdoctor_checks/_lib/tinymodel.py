"""Build a tiny random-weight Llama that vLLM can load, with no model hub and no network.

Used by the smoke generation when no ``--model`` is given: it proves that the engine imports,
loads a checkpoint, allocates a KV cache and generates, in seconds, on any device vLLM runs on.
The text it generates is meaningless (random weights); what is judged is that tokens come out.

Choices (observed with vLLM 0.32 on CPU): head_dim 64 (the CPU attention backend rejects 16),
bfloat16 safetensors, a byte-level BPE tokenizer trained on a few sentences (vocabulary 512).
Building needs torch, transformers and tokenizers, so it runs in the child interpreter that has
vLLM (vLLM depends on all three). This module imports none of them at import time.
"""

from __future__ import annotations

import json
import os
from typing import Any

VOCAB_SIZE = 512
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]
CORPUS = (["the quick brown fox jumps over the lazy dog"] * 50
          + ["hello world, this is a smoke test of a tiny model"] * 50)
SEED = 0


def model_config(vocab_size: int = VOCAB_SIZE, bos_token_id: int = 1, eos_token_id: int = 2) -> dict[str, Any]:
    """The LlamaConfig fields of the tiny model (2 layers, hidden 256, 4 heads of 64, GQA 2)."""
    hidden, heads = 256, 4
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": heads,
        "num_key_value_heads": 2,
        "head_dim": hidden // heads,
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-6,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }


def parameter_count(cfg: dict[str, Any]) -> int:
    """Number of weights of a Llama with this config (embeddings, attention, MLP, norms, head)."""
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = cfg.get("head_dim") or h // cfg["num_attention_heads"]
    q = h * cfg["num_attention_heads"] * hd
    kv = 2 * h * cfg["num_key_value_heads"] * hd
    o = cfg["num_attention_heads"] * hd * h
    mlp = 3 * h * i
    per_layer = q + kv + o + mlp + 2 * h
    head = 0 if cfg.get("tie_word_embeddings") else v * h
    return v * h + cfg["num_hidden_layers"] * per_layer + h + head


def build(out: str) -> str:
    """Write the tokenizer, config and random bf16 weights to ``out``; return ``out``.

    A folder that already holds a complete build is reused.
    """
    if os.path.exists(os.path.join(out, "model.safetensors")) and os.path.exists(os.path.join(out, "tokenizer.json")):
        return out
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    os.makedirs(out, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(out)
    fields = model_config(len(fast), fast.bos_token_id, fast.eos_token_id)
    fields.pop("architectures")
    fields.pop("model_type")
    dtype = fields.pop("torch_dtype")
    torch.manual_seed(SEED)
    cfg = LlamaConfig(**fields)
    model = LlamaForCausalLM(cfg).to(getattr(torch, dtype))
    model.save_pretrained(out, safe_serialization=True)
    # Newer transformers write "dtype" instead of "torch_dtype": keep both for every vLLM.
    cfg_path = os.path.join(out, "config.json")
    with open(cfg_path, encoding="utf-8") as fh:
        written = json.load(fh)
    written.setdefault("torch_dtype", dtype)
    with open(cfg_path, "w", encoding="utf-8") as fh:
        json.dump(written, fh, indent=2)
    return out
