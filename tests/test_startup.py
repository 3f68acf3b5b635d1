"""A command loads only what it needs: checked in a fresh interpreter, through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, clean_env

PROBE = """
import contextlib, io, json, sys
from bwdoctor.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(sys.argv[1:])
sig = sys.modules.get("bwdoctor.kb.signatures")
print(json.dumps({"code": code, "modules": sorted(sys.modules),
                  "signatures_compiled": bool(sig and sig.compiled.cache_info().currsize)}))
"""


def loaded(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=str(ROOT),
                          env=clean_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _under(modules: list[str], *prefixes: str) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["list"], ["explain", "BWD-GPU-001"],
                                  ["kb", "--format", "json"], ["arch", "--help"]])
def test_catalogue_and_help_commands_import_no_collector_or_parser_and_compile_no_signatures(args):
    res = loaded(*args)
    assert res["code"] == 0
    mods = res["modules"]
    assert _under(mods, "bwdoctor_checks.collectors", "bwdoctor_checks.parsers") == [], args
    assert not res["signatures_compiled"], args
    assert _under(mods, "torch", "vllm", "pynvml", "requests", "yaml", "elftools") == [], args


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_help_and_version_import_no_check_remedy_or_knowledge_base(args):
    mods = loaded(*args)["modules"]
    assert _under(mods, "bwdoctor_checks.checks", "bwdoctor_remedies", "bwdoctor.kb", "bwdoctor_checks._lib",
                  "rich", "importlib.metadata", "multiprocessing") == [], args


def test_analyze_imports_no_collector():
    res = loaded("analyze", str(ROOT / "tests" / "data" / "evidence" / "h100-nvidia-smi.txt"), "--fail-on", "never")
    assert res["code"] == 0
    assert _under(res["modules"], "bwdoctor_checks.collectors") == []
    assert _under(res["modules"], "bwdoctor_checks.parsers")


def test_a_run_from_a_stored_report_imports_no_collector_or_parser(tmp_path):
    report = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "bwdoctor.cli", "analyze", str(ROOT / "tests" / "data" / "evidence" /
                           "h100-nvidia-smi.txt"), "--format", "json", "-o", str(report), "--fail-on", "never"],
                          capture_output=True, text=True, cwd=str(ROOT), env=clean_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    res = loaded("run", "--from", str(report), "--fail-on", "never")
    assert res["code"] == 0
    assert _under(res["modules"], "bwdoctor_checks.collectors", "bwdoctor_checks.parsers") == []


def test_a_lazy_regex_compiles_at_first_use_and_behaves_as_the_compiled_pattern():
    import re

    from bwdoctor import lazy_regex

    pat = lazy_regex(r"(?P<major>\d+)\.(?P<minor>\d+)", re.I)
    assert pat._compiled is None and pat.pattern == r"(?P<major>\d+)\.(?P<minor>\d+)"
    m = pat.search("driver CUDA 12.8")
    assert m is not None and m.group("minor") == "8"
    assert pat._compiled is not None and pat.flags & re.I
    assert pat.sub("X", "a 1.2 b 3.4") == "a X b X" and pat.findall("1.2 3.4") == [("1", "2"), ("3", "4")]
    assert [m.group(0) for m in pat.finditer("1.2, 3.4")] == ["1.2", "3.4"]
    assert pat.groupindex == {"major": 1, "minor": 2} and pat.groups == 2
    assert pat.fullmatch("10.0") and not pat.match("v10.0") and pat.split("a1.2b") == ["a", "1", "2", "b"]
