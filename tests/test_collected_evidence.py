"""Text a collector captures as evidence (a failed smoke generation's engine log) goes through the
evidence parsers, so its failure signatures become findings in a live run."""

from bwdoctor import CollectorSpec, Fact, hookimpl
from bwdoctor.manager import PluginManager
from bwdoctor.runner import collect, run_checks
from bwdoctor.types import RunOptions

LOG = """INFO 03-02 10:00:00 [api_server.py:1043] vLLM API server version 0.9.0
ERROR 03-02 10:00:05 [core.py:515] EngineCore failed to start.
RuntimeError: CUDA error: no kernel image is available for execution on the device
"""


class FakeSmoke:
    @hookimpl
    def bwdoctor_collectors(self):
        return [CollectorSpec("fake-smoke", lambda o: [Fact("smoke.result", {"ok": False}, "fake"),
                                                       Fact("evidence.smoke-engine-log", LOG, "fake")])]


def test_a_failed_smoke_log_is_parsed_like_an_analyzed_log():
    pm = PluginManager(entry_points=False)
    for name in list(pm.infos):
        if pm.infos[name].origin == "builtin" and name not in ("parsers.log", "checks.log"):
            pm.pm.unregister(name=name)
    pm.register_module(FakeSmoke(), "fake")
    reg = pm.registry()
    snap, errors = collect(reg, RunOptions())
    assert errors == []
    sigs = [e["signature"] for e in snap.value("log.errors")]
    assert "no_kernel_image" in sigs
    failing = [f for f in run_checks(reg.checks, snap) if f.status == "fail"]
    assert any(f.root_cause in ("arch_not_in_vllm_wheel", "arch_not_in_torch_wheel") for f in failing)
