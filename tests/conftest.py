"""Shared test helpers. Tests never need a GPU unless marked ``gpu``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from bwdoctor.types import Fact, Finding, Missing, Snapshot

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session", autouse=True)
def _own_cache_folder(tmp_path_factory):
    """The user cache folder (derived detector shapes, checked knowledge-base files, binary scans)
    is the session's own: tests neither read what an earlier run left nor write to the user's."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def cli_env(monkeypatch):
    """A clean environment for CLI runs: no plugin folders or disables inherited from the caller."""
    for var in ("BWDOCTOR_PLUGIN_PATH", "BWDOCTOR_DISABLE"):
        monkeypatch.delenv(var, raising=False)
    return os.environ


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any BWDOCTOR_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BWDOCTOR_")}
    env.update(extra)
    return env


def run_cli(args, env=None, input=None, timeout=120):
    """Run the real console entry point in a subprocess: exit code, stdout, stderr."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "bwdoctor.cli", *args], capture_output=True, text=True,
                          env=env, input=input, timeout=timeout, cwd=str(ROOT))
    return proc.returncode, proc.stdout, proc.stderr


# ----------------------------------------------------------------------------- recorded facts


def make_snapshot(facts: Mapping[str, Any] | None = None, *, base: Iterable[Fact | Missing] = (),
                  gpus: Sequence[Mapping[str, Any]] = (), target: str | None = None, source: str = "test",
                  **named: Any) -> Snapshot:
    """A snapshot of recorded facts, as collectors and parsers would produce them: ``base`` first
    (a parser's or an NVML replay's facts), then ``gpus`` as ``gpu.0``, ``gpu.1`` ..., ``facts``
    keyed by dotted names and keyword facts with ``__`` for ``.`` (``gpu__0=...`` sets ``gpu.0``);
    ``target`` is resolved as ``--target`` is."""
    snap = Snapshot(base)
    for i, gpu in enumerate(gpus):
        snap.set(f"gpu.{i}", dict(gpu), source)
    for key, value in {**(facts or {}), **{k.replace("__", "."): v for k, v in named.items()}}.items():
        snap.set(key, value, source)
    if target:
        from bwdoctor import pipeline

        pipeline.apply_target(snap, target)
    return snap


_REGISTRY: Any = None


def builtin_registry() -> Any:
    """The built-in plugins' registry (loaded once per test session)."""
    global _REGISTRY
    if _REGISTRY is None:
        from bwdoctor.manager import PluginManager

        _REGISTRY = PluginManager(entry_points=False).registry()
    return _REGISTRY


def judge(snap: Snapshot, *check_ids: str, level: str = "full") -> list[Finding]:
    """The findings of the named checks (all, when none are named) on ``snap``, through the same
    pipeline stage a live run uses (the ``--target`` judged view included)."""
    from bwdoctor import pipeline

    return pipeline.judge(builtin_registry(), snap, level, select=check_ids)


@pytest.fixture
def snapshot_of():
    """:func:`make_snapshot` as a fixture."""
    return make_snapshot


@pytest.fixture(scope="session")
def registry():
    """The built-in plugins' registry."""
    return builtin_registry()
