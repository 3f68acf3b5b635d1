import time
from pathlib import Path

from bwdoctor import CheckSpec, CollectorSpec, Fact, Unavailable, failed, hookimpl, passed
from bwdoctor.manager import PluginManager
from bwdoctor.runner import collect, plugin_findings, run_check, run_checks, select_checks
from bwdoctor.types import RunOptions, Snapshot


def _hang(*_):
    time.sleep(60)


def _crash(options):
    import faulthandler
    import os

    faulthandler.disable()

    os.kill(os.getpid(), 11)


def test_isolated_collector_that_hangs_is_killed_at_its_deadline():
    class P:
        @hookimpl
        def bwdoctor_collectors(self):
            return [CollectorSpec("hangs", lambda o: _hang(), provides=["hang.*"], isolate=True, timeout=1.0),
                    CollectorSpec("ok", lambda o: [Fact("ok.value", 1, "t")], provides=["ok.*"], isolate=True)]

    pm = PluginManager(builtins=False, entry_points=False)
    pm.register_module(P(), "p")
    start = time.monotonic()
    snap, findings = collect(pm.registry(), RunOptions())
    assert time.monotonic() - start < 5
    assert snap.value("ok.value") == 1
    assert [f.id for f in findings] == ["BWD-CORE-003"]
    assert findings[0].status == "error" and "timed out" in findings[0].message
    assert "hangs" in snap.why_missing("hang.x")


def test_collector_that_crashes_the_interpreter_costs_one_error():
    class P:
        @hookimpl
        def bwdoctor_collectors(self):
            return [CollectorSpec("segv", _crash, provides=["segv.*"], isolate=True, timeout=5.0)]

    pm = PluginManager(builtins=False, entry_points=False)
    pm.register_module(P(), "p")
    snap, findings = collect(pm.registry(), RunOptions())
    assert len(findings) == 1 and "signal 11" in findings[0].message


def test_unavailable_collector_makes_checks_skip_with_its_reason():
    def nodriver(options):
        raise Unavailable("no NVIDIA driver: libnvidia-ml.so.1 not found")

    class P:
        @hookimpl
        def bwdoctor_collectors(self):
            return [CollectorSpec("nvml", nodriver, provides=["gpu.*", "driver.*"], isolate=True)]

        @hookimpl
        def bwdoctor_checks(self):
            return [CheckSpec("BWD-TEST-001", "driver", lambda s: passed("ok"), needs=["driver.version"], doc="d")]

    pm = PluginManager(builtins=False, entry_points=False)
    pm.register_module(P(), "p")
    snap, errors = collect(pm.registry(), RunOptions())
    assert errors == []
    [f] = run_checks(pm.registry().checks, snap)
    assert f.status == "skip" and f.message == "no NVIDIA driver: libnvidia-ml.so.1 not found"


def test_check_that_raises_or_hangs_costs_one_error_finding_each():
    checks = [
        CheckSpec("BWD-TEST-001", "raises", lambda s: 1 / 0, doc="d"),
        CheckSpec("BWD-TEST-002", "hangs", _hang, timeout=0.5, doc="d"),
        CheckSpec("BWD-TEST-003", "fine", lambda s: failed("broken", root_cause="gpu_health"), doc="d"),
        CheckSpec("BWD-TEST-004", "wrong type", lambda s: "yes", doc="d"),
    ]
    start = time.monotonic()
    findings = run_checks(checks, Snapshot())
    assert time.monotonic() - start < 3
    by_id = {f.id: f for f in findings}
    assert by_id["BWD-TEST-001"].status == "error" and "ZeroDivisionError" in by_id["BWD-TEST-001"].message
    assert by_id["BWD-TEST-002"].status == "error" and "timed out" in by_id["BWD-TEST-002"].message
    assert by_id["BWD-TEST-003"].status == "fail" and by_id["BWD-TEST-003"].root_cause == "gpu_health"
    assert by_id["BWD-TEST-004"].status == "error"


def test_plugin_that_fails_to_import_is_one_error_naming_it(tmp_path: Path):
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "good.py").write_text(
        "from bwdoctor import CheckSpec, hookimpl, passed\n"
        "@hookimpl\n"
        "def bwdoctor_checks():\n"
        "    return [CheckSpec('BWD-GOOD-001', 'good', lambda s: passed('fine'), doc='d')]\n")
    pm = PluginManager(builtins=False, entry_points=False, plugin_dirs=[str(tmp_path)])
    problems = plugin_findings(pm)
    assert len(problems) == 1
    assert problems[0].id == "BWD-CORE-001" and problems[0].status == "error"
    assert "broken" in problems[0].message and "boom at import" in problems[0].message
    assert [c.id for c in pm.registry().checks] == ["BWD-GOOD-001"]


def test_duplicate_check_id_is_an_error_and_the_first_wins(tmp_path: Path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.py").write_text(
            "from bwdoctor import CheckSpec, hookimpl, passed\n"
            "@hookimpl\n"
            "def bwdoctor_checks():\n"
            f"    return [CheckSpec('BWD-DUP-001', '{name}', lambda s: passed('x'), doc='d')]\n")
    pm = PluginManager(builtins=False, entry_points=False, plugin_dirs=[str(tmp_path)])
    problems = plugin_findings(pm)
    assert [p.id for p in problems] == ["BWD-CORE-002"]
    assert "BWD-DUP-001" in problems[0].message
    assert [c.title for c in pm.registry().checks] == ["a"]


def test_plugins_can_be_disabled_by_name(tmp_path: Path, monkeypatch):
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    pm = PluginManager(builtins=False, entry_points=False, plugin_dirs=[str(tmp_path)], disabled=["broken"])
    assert plugin_findings(pm) == []
    assert pm.infos["broken"].status == "disabled"
    monkeypatch.setenv("BWDOCTOR_DISABLE", "broken")
    pm = PluginManager(builtins=False, entry_points=False, plugin_dirs=[str(tmp_path)])
    assert plugin_findings(pm) == []


def test_hook_that_raises_costs_one_error():
    class P:
        @hookimpl
        def bwdoctor_checks(self):
            raise ValueError("cannot declare")

    pm = PluginManager(builtins=False, entry_points=False)
    pm.register_module(P(), "raiser")
    [f] = plugin_findings(pm)
    assert f.id == "BWD-CORE-001" and "raiser" in f.message and "cannot declare" in f.message


def test_selection_by_id_prefix_area_and_tag_and_level():
    mk = lambda i, **kw: CheckSpec(i, i, lambda s: None, doc="d", **kw)  # noqa: E731
    checks = [mk("BWD-GPU-001", tags=["nvml"]), mk("BWD-GPU-002"), mk("BWD-STACK-001", tags=["static"]),
              mk("BWD-SMOKE-001", level="full")]
    ids = lambda cs: [c.id for c in cs]  # noqa: E731
    assert ids(select_checks(checks, "quick")) == ["BWD-GPU-001", "BWD-GPU-002", "BWD-STACK-001"]
    assert ids(select_checks(checks, "full", select=["BWD-GPU"])) == ["BWD-GPU-001", "BWD-GPU-002"]
    assert ids(select_checks(checks, "full", select=["gpu"])) == ["BWD-GPU-001", "BWD-GPU-002"]
    assert ids(select_checks(checks, "full", select=["static"])) == ["BWD-STACK-001"]
    assert ids(select_checks(checks, "full", select=["BWD-GPU-002"])) == ["BWD-GPU-002"]
    assert ids(select_checks(checks, "full", skip=["nvml", "BWD-SMOKE"])) == ["BWD-GPU-002", "BWD-STACK-001"]


def test_missing_facts_skip_with_reason_never_pass():
    spec = CheckSpec("BWD-TEST-001", "t", lambda s: passed("ok"), needs=["gpu.*"], doc="d")
    snap = Snapshot()
    snap.mark_missing("gpu.*", "no NVIDIA driver")
    [f] = run_check(spec, snap)
    assert f.status == "skip" and f.message == "no NVIDIA driver"
