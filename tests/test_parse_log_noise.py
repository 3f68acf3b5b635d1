"""Per-request, access-log and metrics lines are not failures, even when a user's prompt quotes one."""

from bwdoctor_checks.parsers.log import scan_lines

LOG = [
    "INFO 03-02 10:00:00 [api_server.py:1043] vLLM API server version 0.10.1",
    "INFO 03-02 10:01:00 [logger.py:43] Received request cmpl-1: prompt: 'Why does my job print "
    "RuntimeError: CUDA error: no kernel image is available for execution on the device and then "
    "No available memory for the cache blocks?', params: SamplingParams(max_tokens=64)",
    'INFO:     127.0.0.1:5000 - "POST /v1/completions HTTP/1.1" 200 OK',
    "INFO 03-02 10:01:05 [loggers.py:116] Engine 000: Avg prompt throughput: 10.0 tokens/s, GPU KV cache usage: 1.0%",
]


def test_a_prompt_quoting_an_error_is_not_an_error():
    facts = {f.key: f.value for f in scan_lines(LOG, "serve.log")}
    assert not facts.get("log.errors")


def test_a_real_error_after_request_lines_is_still_found():
    facts = {f.key: f.value for f in scan_lines(LOG + [
        "ERROR 03-02 10:02:00 [core.py:515] EngineCore failed to start.",
        "RuntimeError: CUDA error: no kernel image is available for execution on the device"], "serve.log")}
    assert [e["signature"] for e in facts["log.errors"]][0] == "no_kernel_image"
    assert all(e["line"] >= 5 for e in facts["log.errors"])
