"""Facts of the wrong shape (a hand-edited report given to --from) make checks skip or judge what
they can: they do not break."""

from bwdoctor import Snapshot
from bwdoctor.manager import PluginManager
from bwdoctor.runner import run_checks


def test_wrong_shapes_break_no_check():
    snap = Snapshot()
    for key, value in {"torch": 5, "vllm": "0.9.0", "packages": ["torch"], "triton": 3, "flashinfer": "x",
                       "toolkit.nvcc": 12, "vllm.config": "fp8", "smoke.result": 1, "smoke.engine": [],
                       "log.kv_cache": "big", "config.compose": 7, "host.env": "A=1", "target": "sm_120"}.items():
        snap.set(key, value, "hand-edited")
    checks = PluginManager(entry_points=False).registry().checks
    errors = [(f.id, f.message) for f in run_checks(checks, snap) if f.status == "error"]
    assert errors == []
