"""Checks of a running vLLM server's answers (BWD-EP): health, models, a streamed completion, metrics."""

from __future__ import annotations

from typing import Any

from bwdoctor import (
    CheckResult,
    CheckSpec,
    Snapshot,
    failed,
    hookimpl,
    passed,
    skipped,
    warned,
)

# ------------------------------------------------------------------------------ checks


_WHY = {
    "connection_refused": "nothing listens there (the server is not running, is still starting, or listens on "
                          "another port or address: vLLM binds --host/--port)",
    "timeout": "it did not answer in time (overloaded, hung, or a firewall drops packets)",
    "dns": "the host name does not resolve",
    "connection_error": "the connection failed",
    "unauthorized": "the server was started with --api-key: set VLLM_API_KEY",
}


def _err(snap: Snapshot) -> dict[str, Any]:
    value = snap.value("smoke.endpoint.error")
    return value if isinstance(value, dict) else {}


def _check_health(snap: Snapshot) -> CheckResult:
    err = _err(snap)
    health = snap.mapping("smoke.endpoint.health")
    ev = ["smoke.endpoint.health", "smoke.endpoint.error"]
    if err.get("stage") == "health":
        return failed(f"{err.get('url')}: {err.get('kind', '').replace('_', ' ')} — "
                      f"{_WHY.get(err.get('kind', ''), '')} ({err.get('message')})", evidence=ev)
    if health.get("ok"):
        return passed(f"{health.get('url')}/health answered 200 in {health.get('seconds')} s", evidence=ev)
    return warned(f"{health.get('url')}/health answered HTTP {health.get('status')} (vLLM answers 200 once "
                  f"the engine is up)", evidence=ev)


def _check_models(snap: Snapshot) -> CheckResult:
    models = snap.mapping("smoke.endpoint.models")
    served = models.get("served") or []
    ev = ["smoke.endpoint.models"]
    if models.get("requested") is None:
        return passed(f"the server serves {', '.join(served) or 'nothing'}", evidence=ev)
    if models.get("ok"):
        return passed(f"the server serves {models['requested']}", evidence=ev)
    return failed(f"the server serves {', '.join(served) or 'no model'}, not {models['requested']}: requests for "
                  f"{models['requested']} get HTTP 404 (vLLM serves one model, named by --served-model-name or "
                  f"the model path)", evidence=ev)


def _check_completion(snap: Snapshot) -> CheckResult:
    comp = snap.mapping("smoke.endpoint.completion")
    err = _err(snap)
    ev = ["smoke.endpoint.completion"]
    if comp.get("error") or (err.get("stage") == "completion" and err.get("kind") != "not_streaming"):
        return failed(f"the streamed completion on {comp.get('model')} failed: {comp.get('error') or err.get('message')}",
                      evidence=ev + ["smoke.endpoint.error"])
    tokens = comp.get("generated_token_count") or 0
    if tokens <= 0:
        return failed(f"the completion on {comp.get('model')} returned no tokens", evidence=ev)
    if not comp.get("streamed"):
        return warned(f"the server answered stream=true with one {comp.get('content_type') or 'non-stream'} response "
                      f"({tokens} tokens in {comp.get('seconds')} s): no streaming, so time to first token is the "
                      f"whole request", evidence=ev)
    tps = comp.get("decode_tps")
    return passed(f"streamed {tokens} tokens from {comp.get('model')}: first token after {comp.get('ttft_s')} s"
                  + (f", {tps:g} tokens/s" if isinstance(tps, (int, float)) else ""), evidence=ev)


def _check_load(snap: Snapshot) -> CheckResult:
    m = snap.mapping("smoke.endpoint.metrics")
    ev = ["smoke.endpoint.metrics"]
    usage, waiting, running = m.get("kv_cache_usage"), m.get("requests_waiting"), m.get("requests_running")
    if usage is None and waiting is None:
        return skipped("the server's /metrics has no vLLM KV-cache or queue metrics")
    parts = []
    if usage is not None:
        parts.append(f"KV cache {100 * usage:.0f}% used")
    if running is not None:
        parts.append(f"{running:g} running")
    if waiting is not None:
        parts.append(f"{waiting:g} waiting")
    text = ", ".join(parts)
    if (usage is not None and usage >= KV_WARN) or (waiting or 0) > 0:
        return warned(f"the server is saturated: {text} — requests queue and may be preempted", evidence=ev)
    return passed(text, evidence=ev)


@hookimpl
def bwdoctor_checks() -> list[CheckSpec]:
    return [
        CheckSpec(id="BWD-EP-001", title="The vLLM server answers", func=_check_health,
                  needs_any=["smoke.endpoint.health", "smoke.endpoint.error"], tags=["endpoint", "smoke"],
                  doc="GET <endpoint>/health with a 3 s connect timeout. Fails when the connection is refused "
                      "(nothing listens: server down, still loading, other port/host), times out, the name does "
                      "not resolve, or the server wants an API key; warns on a non-200 answer. No automatic "
                      "remedy: starting or reconfiguring the server is the operator's call."),
        CheckSpec(id="BWD-EP-002", title="The requested model is served", func=_check_models,
                  needs=["smoke.endpoint.models"], tags=["endpoint", "smoke"],
                  doc="GET /v1/models and compare with --model. A vLLM server serves the names given by "
                      "--served-model-name (default: the model path); any other name gets HTTP 404. No automatic "
                      "remedy: use a served name or restart the server with the wanted model."),
        CheckSpec(id="BWD-EP-003", title="A streamed completion returns tokens", func=_check_completion,
                  needs=["smoke.endpoint.completion"], tags=["endpoint", "smoke", "performance"],
                  doc="POST /v1/completions with stream=true, greedy, ignore_eos, and measure the time to the "
                      "first streamed token and the decode rate ((tokens - 1) / time from first to last token; "
                      "token count from the final usage chunk). Fails on an HTTP error or no tokens; warns when "
                      "the server answers a single non-streamed response. No automatic remedy: the answer's "
                      "text says what the server rejected."),
        CheckSpec(id="BWD-EP-004", title="The server has KV-cache and queue headroom", func=_check_load,
                  needs=["smoke.endpoint.metrics"], tags=["endpoint", "performance"], can_fail=False,
                  root_cause="kv_cache_oom", remedies=["vllm.memory-settings"],
                  doc="Reads vLLM's Prometheus /metrics: vllm:kv_cache_usage_perc (older: gpu_cache_usage_perc), "
                      "vllm:num_requests_running and vllm:num_requests_waiting. Warns when the KV cache is 90% or "
                      "more used or requests wait in the queue: the server is at capacity (more memory for the KV "
                      "cache, a shorter max_model_len, or more replicas)."),
    ]


KV_WARN = 0.9
