"""A corpus of planted secrets (every written form redaction must handle) and of harmless
look-alikes that must survive. Each secret carries a unique marker; a report leaks a secret when
its marker appears in it."""

from __future__ import annotations

import base64
from pathlib import Path


def marker(n: int) -> str:
    return f"Qz{n:02d}Vw"


def upper_marker(n: int) -> str:
    return f"QZ{n:02d}VW"


class Corpus:
    def __init__(self) -> None:
        self.markers: dict[str, str] = {}  # marker -> where it was planted
        self.n = 0

    def m(self, where: str) -> str:
        self.n += 1
        mk = marker(self.n)
        self.markers[mk] = where
        return mk

    def M(self, where: str) -> str:
        self.n += 1
        mk = upper_marker(self.n)
        self.markers[mk] = where
        return mk

    def numeric(self, where: str) -> str:
        self.n += 1
        mk = f"97{self.n:02d}5310"
        self.markers[mk] = where
        return mk

    def leaks(self, text: str) -> list[str]:
        return [f"{mk} ({where})" for mk, where in self.markers.items() if mk in text]


HARMLESS = [
    "encoder_cudagraph_token_budgets",
    "max_num_batched_tokens",
    "kv_cache_token_count",
    "3f786850e387550fdab836ed7e6dc881de23001b",
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "123e4567-e89b-12d3-a456-426614174000",
    "meta-llama/Llama-3.1-8B-Instruct",
    "nvidia/Llama-3.3-70B-Instruct-FP8",
]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def plant_files(folder: Path, c: Corpus) -> None:
    """A .env, a compose file, a Dockerfile and a vLLM log, each full of secrets."""
    pem_line = f"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSj{c.m('.env PEM body')}AgEAAoIBAQC7VJTUt9Us8cKj"
    env = f"""\
# serving settings
HF_TOKEN=hf_{c.m('.env HF_TOKEN')}abcdefghijklmnopqrstu
OPENAI_API_KEY=sk-proj-{c.m('.env sk-proj')}abcdefghijklmnop
PGPASSWORD={c.m('.env PGPASSWORD')}pgpw
DB_PASS={c.m('.env DB_PASS')}dbpass
REDIS_PASS={c.m('.env REDIS_PASS')}redis
HF_HUB_PASS={c.m('.env HF_HUB_PASS')}hub
AZURE_OPENAI_KEY={c.m('.env AZURE_OPENAI_KEY')}azure0123456789
VLLM_EXTRA_ARGS="--max-model-len 8192 --api-key {c.m('.env VLLM_EXTRA_ARGS --api-key')}extra"
REDIS_URL=redis://:{c.m('.env redis empty user')}rpw@redis:6379/0
DATABASE_URL=postgresql://app:{c.m('.env URL password')}pgurl@db:5432/app
CALLBACK_URL=https://hooks.example.com/cb?a=1&password={c.m('.env second name=value')}qs
PAYMENT_PROVIDER=sk_live_{c.m('.env sk_live')}abcdefghijklmnop12
TLS_KEY_PEM="-----BEGIN PRIVATE KEY-----
{pem_line}
VBu3ahVoHcNnHl3qCWWcRFj1Z0VxLkZXc9+9jVJ0b2bPq6jZbxrnwRmzhIsAdtSXxdXl6wgkJQdH3V3cQ==
-----END PRIVATE KEY-----"
AWS_ACCESS_KEY_ID=AKIA{c.M('.env AKIA')}12345678AB
AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPx{c.m('.env AWS secret')}EXAMPL1
GH_PAT=ghp_{c.m('.env ghp')}abcdefghijklmnopqrstuvwxyz0123
NGC_API_KEY=nvapi-{c.m('.env nvapi')}abcdefghijklmnopqrstuv
MY_JWT=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ{c.m('.env JWT')}xMjM0NTY3ODkw.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV
JSON_SETTINGS='{{"api_key": ["{c.m('.env list form')}list"], "tokens": 3}}'
MYSQL_ROOT_PASSWORD="{c.m('.env quoted with spaces')} with spaces"
export ANTHROPIC_API_KEY=sk-ant-api03-{c.m('.env sk-ant')}abcdefghijklmnop
VLLM_MAX_NUM_BATCHED_TOKENS=8192
MODEL=meta-llama/Llama-3.1-8B-Instruct
MODEL_REVISION=3f786850e387550fdab836ed7e6dc881de23001b
RUN_ID=123e4567-e89b-12d3-a456-426614174000
"""
    (folder / ".env").write_text(env)
    basic = _b64(f"admin:{c.m('compose healthcheck Basic')}")
    c.markers[basic] = "compose healthcheck Basic (base64)"
    compose = f"""\
services:
  vllm:
    image: vllm/vllm-openai:v0.11.0
    command: ["--model", "nvidia/Llama-3.3-70B-Instruct-FP8", "--api-key", "{c.m('compose argv --api-key')}cmd",
              "--max-num-batched-tokens", "8192"]
    environment:
      HF_TOKEN: "hf_{c.m('compose HF_TOKEN')}abcdefghijklmnopqrstu"
      VLLM_API_KEY: "{c.m('compose VLLM_API_KEY')}vk"
      REDIS_PASS: {c.numeric('compose numeric REDIS_PASS')}
      VLLM_EXTRA_ARGS: >
        --api-key {c.m('compose block scalar --api-key')}block
        --port 8000
      OTEL_EXPORTER_OTLP_HEADERS: "authorization=Basic {_b64('x:' + c.m('compose OTLP header'))}"
      PIP_INDEX_URL: https://user:{c.m('compose pip URL')}pip@pypi.example.com/simple
      EXTRA_HEADERS: "X-API-Key: {c.m('compose X-API-Key')}xapi"
      DB_PASS: "{c.m('compose DB_PASS')}"
    healthcheck:
      test: ["CMD", "curl", "-H", "Authorization: Basic {basic}", "http://localhost:8000/health"]
"""
    (folder / "docker-compose.yml").write_text(compose)
    docker = f"""\
FROM vllm/vllm-openai:v0.11.0
ENV HF_TOKEN=hf_{c.m('Dockerfile ENV HF_TOKEN')}abcdefghijklmnopqrstu
ARG GITHUB_TOKEN=ghp_{c.m('Dockerfile ARG ghp')}abcdefghijklmnopqrstuvwxyz0123
ENV LEGACY_SECRET {c.m('Dockerfile ENV space form')}legacy
RUN pip install --index-url https://__token__:{c.m('Dockerfile index URL')}pypi@pypi.example.com/simple flashinfer-python
CMD ["vllm", "serve", "m", "--api-key", "{c.m('Dockerfile CMD --api-key')}dock"]
"""
    (folder / "Dockerfile").write_text(docker)
    log = f"""\
INFO 12-01 10:00:00 [__init__.py:200] Automatically detected platform cuda.
INFO 12-01 10:00:01 [api_server.py:1000] vLLM API server version 0.11.0
INFO 12-01 10:00:01 [utils.py:300] non-default args: {{'model': 'nvidia/Llama-3.3-70B-Instruct-FP8', 'api_key': ['{c.m('log list form')}list2'], 'max_num_batched_tokens': 8192}}
INFO 12-01 10:00:01 [api_server.py:1001] args: Namespace(model='m', api_key='{c.m('log Namespace api_key')}ns', hf_token='hf_{c.m('log hf_token')}abcdefghijklmnopqrstu')
INFO 12-01 10:00:02 [core.py:70] Initializing a V1 LLM engine (v0.11.0) with config: model='nvidia/Llama-3.3-70B-Instruct-FP8', 'encoder_cudagraph_token_budgets': [512, 1024], max_num_batched_tokens=8192, kv_cache_token_count=123456, seed=0
DEBUG 12-01 10:00:02 [client.py:10] request headers: Authorization: Basic {_b64('svc:' + c.m('log Basic'))}
DEBUG 12-01 10:00:02 [client.py:11] request headers: Authorization: Bearer {c.m('log Bearer')}bearer0123456789
DEBUG 12-01 10:00:03 [loader.py:20] loaded key
-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVT{c.m('log PEM body')}LA
-----END RSA PRIVATE KEY-----
ERROR 12-01 10:00:04 [cache.py:30] cannot connect to redis://:{c.m('log redis empty user')}rpw2@cache:6379/1
WARNING 12-01 10:00:04 [billing.py:5] using key sk_live_{c.m('log sk_live')}abcdefghijklmnop34
INFO 12-01 10:00:05 [launcher.py:1] launching: vllm serve m --api-key {c.m('log --api-key')}launch --port 8000
INFO 12-01 10:00:05 [launcher.py:2] env: PGPASSWORD={c.m('log PGPASSWORD')} AZURE_OPENAI_KEY={c.m('log AZURE_OPENAI_KEY')}k HF_HUB_PASS={c.m('log HF_HUB_PASS')}p
INFO 12-01 10:00:05 [launcher.py:3] callback https://cb.example.com/x?user=a&password={c.m('log query password')}&x=1
INFO 12-01 10:00:05 [launcher.py:4] slack xoxb-{c.m('log slack')}-123456789012-abcdefghij
INFO 12-01 10:00:05 [launcher.py:5] github ghp_{c.m('log ghp')}abcdefghijklmnopqrstuvwxyz0123
INFO 12-01 10:00:05 [launcher.py:6] openai OPENAI_API_KEY: sk-{c.m('log sk-')}abcdefghijklmnopqrst
INFO 12-01 10:00:05 [launcher.py:7] extra args --hf-token {c.m('log --hf-token')}tok
INFO 12-01 10:00:06 [gpu_model_runner.py:100] Model loading took 64.1 GiB; revision 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 run 123e4567-e89b-12d3-a456-426614174000
ERROR 12-01 10:00:07 [core.py:500] EngineCore failed to start.
ERROR 12-01 10:00:07 [core.py:501] torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 94.97 GiB of which 1.10 GiB is free. (client https://svc:{c.m('log error line URL password')}@api.example.com/v1?a=1&api_key={c.m('log error line query key')} Authorization: Basic {_b64('u:' + c.m('log error line Basic'))} --api-key {c.m('log error line --api-key')} sk_live_{c.m('log error line sk_live')}abcdefghijklmnop56 {{'api_key': ['{c.m('log error line list form')}']}} PGPASSWORD={c.m('log error line PGPASSWORD')})
"""
    (folder / "vllm.log").write_text(log)


def plant_environment(c: Corpus) -> dict[str, str]:
    """Process-environment secrets for a live run."""
    return {
        "HF_TOKEN": f"hf_{c.m('env HF_TOKEN')}abcdefghijklmnopqrstu",
        "VLLM_EXTRA_ARGS": f"--api-key {c.m('env VLLM_EXTRA_ARGS')}x --port 8001",
        "PGPASSWORD": f"{c.m('env PGPASSWORD')}",
        "DB_PASS": f"{c.m('env DB_PASS')}",
        "REDIS_PASS": f"{c.m('env REDIS_PASS')}",
        "HF_HUB_PASS": f"{c.m('env HF_HUB_PASS')}",
        "AZURE_OPENAI_KEY": f"{c.m('env AZURE_OPENAI_KEY')}",
        "CACHE_URL": f"redis://:{c.m('env redis empty user')}@cache:6379",
        "PAYMENT_PROVIDER": f"sk_live_{c.m('env sk_live')}abcdefghijklmnop12",
        "VLLM_API_KEY": f"{c.m('env VLLM_API_KEY')}",
        "NCCL_SOCKET_IFNAME": "eth0",
    }


def smoke_report(log_text: str) -> dict:
    """A stored report of a failed smoke generation whose engine log (kept as lines) is full of
    secrets, for ``run --from``."""
    lines = log_text.splitlines()
    facts = [
        {"key": "smoke.result", "value": {"ok": False, "stage": "generate", "error": lines[-1], "vllm_version": "0.11.0"},
         "source": "smoke"},
        {"key": "smoke.log_tail", "value": lines, "source": "smoke"},
        {"key": "evidence.smoke-engine-log", "value": lines, "source": "smoke"},
    ]
    return {"schema_version": 1, "snapshot": {"schema_version": 1, "facts": facts, "missing": {}}}
