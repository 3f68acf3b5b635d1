"""A fix that would carry a secret into the script becomes advice, and the script stays valid."""

import json
import subprocess
import sys

from conftest import ROOT

SECRET = "sk-proj-Zq9Xw8Vu7Ts6Rq5Po4Nm3Lk2"
COMPOSE = f"""services:
  vllm:
    image: vllm/vllm-openai:v0.10.1
    environment:
      - VLLM_ENABLE_FP8=true
      - OPENAI_API_KEY={SECRET}
    command: --model org/model --api-key {SECRET}
"""


def test_fix_script_never_carries_a_secret_and_still_applies(tmp_path):
    (tmp_path / "docker-compose.yml").write_text(COMPOSE)
    script = tmp_path / "fix.sh"
    proc = subprocess.run([sys.executable, "-m", "bwdoctor.cli", "fix", str(tmp_path), "--target", "rtx-pro-6000",
                           "--output", str(script)], capture_output=True, text=True, cwd=str(ROOT), timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = script.read_text()
    assert SECRET not in text
    patches = text.split("<<'BWDOCTOR_PATCH")[1:]
    assert all("REDACTED" not in p for p in patches)  # no patch was built from redacted lines
    assert "edit the file by hand" in text
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    run = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=str(tmp_path), timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    report = subprocess.run([sys.executable, "-m", "bwdoctor.cli", "analyze", str(tmp_path), "--format", "json"],
                            capture_output=True, text=True, cwd=str(ROOT), timeout=120).stdout
    assert SECRET not in report
    json.loads(report)
