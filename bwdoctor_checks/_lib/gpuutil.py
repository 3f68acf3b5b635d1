"""Shared GPU helpers for the NVML collector and the GPU checks (pure: no I/O, no driver).

The NVML enumerations (clock event reason bits, recovery actions, P2P status, topology levels,
compute modes, architectures, virtualization, fabric states) live in ``bwdoctor/kb/nvml.json``.
"""

from __future__ import annotations

from typing import Any

from bwdoctor import kb

_ENUMS = kb.nvml_enums()

# bit -> (name, meaning, costs performance while the GPU is busy); bwdoctor/kb/nvml.json
CLOCK_EVENT_REASONS: dict[int, tuple[str, str, bool]] = {
    bit: (name, meaning, costly) for bit, (name, meaning, costly, _label) in _ENUMS["clock_event_reasons"].items()}
# nvidia-smi -q label -> (name, bit)
SMI_CLOCK_REASON_LABELS: dict[str, tuple[str, int]] = {
    label: (name, bit) for bit, (name, _m, _c, label) in _ENUMS["clock_event_reasons"].items()}
IDLE_BIT: int = _ENUMS["idle_bit"]
# Reasons that indicate a hardware or cooling problem rather than a policy.
SEVERE_REASON_BITS: int = sum(_ENUMS["severe_reason_bits"])


def decode_clock_reasons(mask: Any) -> list[str]:
    """Names of the bits set in a clock-event-reason mask (unknown bits as hex)."""
    if not isinstance(mask, int) or isinstance(mask, bool):
        return []
    out = []
    for bit in sorted(CLOCK_EVENT_REASONS):
        if mask & bit:
            out.append(CLOCK_EVENT_REASONS[bit][0])
    rest = mask & ~sum(CLOCK_EVENT_REASONS)
    b = 1
    while rest:
        if rest & b:
            out.append(f"bit_{b:#x}")
            rest &= ~b
        b <<= 1
    return out


RECOVERY_ACTIONS: dict[int, str] = _ENUMS["recovery_actions"]
P2P_STATUS: dict[int, str] = _ENUMS["p2p_status"]
TOPOLOGY: dict[int, str] = _ENUMS["topology"]
TOPOLOGY_HELP: dict[str, str] = _ENUMS["topology_help"]
COMPUTE_MODES: dict[int, str] = _ENUMS["compute_modes"]
ARCHITECTURES: dict[int, str] = _ENUMS["architectures"]
VIRTUALIZATION: dict[int, str] = _ENUMS["virtualization"]
FABRIC_STATES: dict[int, str] = _ENUMS["fabric_states"]


def is_mig_uuid(text: str) -> bool:
    t = text.strip()
    return t.startswith("MIG-")
