"""Terminal control sequences from file names and log lines (an OSC 52 clipboard write, NUL,
ESC, a screen clear) never reach the console, Markdown, JSON or a fix script: they are shown as
escapes."""

from __future__ import annotations

import os

import pytest

from conftest import run_cli

OSC52 = "\x1b]52;c;cm0gLXJmIH4=\x07"


@pytest.fixture
def hostile(tmp_path):
    d = tmp_path / "ev"
    d.mkdir()
    (d / f"vllm{OSC52}.log").write_text(
        "INFO 12-01 10:00:00 [core.py:1] start\n"
        f"ERROR 12-01 10:00:07 [core.py:501] torch.OutOfMemoryError: CUDA out of memory. {OSC52} Tried to allocate "
        "2.00 GiB \x00\x1b[2J\x9b31m\n")
    (d / ".env").write_text(f"VLLM_USE_FLASHINFER={OSC52}true\n")
    return d


@pytest.mark.parametrize("fmt", ["console", "markdown", "json", "junit", "sarif"])
def test_controls_escaped_in_reports(hostile, fmt):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BWDOCTOR_")}
    code, out, err = run_cli(["analyze", str(hostile), "--format", fmt, "-vv"], env=env)
    assert code in (0, 1), err
    for ch in ("\x1b", "\x00", "\x07", "\x9b"):
        assert ch not in out, (fmt, repr(ch))
    assert "\\x1b]52" in out or "\\\\x1b]52" in out  # shown, not hidden


def test_controls_escaped_in_fix_script(hostile):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BWDOCTOR_")}
    code, out, err = run_cli(["fix", str(hostile)], env=env)
    assert code == 0, err
    for ch in ("\x1b", "\x00", "\x07", "\x9b"):
        assert ch not in out, repr(ch)
