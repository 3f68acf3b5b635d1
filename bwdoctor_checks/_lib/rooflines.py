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


ROOFLINE_MIN_WEIGHTS_GIB = 0.5


def decode_roofline(weights_bytes: float, bandwidth_gbs: float) -> float:
    """Upper bound of single-request decode tokens/s: each token reads every weight once, so
    tokens/s <= memory bandwidth / weight bytes (KV-cache reads ignored: small at short context)."""
    if weights_bytes <= 0 or bandwidth_gbs <= 0:
        raise ValueError("weights and bandwidth must be positive")
    return bandwidth_gbs * 1e9 / weights_bytes


def roofline_percent(tokens_per_s: float, weights_bytes: float, bandwidth_gbs: float) -> float:
    return 100.0 * tokens_per_s / decode_roofline(weights_bytes, bandwidth_gbs)
