"""--endpoint at a failing server is a failure (exit 1); an API key goes only over HTTPS or to
loopback unless --endpoint-key-over-http says otherwise."""

from __future__ import annotations

import http.server
import json
import os
import threading

import pytest

from bwdoctor.types import RunOptions
from bwdoctor_checks.collectors.endpoint import _Probe, key_may_go_to

from conftest import run_cli


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 500
    seen: list[str | None] = []

    def do_GET(self):  # noqa: N802
        type(self).seen.append(self.headers.get("Authorization"))
        body = b'{"error": "engine dead"}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        """Silence the per-request access log on stderr."""


@pytest.fixture
def server():
    _Handler.seen = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BWDOCTOR_") and k not in ("VLLM_API_KEY",
                                                                                           "OPENAI_API_KEY")}
    env.update(extra)
    return env


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_failures(server, status):
    _Handler.status = status
    code, out, err = run_cli(["run", "--endpoint", server, "--select", "EP", "--format", "json"], env=_env())
    assert code == 1, out + err
    findings = {f["id"]: f for f in json.loads(out)["findings"]}
    assert findings["BWD-EP-001"]["status"] == "fail" and str(status) in findings["BWD-EP-001"]["message"]


def test_model_list_server_error_is_a_failure(server):
    _Handler.status = 200  # /health says fine, then everything else breaks

    class Broken(_Handler):
        def do_GET(self):  # noqa: N802
            if self.path == "/health":
                return super().do_GET()
            type(self).status = 502
            try:
                return super().do_GET()
            finally:
                type(self).status = 200

    import http.server as hs
    srv = hs.ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        code, out, err = run_cli(["run", "--endpoint", url, "--select", "EP", "--format", "json"], env=_env())
    finally:
        srv.shutdown()
    assert code == 1, out + err
    findings = {f["id"]: f for f in json.loads(out)["findings"]}
    assert findings["BWD-EP-002"]["status"] == "fail" and "502" in findings["BWD-EP-002"]["message"]


def test_key_sent_to_loopback(server):
    _Handler.status = 200
    run_cli(["run", "--endpoint", server, "--select", "EP"], env=_env(VLLM_API_KEY="k-loopback-123"))
    assert "Bearer k-loopback-123" in _Handler.seen


@pytest.mark.parametrize("url,allowed", [
    ("http://127.0.0.1:8000", True), ("http://localhost:8000", True), ("http://[::1]:8000", True),
    ("https://llm.example.com", True), ("http://llm.example.com:8000", False), ("http://10.0.0.5:8000", False),
    ("http://127.0.0.1.nip.io:8000", False),
])
def test_where_a_key_may_go(url, allowed, monkeypatch):
    assert key_may_go_to(url) is allowed
    monkeypatch.setenv("VLLM_API_KEY", "k-secret")
    probe = _Probe(url, RunOptions())
    assert ("Authorization" in probe.session.headers) is allowed
    assert probe.key_withheld is not allowed
    explicit = _Probe(url, RunOptions(extra={"endpoint_key_over_http": True}))
    assert explicit.session.headers["Authorization"] == "Bearer k-secret"
