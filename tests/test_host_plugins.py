"""The plugin host calls hooks through pluggy: a hook with a mistyped name or without the decorator
is reported, never silently ignored or called; built-ins declare through the same hooks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bwdoctor import CheckSpec, hookimpl, passed
from bwdoctor.manager import DEFAULT_PLUGINS, HOOK_NAMES, ROLE_HOOKS, PluginManager, builtin_modules, plugin_roles
from bwdoctor.runner import plugin_findings

from conftest import clean_env, run_cli

HEADER = "from bwdoctor import CheckSpec, hookimpl, passed\n"


def _dir(tmp_path: Path, **files: str) -> Path:
    d = tmp_path / "plugins"
    d.mkdir()
    for name, text in files.items():
        (d / f"{name}.py").write_text(text)
    return d


def test_a_mistyped_hook_in_a_plugin_folder_is_one_error_finding_naming_plugin_and_hook(tmp_path: Path):
    d = _dir(tmp_path, typo=HEADER + "@hookimpl\ndef bwdoctor_check():\n"
             "    return [CheckSpec('BWD-TYPO-001', 't', lambda s: passed('x'), doc='d')]\n")
    code, out, err = run_cli(["--plugin-dir", str(d), "run", "--select", "CORE", "--format", "json",
                              "--fail-on", "never"], env=clean_env())
    assert code == 0, err
    errors = [f for f in json.loads(out)["findings"] if f["status"] == "error"]
    assert len(errors) == 1, errors
    [f] = errors
    assert f["id"] == "BWD-CORE-001" and f["subject"] == "typo"
    assert "bwdoctor_check()" in f["message"] and "did you mean bwdoctor_checks" in f["message"]
    assert f["details"]["hook"] == "bwdoctor_check"


def test_every_pending_hook_is_reported_once_and_the_plugins_good_hooks_still_work():
    class P:
        @hookimpl
        def bwdoctor_check(self):
            raise AssertionError("never called")

        @hookimpl
        def bwdoctor_reporter(self):
            raise AssertionError("never called")

        @hookimpl
        def bwdoctor_checks(self):
            return [CheckSpec("BWD-GOOD-001", "good", lambda s: passed("fine"), doc="d")]

    pm = PluginManager(builtins=False, entry_points=False)
    pm.register_module(P(), "mixed")
    pm._check_pending()
    pm._check_pending()  # a second look reports nothing new
    found = plugin_findings(pm)
    assert sorted(f.details["hook"] for f in found) == ["bwdoctor_check", "bwdoctor_reporter"]
    assert all(f.id == "BWD-CORE-001" and f.status == "error" and f.subject == "mixed" for f in found)
    assert [c.id for c in pm.registry().checks] == ["BWD-GOOD-001"]


def test_an_undecorated_hook_function_is_not_called_and_is_reported(tmp_path: Path):
    marker = tmp_path / "called"
    d = _dir(tmp_path, bare=HEADER + "def bwdoctor_checks():\n"
             f"    open({str(marker)!r}, 'w').write('x')\n"
             "    return [CheckSpec('BWD-BARE-001', 'bare', lambda s: passed('x'), doc='d')]\n")
    pm = PluginManager(builtins=False, entry_points=False, plugin_dirs=[str(d)])
    assert pm.registry().checks == []
    assert not marker.exists()
    [f] = plugin_findings(pm)
    assert f.id == "BWD-CORE-001" and "without the @bwdoctor.hookimpl decorator" in f.message
    assert f.details["hook"] == "bwdoctor_checks"


def test_hooks_are_called_through_pluggys_implementations_once_per_plugin():
    calls = []

    class P:
        @hookimpl
        def bwdoctor_checks(self):
            calls.append(1)
            return [CheckSpec("BWD-ONCE-001", "once", lambda s: passed("x"), doc="d")]

    pm = PluginManager(builtins=False, entry_points=False)
    pm.register_module(P(), "once")
    pm.registry()
    pm.load_roles(["checks"])  # no built-ins here: nothing new to call
    pm._registry = None
    pm.registry()
    assert calls == [1]


def test_a_hook_wrapper_is_reported_not_called():
    class P:
        @hookimpl(wrapper=True)
        def bwdoctor_checks(self):
            raise AssertionError("never called")
            yield  # pragma: no cover

    pm = PluginManager(builtins=False, entry_points=False)
    pm.register_module(P(), "wrapper")
    [f] = plugin_findings(pm)
    assert "hook wrapper" in f.message


def test_every_builtin_implements_exactly_the_hook_of_its_role():
    """The role in a built-in's name (and ALSO_IMPLEMENTS) says which hooks it implements: commands
    load plugins by role without importing them first, so the name must not lie."""
    for modname, name in builtin_modules():
        pm = PluginManager(builtins=False, entry_points=False)
        import importlib

        pm.register_module(importlib.import_module(modname), name, origin="builtin")
        hooks = {c.name for c in pm.pm.get_hookcallers(pm.pm.get_plugin(name)) or []}
        assert hooks == {ROLE_HOOKS[r] for r in plugin_roles(name)}, (name, hooks)


def test_builtin_reporters_commands_and_host_checks_come_through_the_hooks():
    pm = PluginManager(entry_points=False, roles=["reporters", "commands", "checks"])
    reg = pm.registry()
    by_plugin = {r.name: r.plugin for r in reg.reporters}
    assert by_plugin == {n: "reporters.builtin" for n in ("console", "json", "markdown", "junit", "sarif")}
    assert {"kb", "arch"} <= {c.name for c in reg.commands}
    core = [c for c in reg.checks if c.area == "CORE"]
    assert core and {c.plugin for c in core} == {"checks.host"}
    assert {"checks.host", "reporters.builtin", "commands.kb"} <= set(DEFAULT_PLUGINS)
    assert set(HOOK_NAMES) == set(ROLE_HOOKS.values())


def test_roles_load_only_their_builtins():
    pm = PluginManager(entry_points=False, roles=["checks"])
    assert all("checks" in plugin_roles(n) for n in pm.infos)
    pm.load_roles(["remedies"])
    assert {n.split(".")[0] for n in pm.infos} == {"checks", "remedies"}
    assert pm.registry().remedies and pm.registry().checks and not pm.registry().collectors


@pytest.mark.parametrize("fmt", ["nope"])
def test_an_unknown_format_names_the_known_ones(fmt):
    code, _, err = run_cli(["analyze", "README.md", "--format", fmt], env=clean_env())
    assert code == 2 and "console" in err and "sarif" in err
