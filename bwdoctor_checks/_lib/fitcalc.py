"""Will a model fit, and how fast can it be: the memory and speed budget of a vLLM deployment.

Pure arithmetic over plain data (no I/O): a model description (from a local ``config.json``, the
knowledge base's architecture table, or a parameter count in the name), the deployment's settings
(vLLM flags) and the judged GPU. The KV-cache arithmetic mirrors vLLM's own
(``vllm/v1/kv_cache_interface.py`` page sizes, ``vllm/v1/core/kv_cache_utils.py`` grouping of
full and sliding-window layers, blocks per request and the logged "KV cache size: N tokens");
the non-KV overhead mirrors ``gpu_worker.determine_available_memory`` (weights + activation peak
+ runtime memory + CUDA-graph estimate, subtracted from total × gpu_memory_utilization).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from bwdoctor import lazy_regex
from bwdoctor.kb import models as kbm

GiB = float(1 << 30)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def gib(n: float) -> float:
    return n / GiB


# ---------------------------------------------------------------------------------------- model


@dataclass
class Model:
    """What the budget needs to know about a model. ``origin``: ``folder`` (its own config.json),
    ``table`` (the knowledge base's row), ``estimate`` (a parameter count in its name)."""

    name: str
    origin: str
    ref: str  # path, row key, or the name the estimate came from
    architecture: str = ""
    hidden: int = 0
    layers: int = 0
    heads: int = 0
    kv_heads: int = 0
    head_dim: int = 0
    intermediate: int = 0
    vocab: int = 0
    tied: bool = False
    max_position: int | None = None
    sliding_window: int | None = None
    sliding_layers: int = 0
    experts: int = 0
    experts_per_tok: int = 0
    moe_intermediate: int = 0
    shared_experts: int = 0
    shared_intermediate: int = 0
    dense_layers: int = 0  # leading dense layers of an MoE model (DeepSeek first_k_dense_replace)
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    q_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    dtype: str = "bfloat16"
    quantization: str | None = None
    exact_weight_bytes: int | None = None
    exact_weight_source: str = ""
    params_total: int = 0
    params_active: int = 0
    params_embed: int = 0
    params_experts: int = 0
    sources: tuple[str, ...] = ()

    @property
    def estimate(self) -> bool:
        return self.origin == "estimate"

    @property
    def moe(self) -> bool:
        return self.experts > 0

    @property
    def mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def full_layers(self) -> int:
        return self.layers - self.sliding_layers

    def summary(self) -> str:
        parts = [f"{self.params_total / 1e9:.1f}B parameters"]
        if self.moe:
            parts[0] = f"{self.params_total / 1e9:.1f}B parameters ({self.params_active / 1e9:.1f}B active, " \
                       f"{self.experts_per_tok} of {self.experts} experts)"
        if self.layers:
            if self.mla:
                parts.append(f"{self.layers} layers, MLA (latent {self.kv_lora_rank} + rope {self.qk_rope_head_dim})")
            else:
                attn = "MHA" if self.kv_heads == self.heads else ("MQA" if self.kv_heads == 1 else "GQA")
                parts.append(f"{self.layers} layers, {attn} {self.heads}/{self.kv_heads} heads x {self.head_dim}")
        if self.sliding_layers and self.sliding_window:
            parts.append(f"{self.sliding_layers} sliding-window layers ({self.sliding_window} tokens)")
        if self.vocab:
            parts.append(f"vocabulary {self.vocab:,}" + (" (tied embeddings)" if self.tied else ""))
        return ", ".join(parts)


def _text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    tc = cfg.get("text_config")
    if isinstance(tc, dict):
        merged = {k: v for k, v in cfg.items() if k != "text_config"}
        merged.update(tc)
        return merged
    return cfg


def _int(cfg: dict[str, Any], *keys: str, default: int = 0) -> int:
    for k in keys:
        v = cfg.get(k)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return default


def _sliding_layers(cfg: dict[str, Any], arch: str, layers: int) -> tuple[int | None, int]:
    window = cfg.get("sliding_window")
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        return None, 0
    if cfg.get("use_sliding_window") is False:
        return None, 0
    types = cfg.get("layer_types")
    if isinstance(types, list) and types:
        n = sum(1 for t in types[:layers] if isinstance(t, str) and "sliding" in t)
        return (window, n) if n else (None, 0)
    if isinstance(types, str) and "alternating" in types:
        return window, (layers + 1) // 2 if "sliding first" in types else layers // 2
    pattern = cfg.get("sliding_window_pattern")
    if isinstance(pattern, int) and pattern > 1:
        return window, sum(1 for i in range(layers) if (i + 1) % pattern != 0)
    if "gemma2" in arch.lower() or cfg.get("model_type") == "gemma2":
        return window, (layers + 1) // 2
    if window >= _int(cfg, "max_position_embeddings", default=1 << 30):
        return None, 0  # a window as long as the context is no window
    return window, layers


def describe(cfg: dict[str, Any], name: str, origin: str, ref: str, quantization: str | None = None,
             exact_weight_bytes: int | None = None, exact_weight_source: str = "",
             sources: tuple[str, ...] = ()) -> Model:
    """A :class:`Model` from config.json values (``text_config`` of multimodal checkpoints merged in)."""
    c = _text_config(cfg)
    archs = c.get("architectures")
    arch = str(archs[0]) if isinstance(archs, list) and archs else str(c.get("architecture") or c.get("model_type") or "")
    hidden = _int(c, "hidden_size", "n_embd", "d_model")
    layers = _int(c, "num_hidden_layers", "n_layer", "num_layers")
    heads = _int(c, "num_attention_heads", "n_head")
    kv_heads = _int(c, "num_key_value_heads", "num_kv_heads", default=heads)
    head_dim = _int(c, "head_dim", default=hidden // heads if heads else 0)
    inter = _int(c, "intermediate_size", "ffn_dim", "n_inner", default=4 * hidden)
    window, n_sliding = _sliding_layers(c, arch, layers)
    experts = _int(c, "num_experts", "num_local_experts", "n_routed_experts")
    m = Model(name=name, origin=origin, ref=ref, architecture=arch, hidden=hidden, layers=layers, heads=heads,
              kv_heads=kv_heads, head_dim=head_dim, intermediate=inter, vocab=_int(c, "vocab_size"),
              tied=bool(c.get("tie_word_embeddings", False)),
              max_position=_int(c, "max_position_embeddings") or None,
              sliding_window=window, sliding_layers=n_sliding, experts=experts,
              experts_per_tok=_int(c, "num_experts_per_tok", "moe_topk", "top_k") if experts else 0,
              moe_intermediate=_int(c, "moe_intermediate_size", default=inter) if experts else 0,
              shared_experts=_int(c, "n_shared_experts") if experts else 0,
              shared_intermediate=_int(c, "shared_expert_intermediate_size") if experts else 0,
              dense_layers=_int(c, "first_k_dense_replace") if experts else 0,
              kv_lora_rank=_int(c, "kv_lora_rank"), qk_rope_head_dim=_int(c, "qk_rope_head_dim"),
              q_lora_rank=_int(c, "q_lora_rank"), qk_nope_head_dim=_int(c, "qk_nope_head_dim"),
              v_head_dim=_int(c, "v_head_dim"),
              dtype=str(c.get("torch_dtype") or c.get("dtype") or "bfloat16"),
              quantization=quantization, exact_weight_bytes=exact_weight_bytes,
              exact_weight_source=exact_weight_source, sources=sources)
    if m.shared_experts and not m.shared_intermediate:
        m.shared_intermediate = m.moe_intermediate * m.shared_experts
    _count(m)
    return m


def _count(m: Model) -> None:
    h = m.hidden
    if m.mla:
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        q = (h * m.q_lora_rank + m.q_lora_rank * m.heads * qk) if m.q_lora_rank else h * m.heads * qk
        attn = q + h * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank * m.heads * (m.qk_nope_head_dim + m.v_head_dim) \
            + m.heads * m.v_head_dim * h
    else:
        attn = h * m.heads * m.head_dim * 2 + 2 * h * m.kv_heads * m.head_dim
    dense_mlp = 3 * h * m.intermediate
    embed = m.vocab * h * (1 if m.tied else 2)
    if m.moe:
        moe_layers = m.layers - m.dense_layers
        expert = 3 * h * m.moe_intermediate
        shared = 3 * h * m.shared_intermediate
        router = h * m.experts
        experts_all = moe_layers * m.experts * expert
        total = m.layers * attn + m.dense_layers * dense_mlp + experts_all + moe_layers * (shared + router) + embed
        active = m.layers * attn + m.dense_layers * dense_mlp + moe_layers * (m.experts_per_tok * expert + shared + router) \
            + embed
        m.params_experts = experts_all
    else:
        total = active = m.layers * (attn + dense_mlp) + embed
    m.params_total, m.params_active, m.params_embed = int(total), int(active), int(embed)


_PARAMS_IN_NAME = lazy_regex(r"(?i)(?:^|[-_/.])(?:(\d+)x)?(\d+(?:\.\d+)?)b(?:[-_.]a(\d+(?:\.\d+)?)b)?(?=$|[-_.])")


def estimate_from_name(name: str, quantization: str | None = None) -> Model | None:
    """Last resort: a parameter count in the name (``-13B``, ``8x7B``, ``-30B-A3B``), marked as an estimate.
    Without an architecture there is no KV-cache size: only weights and speed are budgeted."""
    base = str(name).rsplit("/", 1)[-1]
    m = _PARAMS_IN_NAME.search(base)
    if not m:
        return None
    mult = int(m.group(1)) if m.group(1) else 1
    total = float(m.group(2)) * 1e9 * mult
    active = float(m.group(3)) * 1e9 if m.group(3) else total
    mod = Model(name=name, origin="estimate", ref=m.group(0).strip("-_/."), quantization=quantization)
    mod.params_total, mod.params_active = int(total), int(active)
    return mod


def from_table(name: str, quantization: str | None = None) -> Model | None:
    row = kbm.find_model(name)
    if row is None:
        return None
    q = quantization or kbm.quantization_from_name(name) or row.quantization
    m = describe(dict(row.config, architectures=[row.architecture]), name, "table", row.key, quantization=q,
                 sources=row.sources)
    if row.vision_params_b:
        extra = int(row.vision_params_b * 1e9)  # kept in 16 bits, like the embeddings
        m.params_total += extra
        m.params_active += extra
        m.params_embed += extra
    return m


def resolve_model(name: str, quantization: str | None = None) -> Model | None:
    """The table row for a model name, else an estimate from the name; None when neither."""
    return from_table(name, quantization) or estimate_from_name(name, quantization or kbm.quantization_from_name(name))


def quantization_from_config(qc: Any) -> str | None:
    """The checkpoint format a config.json ``quantization_config`` declares."""
    if not isinstance(qc, dict):
        return None
    method = str(qc.get("quant_method") or qc.get("quantization") or "").lower()
    bits = qc.get("bits") or qc.get("w_bit")
    if method in ("fp8", "fbgemm_fp8"):
        return "fp8"
    if method == "mxfp4":
        return "mxfp4"
    if method in ("awq", "awq_marlin"):
        return "awq"
    if method in ("gptq", "gptq_marlin"):
        return "gptq-int8" if bits == 8 else "gptq"
    if method == "bitsandbytes":
        return "bitsandbytes"
    if method == "modelopt":
        algo = str(qc.get("quant_algo") or (qc.get("quantization") or {}).get("quant_algo") if isinstance(qc.get("quantization"), dict) else qc.get("quant_algo") or "").upper()
        return "nvfp4" if "FP4" in algo else "fp8"
    if method == "compressed-tensors":
        text = str(qc).lower()
        if "float" in text and "'num_bits': 8" in text:
            return "fp8"
        if "'num_bits': 4" in text:
            return "nvfp4" if "'type': 'float'" in text else "gptq"
        if "'num_bits': 8" in text:
            return "int8"
    return method or None


# -------------------------------------------------------------------------------------- weights


def _bits(fmt: str) -> float:
    spec = kbm.fit_data()["weight_formats"].get(fmt)
    return float(spec["bits"]) if spec else 16.0


def weight_bytes(m: Model) -> float:
    """Bytes of the checkpoint's weights: exact when the safetensors headers gave them."""
    if m.exact_weight_bytes:
        return float(m.exact_weight_bytes)
    return _param_bytes(m, m.params_total, m.params_experts)


def active_weight_bytes(m: Model) -> float:
    """Bytes one decode step reads for one sequence: every dense weight, the routed experts only."""
    if not m.moe:
        return weight_bytes(m)
    routed_active = m.params_experts * m.experts_per_tok / max(m.experts, 1)
    full = _param_bytes(m, m.params_total, m.params_experts)
    scale = weight_bytes(m) / full if full else 1.0
    return _param_bytes(m, m.params_active, routed_active) * scale


def _param_bytes(m: Model, params: float, expert_params: float) -> float:
    base = _bits(m.dtype if m.dtype in kbm.fit_data()["weight_formats"] else "bfloat16")
    fmt = m.quantization
    if not fmt or fmt not in kbm.fit_data()["weight_formats"]:
        return params * base / 8
    spec = kbm.fit_data()["weight_formats"][fmt]
    bits = float(spec["bits"])
    if spec.get("experts_only"):
        return expert_params * bits / 8 + (params - expert_params) * base / 8
    if spec.get("linear_only"):
        embed = min(m.params_embed, params)
        return (params - embed) * bits / 8 + embed * base / 8
    return params * bits / 8


# ----------------------------------------------------------------------------------- deployment


@dataclass
class Deployment:
    """The settings a budget is computed for, as vLLM flags name them. ``origin`` maps a setting to
    where it was read (``--max-model-len`` flag, ``VLLM_MAX_MODEL_LEN (ignored by vLLM)``, a log line)."""

    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float | None = None
    kv_cache_dtype: str = "auto"
    quantization: str | None = None
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    enforce_eager: bool = False
    block_size: int | None = None
    speculative_model: str | None = None
    num_speculative_tokens: int | None = None
    enable_lora: bool = False
    max_loras: int | None = None
    max_lora_rank: int | None = None
    disable_hybrid_kv_cache_manager: bool = False
    origin: dict[str, str] = field(default_factory=dict)

    def flags(self) -> str:
        out = []
        for k in ("max_model_len", "max_num_seqs", "gpu_memory_utilization", "kv_cache_dtype", "tensor_parallel_size"):
            v = getattr(self, k)
            if v not in (None, "auto", 1) or (k == "tensor_parallel_size" and v != 1):
                out.append(f"--{k.replace('_', '-')} {v}")
        return " ".join(out)


@dataclass
class Gpu:
    """The memory one engine process gets (a whole GPU or a MIG slice) and its speeds."""

    name: str
    memory_gib: float
    bandwidth_gbs: float | None = None
    bf16_tflops: float | None = None
    fp8_tflops: float | None = None
    fp4_tflops: float | None = None
    fp8: bool = False
    used_by_others_gib: float = 0.0
    origin: str = ""
    mig_profile: str | None = None


def _defaults(gpu: Gpu) -> dict[str, Any]:
    d = kbm.fit_data()["engine_defaults"]
    large = gpu.memory_gib >= d["max_num_seqs"]["large_gpu_min_gib"] and "a100" not in gpu.name.lower()
    huge = gpu.memory_gib >= d["max_num_batched_tokens"]["huge_gpu_min_gib"]
    return {
        "block_size": d["block_size"], "gpu_memory_utilization": d["gpu_memory_utilization"],
        "max_num_seqs": d["max_num_seqs"]["large_gpu" if large else "other"],
        "max_num_batched_tokens": d["max_num_batched_tokens"]["huge_gpu" if huge else
                                                              ("large_gpu_server" if large else "other_server")],
        "max_lora_rank": d["max_lora_rank"], "max_loras": d["max_loras"],
    }


# ----------------------------------------------------------------------------------- KV cache


def kv_element_bytes(m: Model, kv_cache_dtype: str) -> int:
    kd = kbm.fit_data()["kv_cache_dtypes"].get(kv_cache_dtype or "auto") or {}
    b = kd.get("bytes") if isinstance(kd, dict) else None
    if isinstance(b, int):
        return b
    return 4 if m.dtype in ("float32",) else 2


def kv_bytes_per_token_layer(m: Model, kv_cache_dtype: str = "auto", tp: int = 1) -> int:
    """Bytes one token takes in one attention layer's KV cache on one GPU (vLLM's page size / block size)."""
    if m.mla:
        kd = kbm.fit_data()["kv_cache_dtypes"].get(kv_cache_dtype or "auto") or {}
        if isinstance(kd, dict) and kd.get("mla_bytes_per_token_layer"):
            return int(kd["mla_bytes_per_token_layer"])
        return (m.kv_lora_rank + m.qk_rope_head_dim) * kv_element_bytes(m, kv_cache_dtype)
    heads = max(1, m.kv_heads // max(tp, 1))
    return 2 * heads * m.head_dim * kv_element_bytes(m, kv_cache_dtype)


@dataclass
class KvCapacity:
    tokens: int
    concurrency: float
    num_blocks: int
    bytes_per_token: float  # all layers (and the draft model's) on this GPU


def kv_capacity(m: Model, kv_bytes: float, max_model_len: int, *, kv_cache_dtype: str = "auto", tp: int = 1,
                pp: int = 1, block_size: int = 16, max_num_batched_tokens: int = 8192,
                draft: Model | None = None, hybrid: bool = True) -> KvCapacity:
    """Tokens and sequences of ``max_model_len`` the KV cache holds, as vLLM computes them."""
    page = block_size * kv_bytes_per_token_layer(m, kv_cache_dtype, tp)
    full = cdiv(m.full_layers, pp)
    slide = cdiv(m.sliding_layers, pp) if m.sliding_layers else 0
    if not hybrid and slide:
        full, slide = full + slide, 0
    draft_page = 0
    if draft is not None and draft.layers:
        draft_page = draft.layers * block_size * kv_bytes_per_token_layer(draft, kv_cache_dtype, tp)
    blocks_full = cdiv(max_model_len, block_size)
    if slide and m.sliding_window:
        blocks_slide = cdiv(min(m.sliding_window - 1 + max_num_batched_tokens, max_model_len), block_size) + 1
    else:
        blocks_slide = 0
    if slide and full:
        size = min(full, slide)
        if max(full, slide) < size * 1.5:
            size = max(full, slide)
        g_full, g_slide = cdiv(full, size), cdiv(slide, size)
        per_block = size * page + draft_page
        per_request = g_full * blocks_full + g_slide * blocks_slide
    elif slide:
        per_block = slide * page + draft_page
        per_request = blocks_slide
    else:
        per_block = full * page + draft_page
        per_request = blocks_full
    if per_block <= 0 or kv_bytes <= 0:
        return KvCapacity(0, 0.0, 0, 0.0)
    num_blocks = int(kv_bytes // per_block)
    conc = num_blocks / per_request if per_request else 0.0
    per_token = (full + slide) * page / block_size + draft_page / block_size
    return KvCapacity(int(conc * max_model_len), conc, num_blocks, per_token)


# ------------------------------------------------------------------------------------- overhead


def lora_bytes(m: Model, max_loras: int, rank: int, tp: int = 1) -> float:
    """vLLM preallocates A and B matrices of ``max_loras`` slots at ``max_lora_rank`` for every
    target module of every layer (qkv, o, gate_up, down by default), in the model's dtype."""
    h, q = m.hidden, m.heads * (m.head_dim or (m.hidden // max(m.heads, 1)))
    kv = m.kv_heads * m.head_dim
    inter = m.intermediate if not m.moe else 0
    per_layer = (3 * h + q + 2 * kv) + (q + h) + (2 * h + 2 * inter) + (inter + h)
    return max_loras * rank * m.layers * per_layer * 2 / max(tp, 1)


def activation_bytes(m: Model, batched_tokens: int, num_seqs: int, tp: int = 1) -> float:
    ov = kbm.fit_data()["overhead"]["activation"]
    inter = max(m.intermediate if not m.moe or m.dense_layers else 0,
                m.experts_per_tok * m.moe_intermediate if m.moe else 0)
    qkv = (m.heads + 2 * m.kv_heads) * m.head_dim
    width = (3 * inter + qkv) / max(tp, 1) + 4 * m.hidden
    return batched_tokens * width * ov["bytes_per_token_per_width"] + num_seqs * m.vocab * ov["sampler_bytes_per_seq_per_vocab"] / max(tp, 1)


def graph_bytes(m: Model, pp: int = 1) -> float:
    g = kbm.fit_data()["overhead"]["cuda_graphs"]
    return (g["base_gib"] + g["per_layer_gib"] * cdiv(m.layers or 32, pp)) * GiB


# ---------------------------------------------------------------------------------------- budget


@dataclass
class Budget:
    model: Model
    deployment: Deployment
    gpu: Gpu
    settings: dict[str, Any]
    budget_bytes: float
    weights: float
    draft_weights: float
    lora: float
    activation: float
    graphs: float
    reserve: float
    kv_bytes: float
    capacity: KvCapacity | None
    verdict: str  # fits | fits_partly | no_kv | weights_too_big | kv_unknown | others_hold_memory
    concurrency: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def non_kv(self) -> float:
        return self.weights + self.draft_weights + self.lora + self.activation + self.graphs + self.reserve

    @property
    def fits(self) -> bool:
        return self.verdict in ("fits", "fits_partly")


def budget(m: Model, d: Deployment, gpu: Gpu, draft: Model | None = None) -> Budget:
    """The per-GPU memory budget: what the weights, draft model, adapters and overheads take, what is
    left for the KV cache, and how many ``max_model_len`` sequences that holds."""
    dflt = _defaults(gpu)
    util = d.gpu_memory_utilization or dflt["gpu_memory_utilization"]
    max_len = d.max_model_len or m.max_position or 8192
    seqs = d.max_num_seqs or dflt["max_num_seqs"]
    batched = d.max_num_batched_tokens or max(dflt["max_num_batched_tokens"], 0)
    bs = d.block_size or dflt["block_size"]
    tp, pp = max(d.tensor_parallel_size, 1), max(d.pipeline_parallel_size, 1)
    if d.quantization and d.quantization != m.quantization and d.quantization in kbm.fit_data()["weight_formats"] \
            and not m.exact_weight_bytes and not m.quantization:
        m = replace(m, quantization=d.quantization)  # online quantization of a 16-bit checkpoint
    settings = {"max_model_len": max_len, "max_num_seqs": seqs, "max_num_batched_tokens": batched,
                "gpu_memory_utilization": util, "block_size": bs, "tp": tp, "pp": pp}
    total = gpu.memory_gib * GiB
    budget_bytes = total * util
    w = weight_bytes(m) / (tp * pp)
    dw = weight_bytes(draft) / tp if draft is not None else 0.0
    lora = lora_bytes(m, d.max_loras or dflt["max_loras"], d.max_lora_rank or dflt["max_lora_rank"], tp) \
        if d.enable_lora and m.layers else 0.0
    act = activation_bytes(m, batched, seqs, tp) if m.layers else 0.0
    graphs = 0.0 if d.enforce_eager else graph_bytes(m, pp)
    reserve = float(kbm.fit_data()["overhead"]["runtime_reserve_gib"]) * GiB
    kv = budget_bytes - (w + dw + lora + act + graphs + reserve)
    b = Budget(m, d, gpu, settings, budget_bytes, w, dw, lora, act, graphs, reserve, kv, None, "")
    if gpu.used_by_others_gib and gpu.used_by_others_gib * GiB > total - budget_bytes:
        b.notes.append(f"other processes hold {gpu.used_by_others_gib:.1f} GiB, more than the "
                       f"{gib(total - budget_bytes):.1f} GiB that gpu_memory_utilization {util} leaves free: "
                       "vLLM refuses to start (free memory below the requested share)")
    if w + dw + lora > budget_bytes:
        b.verdict = "weights_too_big"
        return b
    if not m.layers:
        b.verdict = "kv_unknown" if kv > 0 else "no_kv"
        return b
    cap = kv_capacity(m, kv, max_len, kv_cache_dtype=d.kv_cache_dtype, tp=tp, pp=pp, block_size=bs,
                      max_num_batched_tokens=batched, draft=draft,
                      hybrid=not d.disable_hybrid_kv_cache_manager)
    b.capacity = cap
    b.concurrency = int(math.floor(cap.concurrency + 1e-9))
    if kv <= 0 or cap.tokens <= 0:
        b.verdict = "no_kv"
    elif b.concurrency < 1:
        b.verdict = "no_kv"
    elif b.concurrency < seqs:
        b.verdict = "fits_partly"
    else:
        b.verdict = "fits"
    if b.notes and b.verdict in ("fits", "fits_partly"):
        b.verdict = "others_hold_memory"
    return b


def describe_budget(b: Budget) -> str:
    """One line: what each part takes and what it leaves, in GiB per GPU."""
    parts = [f"weights {gib(b.weights):.1f}"]
    if b.draft_weights:
        parts.append(f"draft model {gib(b.draft_weights):.1f}")
    if b.lora:
        parts.append(f"LoRA slots {gib(b.lora):.2f}")
    parts.append(f"activations {gib(b.activation):.1f}")
    if b.graphs:
        parts.append(f"CUDA graphs ~{gib(b.graphs):.1f}")
    parts.append(f"runtime {gib(b.reserve):.1f}")
    return (f"{b.gpu.memory_gib:g} GiB x {b.settings['gpu_memory_utilization']} = {gib(b.budget_bytes):.1f} GiB: "
            + ", ".join(parts) + f" → KV cache {gib(b.kv_bytes):.1f} GiB")


def verdict_text(b: Budget) -> str:
    L = b.settings["max_model_len"]
    seqs = b.settings["max_num_seqs"]
    if b.verdict == "weights_too_big":
        extra = " with the draft model and adapters" if (b.draft_weights or b.lora) else ""
        return (f"does not fit: the weights{extra} take {gib(b.weights + b.draft_weights + b.lora):.1f} GiB of the "
                f"{gib(b.budget_bytes):.1f} GiB budget")
    if b.verdict == "kv_unknown":
        return f"weights fit ({gib(b.weights):.1f} GiB); the KV cache cannot be sized without the architecture"
    cap = b.capacity
    if b.verdict == "no_kv":
        if b.kv_bytes <= 0:
            return f"does not fit: nothing is left for the KV cache ({gib(b.kv_bytes):.1f} GiB)"
        return (f"does not fit: the KV cache holds {cap.tokens if cap else 0:,} tokens, less than one "
                f"{L:,}-token sequence (vLLM refuses to start)")
    assert cap is not None
    head = f"KV cache {cap.tokens:,} tokens = {cap.concurrency:.1f} sequences of {L:,} tokens"
    if b.verdict == "fits_partly":
        return f"fits with {b.concurrency} concurrent {L:,}-token sequences ({head}; max_num_seqs {seqs} only for shorter ones)"
    if b.verdict == "others_hold_memory":
        return f"would fit ({head}) but " + "; ".join(b.notes)
    return f"fits: {head}, enough for all {seqs} sequences"


# --------------------------------------------------------------------------------------- remedies


def remedies(m: Model, d: Deployment, gpu: Gpu, draft: Model | None = None, gpus_available: int | None = None,
             mig_alternatives: list[Gpu] | None = None) -> list[tuple[str, Budget]]:
    """Single changes that make a deployment that does not fit hold at least one ``max_model_len``
    sequence (or all ``max_num_seqs`` when it already holds one), smallest change first, each with its budget."""
    base = budget(m, d, gpu, draft)
    want_all = base.verdict == "fits_partly"
    good = (lambda b: b.verdict == "fits") if want_all else (lambda b: b.fits)
    out: list[tuple[str, Budget]] = []

    def trial(flag: str, dd: Deployment, mm: Model = m, g: Gpu = gpu, dr: Model | None = draft) -> None:
        b = budget(mm, dd, g, dr)
        if good(b):
            out.append((flag, b))

    if (d.kv_cache_dtype or "auto") in ("auto", "bfloat16", "float16") and gpu.fp8 and m.layers:
        trial("--kv-cache-dtype fp8", replace(d, kv_cache_dtype="fp8"))
    if want_all and base.concurrency >= 1:
        out.append((f"--max-num-seqs {base.concurrency}", replace(base, verdict="fits")))
    if base.verdict in ("no_kv", "fits_partly") and base.capacity and base.capacity.bytes_per_token and m.layers:
        L = base.settings["max_model_len"]
        for cand in (131072, 65536, 32768, 16384, 8192, 4096, 2048):
            if cand < L:
                b = budget(m, replace(d, max_model_len=cand), gpu, draft)
                if good(b):
                    out.append((f"--max-model-len {cand}", b))
                    break
    if draft is not None:
        trial("drop the speculative draft model", replace(d, speculative_model=None), dr=None)
    if d.enable_lora and (d.max_loras or 1) > 1:
        trial("--max-loras 1", replace(d, max_loras=1))
    util = base.settings["gpu_memory_utilization"]
    if util < 0.95 and not gpu.used_by_others_gib:
        trial("--gpu-memory-utilization 0.95", replace(d, gpu_memory_utilization=0.95))
    if not m.quantization and not m.exact_weight_bytes:
        n0 = len(out)
        if gpu.fp8:
            trial("an FP8 checkpoint (or --quantization fp8)", d, mm=replace(m, quantization="fp8"))
        if len(out) == n0:
            trial("a 4-bit checkpoint (AWQ/GPTQ" + (", NVFP4" if gpu.fp4_tflops else "") + ")", d,
                  mm=replace(m, quantization="awq"))
    elif m.quantization in ("fp8", "int8") and not m.exact_weight_bytes:
        trial("a 4-bit checkpoint (AWQ/GPTQ" + (", NVFP4" if gpu.fp4_tflops else "") + ")", d,
              mm=replace(m, quantization="awq"))
    tp = max(d.tensor_parallel_size, 1)
    for n in (2, 4, 8):
        if n > tp and (gpus_available is None or n <= gpus_available) and (not m.kv_heads or m.kv_heads % n == 0 or m.mla):
            b = budget(m, replace(d, tensor_parallel_size=n), gpu, draft)
            if good(b):
                out.append((f"--tensor-parallel-size {n}" + ("" if gpus_available else f" ({n} GPUs)"), b))
                break
    for alt in mig_alternatives or []:
        b = budget(m, d, alt, draft)
        if good(b):
            out.append((f"a larger MIG slice ({alt.mig_profile}, {alt.memory_gib:g} GiB)", b))
            break
    return out


# ------------------------------------------------------------------------------------------ speed


@dataclass
class Speed:
    decode_bound: float  # tokens/s, one stream, short context
    decode_bound_full: float | None  # at max_model_len context
    prefill_bound: float | None  # tokens/s
    bytes_per_token: float
    kv_bytes_per_token: float
    bandwidth_gbs: float
    tflops: float | None
    tflops_kind: str


def speed(m: Model, d: Deployment, gpu: Gpu, context: int | None = None) -> Speed | None:
    """Upper bounds: one stream's decode reads every active weight (and its KV) once per token, so
    tokens/s <= bandwidth / bytes; prefill needs 2 x active parameters FLOPs per token."""
    if not gpu.bandwidth_gbs:
        return None
    tp = max(d.tensor_parallel_size, 1)
    bw = gpu.bandwidth_gbs * 1e9 * tp
    w = active_weight_bytes(m)
    kvpt = 0.0
    if m.layers:
        kvpt = kv_bytes_per_token_layer(m, d.kv_cache_dtype) * m.layers
    L = context or d.max_model_len or m.max_position or 0
    full = bw / (w + kvpt * L) if L and kvpt else None
    fmt = m.quantization or ""
    tf: float | None
    if fmt in ("nvfp4",) and gpu.fp4_tflops:
        tf, kind = gpu.fp4_tflops, "FP4"
    elif fmt in ("fp8", "nvfp4", "mxfp4") and gpu.fp8_tflops:
        tf, kind = gpu.fp8_tflops, "FP8"
    else:
        tf, kind = gpu.bf16_tflops, "BF16"
    prefill = tf * 1e12 * tp / (2 * m.params_active) if tf and m.params_active else None
    return Speed(bw / w, full, prefill, w, kvpt, gpu.bandwidth_gbs * tp, tf, kind)


def streams_needed(sp: Speed, aggregate_tps: float, context: int = 0) -> int | None:
    """Fewest concurrent streams whose summed decode bound reaches ``aggregate_tps``: B streams read
    the weights once per step and their own KV, B x bw / (W + B x KV(context)) >= T. None when
    unreachable at that context."""
    bw = sp.bandwidth_gbs * 1e9
    k = sp.kv_bytes_per_token * context
    if aggregate_tps * k >= bw:
        return None
    return max(1, math.ceil(aggregate_tps * sp.bytes_per_token / (bw - aggregate_tps * k) - 1e-9))
