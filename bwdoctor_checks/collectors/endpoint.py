"""Endpoint smoke test: ask a running OpenAI-compatible vLLM server (``--endpoint URL``) for its
health, its models, a streamed completion and its Prometheus metrics.

Every request has a connect and a read timeout and the whole probe an overall deadline, so a
closed port answers in milliseconds and a hung server costs at most the deadline. An API key is
taken from ``options.extra["api_key"]`` or ``$VLLM_API_KEY`` / ``$OPENAI_API_KEY`` and never recorded.

Facts produced (the URL is stored without credentials):

* ``smoke.endpoint.health``: ``{"url", "status": int|None, "ok": bool, "seconds"}``
* ``smoke.endpoint.models``: ``{"served": [ids], "requested": str|None, "ok": bool}``
* ``smoke.endpoint.completion``: ``{"model", "streamed": bool, "content_type", "status", "ttft_s",
  "generated_token_count", "decode_tps", "seconds", "text", "count_source": "usage"|"chunks"}``
* ``smoke.endpoint.metrics``: ``{"kv_cache_usage": 0..1, "requests_running", "requests_waiting",
  "prompt_token_count", "generation_token_count", "preemptions_total"}`` (present keys only)
* ``smoke.endpoint.error``: ``{"stage": "health|models|completion", "kind": "connection_refused|timeout|
  dns|http_error|unauthorized|wrong_model|not_streaming|bad_response|connection_error", "message", "url"}``
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bwdoctor import (
    CollectorSpec,
    Fact,
    Missing,
    RunOptions,
    hookimpl,
)

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 30.0
DEADLINE = 90.0
COMPLETION_TOKENS = 32
SOURCE = "endpoint"


# ------------------------------------------------------------------------------ helpers


def clean_url(url: str) -> str:
    """The URL without credentials, query or fragment, and without a trailing ``/v1``."""
    raw = url.strip()
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[:-3]
    return urlunsplit((parts.scheme or "http", netloc, path, "", ""))


def key_may_go_to(base: str, allow_plain_http: bool = False) -> bool:
    """Whether an API key may be sent to ``base``: over HTTPS, to this machine (loopback), or
    when the user allowed plain HTTP explicitly."""
    import ipaddress

    parts = urlsplit(base)
    if parts.scheme == "https" or allow_plain_http:
        return True
    host = (parts.hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+\S+)?$")


def parse_prometheus(text: str) -> dict[str, float]:
    """Sum each metric's samples over their labels (``name{labels} value [timestamp]`` lines)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        if math.isnan(value):
            continue
        out[m.group(1)] = out.get(m.group(1), 0.0) + value
    return out


# Metric names across vLLM versions (the V1 engine renamed gpu_cache_usage_perc to kv_cache_usage_perc).
_METRICS = {
    "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "requests_running": ("vllm:num_requests_running",),
    "requests_waiting": ("vllm:num_requests_waiting",),
    "prompt_token_count": ("vllm:prompt_tokens_total", "vllm:prompt_tokens"),
    "generation_token_count": ("vllm:generation_tokens_total", "vllm:generation_tokens"),
    "preemptions_total": ("vllm:num_preemptions_total", "vllm:num_preemptions"),
}


def vllm_metrics(samples: dict[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, names in _METRICS.items():
        for name in names:
            if name in samples:
                value = samples[name]
                out[key] = int(value) if key != "kv_cache_usage" and value.is_integer() else round(value, 4)
                break
    return out


def iter_sse(lines: Iterator[Any]) -> Iterator[dict[str, Any] | str]:
    """Decode server-sent events: yields each ``data:`` payload as JSON (or the raw text)."""
    for raw in lines:
        line = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
        line = line.strip()
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            yield json.loads(payload)
        except ValueError:
            yield payload


def _error_kind(exc: BaseException) -> str:
    import requests

    text = str(exc)
    if isinstance(exc, requests.exceptions.Timeout):
        return "timeout"
    if isinstance(exc, requests.exceptions.ConnectionError):
        if "Connection refused" in text or "Errno 111" in text or "ECONNREFUSED" in text:
            return "connection_refused"
        if "Name or service not known" in text or "getaddrinfo" in text or "nodename nor servname" in text:
            return "dns"
        return "connection_error"
    return "bad_response"


def _short(exc: BaseException) -> str:
    text = str(exc)
    m = re.search(r"\[Errno -?\d+\][^'\")\]]*", text)  # the quoted reason inside urllib3's wrapper
    return (m.group(0) if m else text)[:300]


class _Probe:
    def __init__(self, base: str, options: RunOptions) -> None:
        import requests

        self.base = base
        self.session = requests.Session()
        key = options.extra.get("api_key") or os.environ.get("VLLM_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self.key_withheld = False
        if key:
            if key_may_go_to(base, bool(options.extra.get("endpoint_key_over_http"))):
                self.session.headers["Authorization"] = f"Bearer {key}"
            else:  # a key in clear text to another machine is readable by anyone on the path
                self.key_withheld = True
        self.start = time.perf_counter()
        self.deadline = float(options.extra.get("endpoint_timeout") or DEADLINE)
        self.facts: list[Fact] = []

    def left(self) -> float:
        return max(0.5, self.deadline - (time.perf_counter() - self.start))

    def timeout(self) -> tuple[float, float]:
        return (min(CONNECT_TIMEOUT, self.left()), min(READ_TIMEOUT, self.left()))

    def _unauthorized(self) -> str:
        if self.key_withheld:
            return ("the server wants an API key (HTTP 401); the key in the environment was not sent because "
                    f"{self.base} is neither HTTPS nor this machine (use https, or --endpoint-key-over-http)")
        return "the server wants an API key (HTTP 401): set VLLM_API_KEY"

    def add(self, key: str, value: Any, path: str) -> None:
        self.facts.append(Fact(key, value, f"{SOURCE}:{path}"))

    def error(self, stage: str, kind: str, message: str, path: str) -> list[Fact]:
        self.add("smoke.endpoint.error", {"stage": stage, "kind": kind, "message": message,
                                          "url": self.base + path}, path)
        return self.facts

    def run(self, model: str | None, tokens: int) -> list[Fact]:
        import requests

        # 1. health
        t = time.perf_counter()
        try:
            r = self.session.get(self.base + "/health", timeout=self.timeout())
        except requests.RequestException as exc:
            self.add("smoke.endpoint.health", {"url": self.base, "status": None, "ok": False,
                                               "seconds": round(time.perf_counter() - t, 3)}, "/health")
            return self.error("health", _error_kind(exc), _short(exc), "/health")
        self.add("smoke.endpoint.health", {"url": self.base, "status": r.status_code, "ok": r.status_code == 200,
                                           "seconds": round(time.perf_counter() - t, 3)}, "/health")
        if r.status_code == 401:
            return self.error("health", "unauthorized", self._unauthorized(), "/health")
        if r.status_code >= 500:
            return self.error("health", "server_error", f"GET /health answered HTTP {r.status_code}: {r.text[:200]}",
                              "/health")
        # 2. models
        try:
            r = self.session.get(self.base + "/v1/models", timeout=self.timeout())
        except requests.RequestException as exc:
            return self.error("models", _error_kind(exc), _short(exc), "/v1/models")
        if r.status_code != 200:
            kind = "unauthorized" if r.status_code == 401 else "server_error" if r.status_code >= 500 else "http_error"
            message = (self._unauthorized() if kind == "unauthorized"
                       else f"GET /v1/models answered HTTP {r.status_code}: {r.text[:200]}")
            self.add("smoke.endpoint.models", {"served": [], "requested": model, "ok": False, "status": r.status_code,
                                               "error": message}, "/v1/models")
            return self.error("models", kind, message, "/v1/models")
        try:
            data = r.json()
            served = [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)]
        except (ValueError, AttributeError):
            return self.error("models", "bad_response", "GET /v1/models did not answer an OpenAI model list",
                              "/v1/models")
        ok = model is None or model in served
        self.add("smoke.endpoint.models", {"served": served, "requested": model, "ok": ok}, "/v1/models")
        if not served:
            return self.error("models", "bad_response", "the server lists no model", "/v1/models")
        use = model if ok and model else served[0]
        # 3. streamed completion
        self._completion(use, tokens)
        # 4. metrics
        with contextlib.suppress(requests.RequestException):
            r = self.session.get(self.base + "/metrics", timeout=self.timeout())
            if r.status_code == 200:
                self.add("smoke.endpoint.metrics", vllm_metrics(parse_prometheus(r.text)), "/metrics")
        if not ok:
            self.error("models", "wrong_model", f"the server serves {', '.join(served)}, not {model}", "/v1/models")
        return self.facts

    def _completion(self, model: str, tokens: int) -> None:
        import requests

        body = {"model": model, "prompt": "hello world", "max_tokens": tokens, "temperature": 0.0, "stream": True,
                "ignore_eos": True, "stream_options": {"include_usage": True}}
        path = "/v1/completions"
        out: dict[str, Any] = {"model": model, "requested_token_count": tokens}
        t0 = time.perf_counter()
        try:
            with self.session.post(self.base + path, json=body, stream=True, timeout=self.timeout()) as r:
                out["status"] = r.status_code
                out["content_type"] = r.headers.get("content-type", "").split(";")[0]
                if r.status_code != 200:
                    out["error"] = f"HTTP {r.status_code}: {r.text[:300]}"
                    self.add("smoke.endpoint.completion", out, path)
                    self.error("completion", "unauthorized" if r.status_code == 401 else "http_error",
                               f"POST {path} answered {out['error']}", path)
                    return
                if "event-stream" not in out["content_type"]:
                    data = r.json()
                    out["streamed"] = False
                    out["seconds"] = round(time.perf_counter() - t0, 4)
                    choice = (data.get("choices") or [{}])[0]
                    out["text"] = str(choice.get("text", ""))[:500]
                    out["generated_token_count"] = int((data.get("usage") or {}).get("completion_tokens") or 0)
                    out["count_source"] = "usage"
                    self.add("smoke.endpoint.completion", out, path)
                    self.error("completion", "not_streaming", f"asked for stream=true, got {out['content_type']!r}",
                               path)
                    return
                out["streamed"] = True
                first = last = None
                chunks, text, usage = 0, [], None
                for event in iter_sse(r.iter_lines()):
                    now = time.perf_counter()
                    if now - self.start > self.deadline:
                        out["error"] = f"stream still running at the {self.deadline:g} s deadline"
                        break
                    if not isinstance(event, dict):
                        continue
                    if event.get("usage"):
                        usage = event["usage"]
                    for choice in event.get("choices") or []:
                        piece = choice.get("text")
                        if piece is None:
                            piece = (choice.get("delta") or {}).get("content")
                        if piece is not None:
                            chunks += 1
                            text.append(str(piece))
                            first = first if first is not None else now
                            last = now
        except requests.RequestException as exc:
            out["error"] = _short(exc)
            self.add("smoke.endpoint.completion", out, path)
            self.error("completion", _error_kind(exc), _short(exc), path)
            return
        except ValueError as exc:
            out["error"] = f"unreadable answer: {exc}"
            self.add("smoke.endpoint.completion", out, path)
            self.error("completion", "bad_response", out["error"], path)
            return
        end = time.perf_counter()
        out["seconds"] = round(end - t0, 4)
        out["chunks"] = chunks
        out["text"] = "".join(text)[:500]
        if usage and usage.get("completion_tokens") is not None:
            out["generated_token_count"] = int(usage["completion_tokens"])
            out["count_source"] = "usage"
        else:
            out["generated_token_count"] = chunks
            out["count_source"] = "chunks"
        if first is not None:
            out["ttft_s"] = round(first - t0, 4)
            if out["generated_token_count"] > 1 and last is not None and last > first:
                out["decode_tps"] = round((out["generated_token_count"] - 1) / (last - first), 2)
        self.add("smoke.endpoint.completion", out, path)


STEPS = (("health", "smoke.endpoint.health"), ("models", "smoke.endpoint.models"),
         ("completion", "smoke.endpoint.completion"), ("metrics", "smoke.endpoint.metrics"))


def collect_endpoint(options: RunOptions) -> list[Any]:  # Fact and Missing
    base = clean_url(str(options.endpoint))
    probe = _Probe(base, options)
    tokens = int(options.extra.get("endpoint_tokens") or COMPLETION_TOKENS)
    out: list[Fact | Missing] = list(probe.run(options.model, tokens))
    error = next((f.value for f in out if isinstance(f, Fact) and f.key == "smoke.endpoint.error"), None)
    # a failed health or model-list step ends the probe: the steps after it were not tried
    if isinstance(error, dict) and error.get("stage") in ("health", "models") and error.get("kind") != "wrong_model":
        have = {f.key for f in out if isinstance(f, Fact)}
        stages = [step for step, _ in STEPS]
        for _step, key in STEPS[stages.index(str(error["stage"])) + 1:]:
            if key not in have:
                out.append(Missing(key, f"not tried: the server failed the {error['stage']} step first"))
    return out


@hookimpl
def bwdoctor_collectors() -> list[CollectorSpec]:
    return [CollectorSpec(
        name="endpoint", func=collect_endpoint, timeout=DEADLINE + 15, enabled=lambda o: bool(o.endpoint),
        provides=["smoke.endpoint.health", "smoke.endpoint.models", "smoke.endpoint.completion",
                  "smoke.endpoint.metrics", "smoke.endpoint.error"],
        doc="Asks a running OpenAI-compatible server (--endpoint) for /health, /v1/models, a streamed "
            "completion and /metrics, each with timeouts.")]


