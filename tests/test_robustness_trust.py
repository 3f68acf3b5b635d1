"""Plugin trust: folders and files others may write to are refused (one error finding each),
BWDOCTOR_PLUGIN_PATH entries must be absolute, hidden files are skipped, and ``python -m
bwdoctor`` never imports plugin code from the current folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bwdoctor.manager import PluginManager

from conftest import ROOT

PLUGIN = '''
from pathlib import Path
from bwdoctor import hookimpl
Path({marker!r}).write_text("loaded")

@hookimpl
def bwdoctor_checks():
    return []
'''


def _plant(folder: Path, name: str, marker: Path, mode: int = 0o644) -> Path:
    f = folder / name
    f.write_text(PLUGIN.format(marker=str(marker)))
    f.chmod(mode)
    return f


def _manager(monkeypatch, *dirs, env_path=None):
    monkeypatch.delenv("BWDOCTOR_DISABLE", raising=False)
    if env_path is None:
        monkeypatch.delenv("BWDOCTOR_PLUGIN_PATH", raising=False)
    else:
        monkeypatch.setenv("BWDOCTOR_PLUGIN_PATH", env_path)
    return PluginManager(plugin_dirs=dirs, builtins=False, entry_points=False)


def test_world_writable_folder_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    _plant(folder, "a.py", tmp_path / "a-loaded")
    _plant(folder, "b.py", tmp_path / "b-loaded")
    folder.chmod(0o777)
    mgr = _manager(monkeypatch, str(folder))
    assert not (tmp_path / "a-loaded").exists() and not (tmp_path / "b-loaded").exists()
    trust = [p for p in mgr.problems if p.kind == "trust"]
    assert len(trust) == 1 and "others may write" in trust[0].message


def test_group_or_world_writable_file_is_refused_alone(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir(mode=0o755)
    _plant(folder, "good.py", tmp_path / "good-loaded")
    _plant(folder, "bad.py", tmp_path / "bad-loaded", mode=0o666)
    _plant(folder, "grp.py", tmp_path / "grp-loaded", mode=0o664)
    mgr = _manager(monkeypatch, str(folder))
    assert (tmp_path / "good-loaded").exists()
    assert not (tmp_path / "bad-loaded").exists() and not (tmp_path / "grp-loaded").exists()
    assert sorted(p.plugin for p in mgr.problems if p.kind == "trust") == ["bad", "grp"]


def test_folder_below_a_writable_parent_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    folder = shared / "plugins"
    folder.mkdir(mode=0o755)
    _plant(folder, "a.py", tmp_path / "a-loaded")
    shared.chmod(0o777)  # others may rename plugins/ away and put their own in its place
    mgr = _manager(monkeypatch, str(folder))
    assert not (tmp_path / "a-loaded").exists()
    assert any(p.kind == "trust" and "above it" in p.message for p in mgr.problems)
    shared.chmod(0o1777)  # with the sticky bit they cannot
    mgr = _manager(monkeypatch, str(folder))
    assert (tmp_path / "a-loaded").exists() and not mgr.problems


def test_hidden_and_private_files_are_skipped(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir(mode=0o755)
    _plant(folder, ".hidden.py", tmp_path / "hidden-loaded")
    _plant(folder, "_private.py", tmp_path / "private-loaded")
    mgr = _manager(monkeypatch, str(folder))
    assert not (tmp_path / "hidden-loaded").exists() and not (tmp_path / "private-loaded").exists()
    assert not mgr.problems


def test_relative_plugin_path_entries_are_refused(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir(mode=0o755)
    _plant(folder, "a.py", tmp_path / "a-loaded")
    monkeypatch.chdir(tmp_path)
    mgr = _manager(monkeypatch, env_path="plugins")
    assert not (tmp_path / "a-loaded").exists()
    assert len(mgr.problems) == 1 and "not an absolute path" in mgr.problems[0].message
    mgr = _manager(monkeypatch, env_path=str(folder))
    assert (tmp_path / "a-loaded").exists()


def test_untrusted_folder_is_one_error_finding_through_the_cli(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    _plant(folder, "a.py", tmp_path / "a-loaded")
    folder.chmod(0o757)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BWDOCTOR_")}
    env["BWDOCTOR_PLUGIN_PATH"] = str(folder)
    proc = subprocess.run([sys.executable, "-m", "bwdoctor", "run", "--from", "/dev/null", "--format", "json"],
                          capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=120)
    assert not (tmp_path / "a-loaded").exists()
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "bwdoctor", "plugins", "--format", "json"], capture_output=True,
                          text=True, env=env, cwd=str(ROOT), timeout=120)
    problems = json.loads(proc.stdout)["problems"]
    assert [p["kind"] for p in problems] == ["trust"]


def test_python_m_bwdoctor_never_imports_from_the_current_folder(tmp_path):
    marker = tmp_path / "PWNED"
    (tmp_path / "bwdoctor_checks").mkdir()
    (tmp_path / "bwdoctor_checks" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('pkg')\n")
    dist = tmp_path / "evil-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: evil\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[bwdoctor]\nevil = evilplugin\n")
    (tmp_path / "evilplugin.py").write_text(f"open({str(marker)!r}, 'w').write('ep')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BWDOCTOR_") and k != "PYTHONPATH"}
    for module in ("bwdoctor", "bwdoctor.cli"):
        for args in (["list"], ["plugins", "--format", "json"]):
            proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env,
                                  cwd=str(tmp_path), timeout=120)
            assert proc.returncode == 0, proc.stderr
            assert not marker.exists(), f"python -m {module} {args} imported {marker.read_text()} from the folder"
    assert "evil" not in proc.stdout
