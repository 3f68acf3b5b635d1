"""BWD-FP8V-004 through `bwdoctor analyze`: a Marlin FP4 fallback on a GPU with FP4 tensor cores is a kernel-coverage
fault of the build; on a GPU without FP4 it is the designed path (log and RTX PRO 6000 table written for these
tests; the H100 table is a machine capture)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bwdoctor.cli import cli

DATA = Path(__file__).parent / "data"
LOG = DATA / "fp4" / "mxfp4-marlin.log"


def _analyze(*files: Path) -> dict:
    res = CliRunner().invoke(cli, ["analyze", *map(str, files), "--format", "json", "--fail-on", "never"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output[res.output.find("{"):])


def _finding(report: dict, fid: str) -> dict:
    return next(f for f in report["findings"] if f["id"] == fid)


def test_marlin_fallback_on_an_fp4_capable_blackwell_blames_the_build():
    report = _analyze(LOG, DATA / "fp4" / "rtxpro6000-nvidia-smi.txt")
    top = report["diagnosis"][0]
    assert top["root_cause"] == "fp4_kernel_arch_mismatch" and "BWD-FP8V-004" in top["findings"]
    f = _finding(report, "BWD-FP8V-004")
    assert f["status"] == "fail"
    for needle in ("Marlin", "MXFP4", "RTX PRO 6000", "FP4 tensor cores", "12.0"):
        assert needle in f["message"], needle
    assert "vllm.install-supported" in f["remedies"]


def test_same_log_on_an_h100_is_expected_weight_only_behaviour():
    report = _analyze(LOG, DATA / "evidence" / "h100-nvidia-smi.txt")
    f = _finding(report, "BWD-FP8V-004")
    assert f["status"] == "warn" and f["root_cause"] == "none_env_ok"
    assert "expected" in f["message"] and "H100" in f["message"]
    assert not any(d["root_cause"] == "fp4_kernel_arch_mismatch" for d in report["diagnosis"])


def test_fallback_with_no_gpu_in_the_evidence_says_what_is_missing():
    report = _analyze(LOG)
    f = _finding(report, "BWD-FP8V-004")
    assert f["status"] == "warn" and "nvidia-smi" in f["message"]


def test_native_fp4_backend_passes():
    text = LOG.read_text().replace("Using Marlin backend", "Using FlashInfer MXFP4 MXFP8 CUTLASS backend")
    text = "\n".join(ln for ln in text.splitlines() if "marlin_utils_fp4" not in ln)
    from bwdoctor.types import Snapshot
    from bwdoctor_checks.checks import fp8v
    from bwdoctor_checks.parsers import log as parse_log
    snap = Snapshot()
    for fact in parse_log.parse_text(text):
        snap.add(fact)
    assert fp8v.check_fp4_log(snap).status == "pass"


def test_fp4_backend_lines_of_several_log_formats():
    from bwdoctor_checks.parsers import log as parse_log

    lines = [
        ("INFO 01-01 00:00:00 [mxfp4.py:150] Using Marlin backend", "Marlin"),
        ("INFO 01-01 00:00:00 [modelopt.py:900] Using FlashInfer kernels for ModelOptNvFp4FusedMoE.", "FlashInfer"),
        ("INFO 01-01 00:00:00 [nvfp4_utils.py:60] Using NvFp4LinearBackend.FLASHINFER_CUTLASS for NVFP4 GEMM",
         "NvFp4LinearBackend.FLASHINFER_CUTLASS"),
        ("INFO 01-01 00:00:00 [fp4_moe.py:30] NVFP4 MoE backend: 'CUTLASS'", "CUTLASS"),
    ]
    for text, backend in lines:
        facts = {f.key: f.value for f in parse_log.parse_text(text)}
        assert facts["log.fp4"][0]["backend"] == backend, text


def test_a_one_line_report_of_the_fallback_is_read_as_evidence(tmp_path):
    note = tmp_path / "report.txt"
    note.write_text("NVFP4 checkpoints keep falling back to the Marlin kernel on our cards\n")
    report = _analyze(note, DATA / "fp4" / "rtxpro6000-nvidia-smi.txt")
    assert report["diagnosis"][0]["root_cause"] == "fp4_kernel_arch_mismatch"
