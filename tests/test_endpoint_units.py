"""Endpoint smoke against local stand-in servers: streaming, non-streaming, wrong model, HTTP
errors, a closed port; plus Prometheus and SSE parsing."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bwdoctor import Fact, RunOptions, Snapshot
from bwdoctor_checks.checks import ep as endpoint_checks
from bwdoctor_checks.collectors import endpoint as endpoint_collectors

METRICS = """# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="tiny"} 0.25
vllm:num_requests_running{engine="0",model_name="tiny"} 1.0
vllm:num_requests_waiting{engine="0",model_name="tiny"} 0.0
vllm:prompt_tokens_total{engine="0",model_name="tiny"} 120.0
vllm:generation_tokens_total{engine="0",model_name="tiny"} 4096.0
python_gc_objects_collected_total{generation="0"} 123.0
bad line without value
vllm:num_preemptions_total{engine="0"} NaN
"""


def test_parse_prometheus_sums_labels_and_ignores_junk():
    samples = endpoint_collectors.parse_prometheus(METRICS + 'vllm:num_requests_running{engine="1"} 2\n')
    assert samples["vllm:num_requests_running"] == 3.0
    assert "vllm:num_preemptions_total" not in samples
    m = endpoint_collectors.vllm_metrics(samples)
    assert m == {"kv_cache_usage": 0.25, "requests_running": 3, "requests_waiting": 0, "prompt_token_count": 120,
                 "generation_token_count": 4096}


def test_older_metric_name():
    assert endpoint_collectors.vllm_metrics(endpoint_collectors.parse_prometheus("vllm:gpu_cache_usage_perc 0.97\n")) == {
        "kv_cache_usage": 0.97}


def test_iter_sse():
    lines = [b"data: {\"a\": 1}", b"", b": comment", "data: not json", b"data: [DONE]", b"data: {\"b\": 2}"]
    assert list(endpoint_collectors.iter_sse(iter(lines))) == [{"a": 1}, "not json"]


@pytest.mark.parametrize("url,clean", [
    ("http://user:secret@host:8000/v1/", "http://host:8000"),
    ("localhost:8000", "http://localhost:8000"),
    ("https://api.example.com/prefix/v1?key=abc", "https://api.example.com/prefix"),
])
def test_clean_url_drops_credentials(url, clean):
    assert endpoint_collectors.clean_url(url) == clean


# ------------------------------------------------------------------ stand-in servers


class _Handler(BaseHTTPRequestHandler):
    mode = "stream"

    def log_message(self, *a):
        return None  # keep the test output quiet

    def _json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            if self.mode == "health500":
                self._json(500, {"error": "engine dead"})
                return
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()
        elif self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": "tiny", "object": "model"}]})
        elif self.path == "/metrics":
            body = (METRICS if self.mode != "busy" else "vllm:kv_cache_usage_perc 0.95\nvllm:num_requests_waiting 3\n")
            data = body.encode()
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        req = json.loads(self.rfile.read(length) or b"{}")
        if req.get("model") != "tiny":
            self._json(404, {"error": f"The model `{req.get('model')}` does not exist."})
            return
        if self.mode == "post500":
            self._json(500, {"error": "internal"})
            return
        n = int(req.get("max_tokens") or 4)
        if self.mode == "nostream":
            self._json(200, {"choices": [{"text": "x" * n}], "usage": {"completion_tokens": n}})
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for i in range(n):
            time.sleep(0.002)
            self.wfile.write(f"data: {json.dumps({'choices': [{'index': 0, 'text': f't{i} '}]})}\n\n".encode())
            self.wfile.flush()
        usage = {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": n}}
        self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        self.wfile.flush()


@pytest.fixture
def server():
    servers = []

    def start(mode):
        handler = type("H", (_Handler,), {"mode": mode})
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _run(url, model=None, **extra):
    facts = endpoint_collectors.collect_endpoint(RunOptions(endpoint=url, model=model, extra=extra))
    snap = Snapshot(facts)
    results = {}
    for spec in endpoint_checks.bwdoctor_checks():
        if all(snap.has(k) for k in spec.needs) and (not spec.needs_any or any(snap.has(k) for k in spec.needs_any)):
            results[spec.id] = spec.func(snap)
    return snap, results


def test_streaming_server(server):
    snap, res = _run(server("stream"), model="tiny")
    comp = snap.value("smoke.endpoint.completion")
    assert comp["streamed"] and comp["generated_token_count"] == 32 and comp["count_source"] == "usage"
    assert comp["ttft_s"] > 0 and comp["decode_tps"] > 0 and comp["text"].startswith("t0 t1")
    assert [res[k].status for k in ("BWD-EP-001", "BWD-EP-002", "BWD-EP-003", "BWD-EP-004")] == ["pass"] * 4
    assert "KV cache 25% used" in res["BWD-EP-004"].message
    assert not snap.has("smoke.endpoint.error")


def test_wrong_model(server):
    snap, res = _run(server("stream"), model="meta-llama/Llama-3.1-8B")
    assert res["BWD-EP-002"].status == "fail" and "serves tiny, not meta-llama/Llama-3.1-8B" in res["BWD-EP-002"].message
    assert snap.value("smoke.endpoint.error")["kind"] == "wrong_model"
    assert res["BWD-EP-001"].status == "pass"
    assert res["BWD-EP-003"].status == "pass"  # the served model still streams


def test_non_streaming_server(server):
    snap, res = _run(server("nostream"))
    assert res["BWD-EP-003"].status == "warn" and "no streaming" in res["BWD-EP-003"].message
    assert snap.value("smoke.endpoint.error")["kind"] == "not_streaming"


def test_http_error_on_completion(server):
    snap, res = _run(server("post500"))
    assert res["BWD-EP-003"].status == "fail" and "HTTP 500" in res["BWD-EP-003"].message


def test_unhealthy_server_fails(server):
    snap, res = _run(server("health500"))
    assert res["BWD-EP-001"].status == "fail" and "500" in res["BWD-EP-001"].message
    # the later steps say why they have nothing (not "no facts were collected")
    assert snap.why_missing("smoke.endpoint.completion") == "not tried: the server failed the health step first"


def test_saturated_server_warns(server):
    _, res = _run(server("busy"))
    assert res["BWD-EP-004"].status == "warn" and "3 waiting" in res["BWD-EP-004"].message


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_closed_port_fails_fast():
    url = f"http://127.0.0.1:{_closed_port()}"
    start = time.perf_counter()
    snap, res = _run(url)
    assert time.perf_counter() - start < 5
    err = snap.value("smoke.endpoint.error")
    assert err["kind"] == "connection_refused" and err["stage"] == "health"
    out = res["BWD-EP-001"]
    assert out.status == "fail" and "connection refused" in out.message and "nothing listens" in out.message
    assert "BWD-EP-003" not in res
    assert err["message"].endswith("Connection refused")  # the errno text alone, no quote of the wrapper


def test_unresponsive_server_times_out():
    # A socket that accepts connections and never answers.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        url = f"http://127.0.0.1:{srv.getsockname()[1]}"
        start = time.perf_counter()
        snap, res = _run(url, endpoint_timeout=1.0)
        assert time.perf_counter() - start < 8
        assert snap.value("smoke.endpoint.error")["kind"] == "timeout"
        assert res["BWD-EP-001"].status == "fail"
    finally:
        srv.close()


def test_api_key_is_sent_but_never_recorded(server, monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "sk-secret-123")
    snap, _ = _run(server("stream"))
    assert "sk-secret-123" not in json.dumps(snap.to_dict())


def test_collector_is_enabled_only_with_an_endpoint():
    spec = endpoint_collectors.bwdoctor_collectors()[0]
    assert spec.enabled(RunOptions(endpoint="http://x")) and not spec.enabled(RunOptions())
    assert Fact  # the public API is all this module needs
