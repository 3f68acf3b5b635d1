"""The remedy contract: every check that can fail or warn names a remedy that a registered
RemedySpec implements, or its doc says "No automatic remedy"; every remedy id that checks may
name (COMMON list) is implemented."""

from __future__ import annotations

from bwdoctor.manager import PluginManager

KNOWN_REMEDY_IDS = {
    "driver.upgrade", "driver.remove-compat", "driver.reload", "torch.reinstall-cuda-variant",
    "torch.align-companions", "vllm.install-supported", "vllm.rebuild-for-torch", "flashinfer.align",
    "toolkit.cuda-home", "triton.ptxas", "nccl.upgrade", "nccl.p2p-disable", "nccl.env-fix",
    "config.replace-vllm-env", "compose.ipc-host", "compose.shm-size", "dockerfile.base-image",
    "dockerfile.vllm-pin", "container.toolkit", "gpu.persistence-mode", "gpu.mig-guidance", "gpu.advisory",
    "gpu.free-memory", "vllm.memory-settings", "vllm.attention-backend", "vllm.fp8-fallback",
    "fabric-manager.install", "wsl.guidance",
}


def _registry():
    return PluginManager(entry_points=False).registry()


def test_every_listed_remedy_is_implemented() -> None:
    implemented = {r.id for r in _registry().remedies}
    assert KNOWN_REMEDY_IDS <= implemented, sorted(KNOWN_REMEDY_IDS - implemented)


def violations() -> list[str]:
    reg = _registry()
    implemented = {r.id for r in reg.remedies}
    bad = []
    for spec in reg.checks:
        if not spec.can_fail:
            continue
        if any(r in implemented for r in spec.remedies):
            continue
        if "No automatic remedy" in (spec.doc or ""):
            continue
        missing = [r for r in spec.remedies if r not in implemented]
        bad.append(f"{spec.id} ({spec.plugin}): " + (f"unknown remedy ids {missing}" if missing else
                                                     "no remedy and no 'No automatic remedy' in its doc"))
    return sorted(bad)


def test_every_failing_check_has_a_remedy_or_says_why_not() -> None:
    bad = violations()
    assert not bad, "\n".join(bad)
