"""Secret redaction, applied to every report before any reporter renders it.

Three kinds of secrets are removed: values of variables whose names look secret
(``HF_TOKEN``, ``AWS_SECRET_ACCESS_KEY``, ``DB_PASSWORD``), token-shaped strings anywhere in text
(Hugging Face ``hf_...``, OpenAI ``sk-...``, AWS ``AKIA...``, GitHub ``ghp_...``, Slack, JWTs, bearer
tokens) and passwords in URLs (``https://user:pass@host`` → ``https://user:***@host``).
"""

from __future__ import annotations

import re
from typing import Any

from bwdoctor.lazy import lazy_regex

REDACTED = "***REDACTED***"

# A secret-looking word as a whole part of the name (parts split on _ - . or case): HF_TOKEN, apiKey,
# DB_PASSWORD, aws_secret_access_key. Counts and settings that merely mention tokens are not secrets.
_SECRET_NAME = lazy_regex(
    r"(?i)(?:^|[_\-.])(?:token|secret|passw(?:or)?d|passwd|pwd|api[_\-]?key|apikey|access[_\-]?key|private[_\-]?key|"
    r"credentials?|auth|authorization|session[_\-]?key|cookie|client[_\-]?secret)(?:$|[_\-.])"
)
_NOT_SECRET_NAME = lazy_regex(r"(?i)(?:token[_\-]?(?:s|count|len|length|ids?|budget|limit|per[_\-].*|type|izer.*)|"
                              r"(?:max|num|total|prompt|completion|generated|batched)[_\-]?tokens?)(?:$|[_\-.])")

_TOKEN_PATTERNS = [
    lazy_regex(r"\bhf_[A-Za-z0-9]{20,}\b"),
    lazy_regex(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{16,}\b"),
    lazy_regex(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    lazy_regex(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    lazy_regex(r"\bgithub_pat_[A-Za-z0-9_]{30,}\b"),
    lazy_regex(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),
    lazy_regex(r"\bglpat-[A-Za-z0-9_\-]{20,}\b"),
    lazy_regex(r"\bnvapi-[A-Za-z0-9_\-]{20,}\b"),
    lazy_regex(r"\beyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\b"),
]
_BEARER = lazy_regex(r"(?i)\b(bearer|token)(\s+|=|:\s*)([A-Za-z0-9_\-\.=/+]{16,})")
_URL_PASSWORD = lazy_regex(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]+):([^@/\s]+)@")
# NAME=value / NAME: value / "NAME": "value" pairs inside free text (logs, compose files, env dumps)
_ASSIGN = lazy_regex(r"""(?P<name>\b[A-Za-z_][A-Za-z0-9_\-]*)(?P<sep>["']?\s*[=:]\s*["']?)(?P<value>[^\s"',;]+)""")
_AWS_SECRET = lazy_regex(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])")


def is_secret_name(name: str) -> bool:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)  # apiKey -> api_Key
    return bool(_SECRET_NAME.search(snake)) and not _NOT_SECRET_NAME.search(snake)


def redact_text(text: str) -> str:
    """Remove token-shaped strings, URL passwords and secret-named assignments from text."""
    if not text:
        return text
    out = text
    for pat in _TOKEN_PATTERNS:
        out = pat.sub(REDACTED, out)
    out = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{REDACTED}@", out)
    out = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", out)

    def assign(m: re.Match[str]) -> str:
        if is_secret_name(m.group("name")) and m.group("value") != REDACTED:
            return f"{m.group('name')}{m.group('sep')}{REDACTED}"
        return m.group(0)

    out = _ASSIGN.sub(assign, out)
    if "AWS" in text.upper() or "SECRET" in text.upper():
        out = _AWS_SECRET.sub(lambda m: REDACTED if re.search(r"[a-z]", m.group(0)) and re.search(r"[A-Z0-9]", m.group(0)) else m.group(0), out)
    return out


def redact(value: Any, key: str | None = None) -> Any:
    """Redact a JSON-like structure: secret-named keys lose their values, strings are scrubbed."""
    if isinstance(value, dict):
        label = value.get("name", value.get("key"))
        if isinstance(label, str) and is_secret_name(label) and isinstance(value.get("value"), str):
            value = {**value, "value": REDACTED}
        out: dict[str, Any] = {}
        for k, v in value.items():
            if isinstance(k, str) and is_secret_name(k) and isinstance(v, str) and v != "":
                out[k] = REDACTED
            else:
                out[k] = redact(v, k)
        return out
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_report_dict(data: dict[str, Any]) -> dict[str, Any]:
    """Redact a whole report dict (facts, findings, plans, options, inputs)."""
    return redact(data)  # type: ignore[no-any-return]
