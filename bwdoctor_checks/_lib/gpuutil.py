"""Shared GPU helpers for the NVML collector and the GPU checks (pure: no I/O, no driver).

Clock event reason bits are those of ``nvmlDeviceGetCurrentClocksEventReasons`` (NVML header and
nvidia-ml-py 13.615.71; the deprecated ``...ThrottleReasons`` names return the same mask).
"""

from __future__ import annotations

from typing import Any

# bit -> (name, meaning, costs performance while the GPU is busy)
CLOCK_EVENT_REASONS: dict[int, tuple[str, str, bool]] = {
    0x1: ("gpu_idle", "nothing is running; clocks drop to idle", False),
    0x2: ("applications_clocks_setting", "clocks limited by the application-clocks setting", True),
    0x4: ("sw_power_cap", "clocks lowered to stay under the power limit", True),
    0x8: ("hw_slowdown", "hardware slowdown (>= 2x clock cut): over-temperature, external power brake or power "
          "too high", True),
    0x10: ("sync_boost", "held at the sync-boost group's minimum", True),
    0x20: ("sw_thermal_slowdown", "keeping GPU or memory under the maximum operating temperature", True),
    0x40: ("hw_thermal_slowdown", "hardware thermal slowdown (>= 2x clock cut)", True),
    0x80: ("hw_power_brake_slowdown", "external power-brake assertion (e.g. by the power supply)", True),
    0x100: ("display_clock_setting", "clocks limited by display clocks", False),
}
IDLE_BIT = 0x1
# Reasons that indicate a hardware or cooling problem rather than a policy.
SEVERE_REASON_BITS = 0x8 | 0x40 | 0x80


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


RECOVERY_ACTIONS = {0: "none", 1: "gpu_reset", 2: "node_reboot", 3: "drain_p2p", 4: "drain_and_reset"}
P2P_STATUS = {0: "ok", 1: "chipset_not_supported", 2: "gpu_not_supported", 3: "ioh_topology_not_supported",
              4: "disabled_by_regkey", 5: "not_supported", 6: "unknown"}
TOPOLOGY = {0: "internal", 10: "single", 20: "multiple", 30: "hostbridge", 40: "node", 50: "system"}
TOPOLOGY_HELP = {"internal": "same board", "single": "one PCIe switch", "multiple": "several PCIe switches",
                 "hostbridge": "same PCIe host bridge", "node": "same NUMA node (across host bridges)",
                 "system": "across NUMA nodes / CPU sockets"}
COMPUTE_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}
ARCHITECTURES = {2: "kepler", 3: "maxwell", 4: "pascal", 5: "volta", 6: "turing", 7: "ampere", 8: "ada", 9: "hopper",
                 10: "blackwell", 13: "rubin"}
VIRTUALIZATION = {0: "none", 1: "passthrough", 2: "vgpu", 3: "host_vgpu", 4: "host_vsga"}
FABRIC_STATES = {0: "not_supported", 1: "not_started", 2: "in_progress", 3: "completed"}


def is_mig_uuid(text: str) -> bool:
    t = text.strip()
    return t.startswith("MIG-")
