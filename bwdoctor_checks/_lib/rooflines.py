"""Rooflines and thresholds the probes and the smoke generation are judged against (pure arithmetic)."""

from __future__ import annotations

from typing import Any

# Thresholds, as a percentage of the knowledge base's datasheet figure (see docs/smoke-and-probes.md).
BANDWIDTH_WARN_PCT = 70.0


BF16_WARN_PCT = 60.0


FP8_WARN_PCT = 50.0


FP4_WARN_PCT = 40.0


PCIE_WARN_PCT = 60.0
# peer copy between two GPUs, and NCCL all-reduce bus bandwidth, against the link's one-way figure
PEER_WARN_PCT = 50.0
ALLREDUCE_WARN_PCT = 40.0


# Usable PCIe bandwidth per lane and direction in GB/s, after line encoding (8b/10b for gen 1-2,
# 128b/130b for gen 3-5, 242/256 FLIT for gen 6): gen3 8 GT/s x 128/130 / 8 = 0.985 GB/s, and so on.
PCIE_LANE_GBS = {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}


def pcie_theoretical_gbs(gen: Any, width: Any) -> float | None:
    """Theoretical one-direction bandwidth of a PCIe link in GB/s (None when unknown)."""
    try:
        g, w = int(gen), int(width)
    except (TypeError, ValueError):
        return None
    if g not in PCIE_LANE_GBS or w <= 0:
        return None
    return round(PCIE_LANE_GBS[g] * w, 3)


ROOFLINE_WARN_PCT = 40.0


# Single-request decode pays a fixed cost each step (scheduling, input preparation, sampling, the
# CUDA-graph launch) besides reading the weights. Measured on an H200 with vLLM 0.22.1 and CUDA graphs
# (tests/data/gpu/h200-vllm-0.22.1): a model of 1.82 GiB decoded at 467-716 tokens/s (1.4-2.1 ms a
# step) while reading its weights takes 0.46 ms at the measured 4,255 GB/s, so 1-1.7 ms of each step
# is fixed. The bandwidth roofline judges the GPU only when reading the weights takes at least this
# long per token: the fixed cost is then at most about a third of the step, and the warning threshold
# (ROOFLINE_WARN_PCT) stays well under what a healthy GPU reaches.
ROOFLINE_MIN_STEP_MS = 3.0


def weight_read_ms(weights_bytes: float, bandwidth_gbs: float) -> float:
    """Milliseconds to read ``weights_bytes`` once at ``bandwidth_gbs``."""
    return 1000.0 * weights_bytes / (bandwidth_gbs * 1e9)


def decode_roofline(weights_bytes: float, bandwidth_gbs: float) -> float:
    """Upper bound of single-request decode tokens/s: each token reads every weight once, so
    tokens/s <= memory bandwidth / weight bytes (KV-cache reads ignored: small at short context)."""
    if weights_bytes <= 0 or bandwidth_gbs <= 0:
        raise ValueError("weights and bandwidth must be positive")
    return bandwidth_gbs * 1e9 / weights_bytes


def roofline_percent(tokens_per_s: float, weights_bytes: float, bandwidth_gbs: float) -> float:
    return 100.0 * tokens_per_s / decode_roofline(weights_bytes, bandwidth_gbs)
