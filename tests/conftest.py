"""Shared test helpers. Tests never need a GPU unless marked ``gpu``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


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
