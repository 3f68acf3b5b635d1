"""A model's ``config.json`` or ``model.safetensors.index.json`` given to ``analyze``, for the memory
and speed budget (the live ``--model`` folder is read by ``bwdoctor_checks.collectors.model``).

Facts (source ``model-config:<file>`` or ``safetensors-index:<file>``): ``model.local`` =
``{"path", "config", "quantization"}`` from a config, ``{"path", "weight_bytes", "weight_source"}``
from an index.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from bwdoctor import Evidence, Fact, ParserSpec, hookimpl, lazy_module

if TYPE_CHECKING:
    from bwdoctor_checks._lib import fitcalc as fc
else:  # imported when a model's config is read
    fc = lazy_module("bwdoctor_checks._lib.fitcalc")

MAX_CONFIG_BYTES = 4 << 20


def _json_head(ev: Evidence) -> dict[str, Any] | None:
    if not ev.name.endswith(".json") or ev.size > MAX_CONFIG_BYTES:
        return None
    try:
        data = json.loads(ev.text(MAX_CONFIG_BYTES))
    except (ValueError, OSError):
        return None
    return data if isinstance(data, dict) else None


def detect_config(ev: Evidence) -> bool:
    return ev.name.endswith(".json") and ("num_hidden_layers" in ev.head or "text_config" in ev.head) \
        and ("architectures" in ev.head or "model_type" in ev.head)


def parse_config(ev: Evidence) -> list[Fact]:
    data = _json_head(ev)
    if data is None:
        return []
    folder = os.path.dirname(ev.path) or "."
    q = fc.quantization_from_config(data.get("quantization_config"))
    return [Fact("model.local", {"path": folder, "config": data, "quantization": q}, f"model-config:{ev.path}")]


def detect_index(ev: Evidence) -> bool:
    return ev.name.endswith(".json") and "weight_map" in ev.head and "total_size" in ev.head


def parse_index(ev: Evidence) -> list[Fact]:
    data = _json_head(ev)
    total = (data.get("metadata") or {}).get("total_size") if data else None
    if not isinstance(total, int) or total <= 0:
        return []
    return [Fact("model.local", {"path": os.path.dirname(ev.path) or ".", "weight_bytes": total,
                                 "weight_source": f"from {ev.name} (metadata.total_size)"},
                 f"safetensors-index:{ev.path}")]


@hookimpl
def bwdoctor_parsers() -> list[ParserSpec]:
    return [
        ParserSpec(name="model-config", func=parse_config, detect=detect_config, provides=["model.local"],
                   doc="A model's config.json: architecture, layers, heads, KV heads, MoE, MLA, sliding window, "
                       "quantization_config."),
        ParserSpec(name="safetensors-index", func=parse_index, detect=detect_index, provides=["model.local"],
                   doc="model.safetensors.index.json: the checkpoint's total weight bytes."),
    ]
