"""Model architectures and the memory/speed budget's constants, as data.

``models.json``: popular open-weight architectures, each row the values of the model's own
``config.json`` with its source. ``fit.json``: bytes per weight of each checkpoint format, bytes
per KV-cache element, the engine defaults a budget assumes, and the non-KV overhead model. Both
are loaded strictly (a malformed row raises :class:`KbError` naming it) and cached; their JSON
Schemas (``models.schema.json``, ``fit.schema.json``) describe the same shape for editors and tests.

Public API::

    models() -> list[ModelRow]
    find_model("neuralmagic/Meta-Llama-3.1-70B-Instruct-FP8") -> ModelRow | None
    quantization_from_name("Qwen2.5-72B-Instruct-AWQ") -> "awq" | None
    fit_data() -> dict   # fit.json
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["KbError", "ModelRow", "fit_data", "find_model", "models", "quantization_from_name"]

_DIR = Path(__file__).resolve().parent

# config.json fields a row may carry, with their JSON types.
CONFIG_FIELDS: dict[str, tuple[type, ...]] = {
    "hidden_size": (int,), "num_hidden_layers": (int,), "num_attention_heads": (int,),
    "num_key_value_heads": (int,), "head_dim": (int,), "intermediate_size": (int,), "vocab_size": (int,),
    "tie_word_embeddings": (bool,), "max_position_embeddings": (int,), "sliding_window": (int, type(None)),
    "sliding_window_pattern": (int,), "layer_types": (str,), "moe_intermediate_size": (int,),
    "num_experts": (int,), "num_local_experts": (int,), "n_routed_experts": (int,), "n_shared_experts": (int,),
    "num_experts_per_tok": (int,), "first_k_dense_replace": (int,), "kv_lora_rank": (int,),
    "q_lora_rank": (int,), "qk_rope_head_dim": (int,), "qk_nope_head_dim": (int,), "v_head_dim": (int,),
}
REQUIRED_CONFIG = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                   "intermediate_size", "vocab_size")


class KbError(ValueError):
    """A knowledge-base file does not have the shape its schema describes."""


@dataclass(frozen=True)
class ModelRow:
    key: str
    names: tuple[str, ...]
    aliases: tuple[str, ...]
    architecture: str
    config: dict[str, Any]
    checkpoint_dtype: str
    quantization: str | None
    params_b: float
    active_params_b: float
    sources: tuple[str, ...]
    notes: str = ""
    vision_params_b: float = 0.0  # a multimodal checkpoint's vision tower, loaded beside the text model


def _load(name: str) -> dict[str, Any]:
    with open(_DIR / name, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or data.get("schema") != 1:
        raise KbError(f"{name}: top level must be an object with schema 1")
    return data


def _row(raw: Any, i: int) -> ModelRow:
    where = f"models.json row {i}"
    if not isinstance(raw, dict):
        raise KbError(f"{where}: not an object")
    allowed = set(ModelRow.__dataclass_fields__)
    extra = set(raw) - allowed
    if extra:
        raise KbError(f"{where}: unknown fields {sorted(extra)}")
    for k in ("key", "architecture", "checkpoint_dtype"):
        if not isinstance(raw.get(k), str) or not raw[k]:
            raise KbError(f"{where}: {k} must be a non-empty string")
    where = f"models.json {raw['key']}"
    for k in ("names", "sources"):
        v = raw.get(k)
        if not isinstance(v, list) or not v or not all(isinstance(s, str) and s for s in v):
            raise KbError(f"{where}: {k} must be a non-empty list of strings")
    if not all(s.startswith("https://") or "@" in s for s in raw["sources"]):
        raise KbError(f"{where}: every source must be a https:// address or a file@version reference")
    if not isinstance(raw.get("aliases", []), list):
        raise KbError(f"{where}: aliases must be a list")
    cfg = raw.get("config")
    if not isinstance(cfg, dict):
        raise KbError(f"{where}: config must be an object")
    for k, v in cfg.items():
        types = CONFIG_FIELDS.get(k)
        if types is None:
            raise KbError(f"{where}: unknown config field {k!r}")
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            raise KbError(f"{where}: config.{k} has the wrong type")
    missing = [k for k in REQUIRED_CONFIG if k not in cfg]
    if missing:
        raise KbError(f"{where}: config lacks {missing}")
    for k in ("params_b", "active_params_b"):
        if not isinstance(raw.get(k), (int, float)) or isinstance(raw.get(k), bool) or raw[k] <= 0:
            raise KbError(f"{where}: {k} must be a positive number")
    q = raw.get("quantization")
    if q is not None and q not in fit_data()["weight_formats"]:
        raise KbError(f"{where}: quantization {q!r} is not a weight format of fit.json")
    return ModelRow(key=raw["key"], names=tuple(raw["names"]), aliases=tuple(raw.get("aliases") or ()),
                    architecture=raw["architecture"], config=dict(cfg), checkpoint_dtype=raw["checkpoint_dtype"],
                    quantization=q, params_b=float(raw["params_b"]), active_params_b=float(raw["active_params_b"]),
                    sources=tuple(raw["sources"]), notes=str(raw.get("notes") or ""),
                    vision_params_b=float(raw.get("vision_params_b") or 0.0))


@cache
def _models() -> tuple[ModelRow, ...]:
    rows = _load("models.json").get("models")
    if not isinstance(rows, list):
        raise KbError("models.json: models must be a list")
    out = tuple(_row(r, i) for i, r in enumerate(rows))
    keys = [r.key for r in out]
    if len(keys) != len(set(keys)):
        raise KbError("models.json: duplicate keys")
    return out


@cache
def fit_data() -> dict[str, Any]:
    data = _load("fit.json")
    for k in ("weight_formats", "kv_cache_dtypes", "engine_defaults", "overhead"):
        if not isinstance(data.get(k), dict):
            raise KbError(f"fit.json: {k} must be an object")
    for name, fmt in data["weight_formats"].items():
        if not isinstance(fmt, dict) or not isinstance(fmt.get("bits"), (int, float)) or not fmt.get("sources"):
            raise KbError(f"fit.json: weight format {name} needs bits and sources")
    return data


def models() -> list[ModelRow]:
    """Every architecture row."""
    return list(_models())


# Suffixes that name a re-published (quantized, instruction-tuned, dated) variant of the same weights.
_QUANT_NAME = [
    (re.compile(r"(?i)(?:^|[-_.])(?:nv)?fp4(?:$|[-_.])|nvfp4"), "nvfp4"),
    (re.compile(r"(?i)mxfp4"), "mxfp4"),
    (re.compile(r"(?i)(?:^|[-_.])fp8(?:[-_.]|$)|fp8-dynamic|w8a8-fp8"), "fp8"),
    (re.compile(r"(?i)gptq[-_.]?int8"), "gptq-int8"),
    (re.compile(r"(?i)(?:^|[-_.])gptq"), "gptq"),
    (re.compile(r"(?i)(?:^|[-_.])awq"), "awq"),
    (re.compile(r"(?i)(?:^|[-_.])(?:w8a8|int8|w8a16)(?:[-_.]|$)"), "int8"),
    (re.compile(r"(?i)bnb|4bit"), "bitsandbytes"),
]
_STRIP = re.compile(r"(?i)[-_.](?:instruct|chat|it|base|hf|fp8(?:-dynamic)?|awq|gptq(?:-int[48])?|int[48]|w8a8|w8a16|"
                    r"w4a16|nvfp4|fp4|mxfp4|bnb-4bit|4bit|8bit|dynamic|quantized(?:\.w8a8)?|\d{4})$")


def quantization_from_name(name: str) -> str | None:
    """The checkpoint format a repository name announces (``-FP8``, ``-AWQ``, ``-GPTQ-Int4``, ``-NVFP4``)."""
    base = str(name).rsplit("/", 1)[-1]
    for rx, q in _QUANT_NAME:
        if rx.search(base):
            return q
    return None


def _norm(text: str) -> str:
    s = text.lower().rsplit("/", 1)[-1]
    while True:
        t = _STRIP.sub("", s)
        if t == s:
            break
        s = t
    s = re.sub(r"^meta-(?=llama)", "", s)
    return re.sub(r"[^a-z0-9.]+", "", s).replace("llama3", "llama-3").replace("-", "")


def find_model(name: str | None) -> ModelRow | None:
    """The row for a repository id or a short name; a quantized or instruction-tuned re-publication
    (``neuralmagic/Meta-Llama-3.1-70B-Instruct-FP8``) finds its base model's row."""
    if not name or not str(name).strip():
        return None
    q = str(name).strip()
    low = q.lower()
    for r in _models():
        if low == r.key or low in (n.lower() for n in r.names) or low in (a.lower() for a in r.aliases):
            return r
    n = _norm(q)
    if not n:
        return None
    for r in _models():
        cands = [r.key, *r.names, *r.aliases]
        if any(_norm(c) == n for c in cands):
            return r
    return None
