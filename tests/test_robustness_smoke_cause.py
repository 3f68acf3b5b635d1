"""A smoke generation asked for --quantization fp8 that fails on a missing module, on a GPU with
FP8, is diagnosed by the missing module (python_dependency_broken, naming it), never as FP8."""

from __future__ import annotations

import json
import os

from conftest import run_cli


def test_missing_module_is_not_blamed_on_fp8(tmp_path):
    err = "ModuleNotFoundError: No module named 'xgrammar'"
    facts = [
        {"key": "gpu.0", "value": {"index": 0, "name": "NVIDIA H200", "compute_capability": "9.0",
                                   "pci_device_id": "0x233510DE"}, "source": "nvml"},
        {"key": "smoke.engine", "value": {"requested": {"quantization": "fp8"}, "version": "0.22.1"}, "source": "smoke"},
        {"key": "smoke.result", "value": {"ok": False, "stage": "import", "error": err, "timed_out": False,
                                          "returncode": 1, "lines": [{"line": 12, "text": err}]}, "source": "smoke"},
        {"key": "smoke.log_tail", "value": f"Traceback (most recent call last):\n{err}\n", "source": "smoke"},
    ]
    report = tmp_path / "smoke.json"
    report.write_text(json.dumps({"schema_version": 1, "snapshot": {"schema_version": 1, "facts": facts, "missing": {}}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BWDOCTOR_")}
    code, out, errout = run_cli(["run", "--from", str(report), "--select", "SMOKE", "--format", "json"], env=env)
    assert code == 1, out + errout
    data = json.loads(out)
    q = next(f for f in data["findings"] if f["id"] == "BWD-SMOKE-004")
    assert q["root_cause"] == "python_dependency_broken" and "xgrammar" in q["message"]
    causes = [d["root_cause"] for d in data.get("diagnosis", [])]
    assert "fp8_unsupported_on_gpu" not in causes
    assert causes and causes[0] == "python_dependency_broken"
