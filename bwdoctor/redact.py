"""Secret redaction, applied to every report before any reporter renders it.

What is removed:

* values of names that look secret, in every written form: ``HF_TOKEN=x``, ``"api_key": "x"``,
  ``'api_key': ['x', 'y']``, ``PASSWORD="two words"``, ``--api-key x`` / ``--api-key=x`` (also inside
  other values such as ``VLLM_EXTRA_ARGS``), a second ``name=value`` in a query string
  (``?a=1&password=x``), an argv list ``[..., "--api-key", "x"]`` and secret-named keys of
  structures (whatever the value's type);
* the credential of ``Authorization:`` headers (``Basic``/``Bearer``/any scheme; the scheme stays);
* token-shaped strings anywhere (Hugging Face, OpenAI, Anthropic, Stripe, AWS, GitHub, GitLab,
  Slack, NVIDIA, PyPI, npm, SendGrid, Google, JWTs, plus the regex detectors of ``detect-secrets``
  when it is installed);
* passwords in URLs, also with an empty user (``redis://:pw@host``);
* PEM private-key blocks (the whole block; an unterminated one to its end).

Secret names are recognised by their parts (split on ``_ - .`` and case changes): the last part is
``token``/``pass``/``pwd``/``key``/``auth``…, or a part is ``password``/``secret``/``credentials``…
not followed by a part that makes it harmless (``_file``, ``_count``, ``_budgets``). So
``PGPASSWORD``, ``DB_PASS``, ``AZURE_OPENAI_KEY`` are secret and ``max_num_batched_tokens``,
``encoder_cudagraph_token_budgets``, ``kv_cache_token_count`` are not.

``escape_controls`` makes text read from the machine safe to print: terminal control characters
(ESC, NUL, OSC sequences, C1 controls, DEL) become visible escapes.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable
from typing import Any

from bwdoctor.lazy import lazy_regex

REDACTED = "***REDACTED***"

# ----------------------------------------------------------------------------- names

_PART_SPLIT = lazy_regex(r"[_\-.\s/]+")
_CAMEL = lazy_regex(r"(?<=[a-z0-9])(?=[A-Z])")
# A part that makes the name secret wherever it stands (unless a harmless part follows it).
_STRONG = {"password", "passwd", "passphrase", "secret", "secrets", "credential", "credentials", "apikey",
           "privatekey", "accesskey", "secretkey", "authtoken", "accesstoken", "refreshtoken"}
# A part that makes the name secret when it is the last one.
_LAST = {"token", "pass", "pwd", "pw", "pat", "auth", "authorization", "cookie", "key", "sig", "signature_key"}
# Two-part compounds that are secret wherever they stand.
_PAIRS = {("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"), ("session", "key"),
          ("auth", "token"), ("access", "token"), ("refresh", "token"), ("id", "token"), ("bearer", "token"),
          ("client", "secret"), ("api", "token"), ("hub", "token"), ("account", "key"), ("master", "key"),
          ("signing", "key"), ("encryption", "key"), ("auth", "key")}
# A part after the secret word that names something else (its file, its length, a count of tokens).
_HARMLESS_AFTER = {"file", "files", "path", "paths", "dir", "name", "names", "id", "ids", "len", "length", "count",
                   "counts", "type", "types", "budget", "budgets", "limit", "limits", "size", "sizes", "per", "env",
                   "var", "url", "mode", "ttl", "expiry", "expires", "enabled", "required", "header", "format",
                   "level", "num", "rate", "ratio", "threshold", "policy", "prefix", "ref", "source", "kind"}
# Names ending in ``key`` that are not credentials.
_HARMLESS_KEY_PREFIX = {"cache", "sort", "lookup", "primary", "foreign", "partition", "group", "routing", "dict",
                        "map", "hash", "index", "kv", "prefix", "public", "idempotency", "dedup", "shard", "join",
                        "row", "column", "field", "record", "metric", "label", "hot", "short", "keyboard", "sub", "cc",
                        "kb", "gpu", "model", "arch", "cuda", "table", "fact", "finding", "check", "entry"}
# Words before a final ``token`` that make it a model's token (a rate, a special token), not a credential.
_HARMLESS_TOKEN_PREFIX = {"per", "first", "last", "next", "special", "bos", "eos", "pad", "unk", "sep", "cls", "mask",
                          "start", "end", "stop", "image", "video", "audio", "vision", "sentinel", "placeholder",
                          "dummy", "decoder", "encoder", "output", "input", "prompt", "generated", "each", "new"}
_HARMLESS_NAMES = {"tokens", "max_tokens", "num_tokens", "token_count", "author", "signature", "secretary", "monkey",
                   "turkey", "passed", "passes", "bypass", "compass", "tiktoken"}


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """Whether a variable, key, header or option name holds a secret (``HF_TOKEN``, ``apiKey``,
    ``--api-key``, ``PGPASSWORD``, ``DB_PASS``, ``AZURE_OPENAI_KEY``)."""
    name = name.strip().strip("'\"").lstrip("-$")
    if not name or len(name) > 128:
        return False
    parts = [p for p in _PART_SPLIT.split(_CAMEL.sub("_", name).lower()) if p]
    if not parts or "_".join(parts) in _HARMLESS_NAMES:
        return False
    for i, part in enumerate(parts):
        rest = parts[i + 1:]
        if rest and rest[0] in _HARMLESS_AFTER:
            continue
        pair = (part, rest[0]) if rest else None
        if pair in _PAIRS:
            after = rest[1:]
            if not after or after[0] not in _HARMLESS_AFTER:
                return True
        if part in _STRONG or ("password" in part or "passwd" in part):
            if part not in _HARMLESS_NAMES:
                return True
    last = parts[-1]
    if last == "token" and len(parts) >= 2 and parts[-2] in _HARMLESS_TOKEN_PREFIX:
        return False  # bytes_per_token, time_to_first_token, eos_token: tokens of a model, not credentials
    if last in _LAST:
        if last in ("key", "sig"):
            return len(parts) >= 2 and parts[-2] not in _HARMLESS_KEY_PREFIX
        if last in ("pass", "pw", "pat") and len(parts) < 2:
            return False
        return True
    # one-word names: HFTOKEN, GHTOKEN, OPENAIKEY, PGPASS
    return (last.endswith(("token", "secret", "apikey")) and last not in _HARMLESS_NAMES
            and not last.endswith(("detoken", "subtoken")))


# ----------------------------------------------------------------------------- token shapes

_BUILTIN_TOKENS = [
    r"\bhf_[A-Za-z0-9]{20,}",
    r"\bsk-(?:proj-|ant-(?:api\d\d-)?|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}",
    r"\b[rsp]k_(?:live|test)_[0-9A-Za-z]{8,}",
    r"\b(?:AKIA|ASIA|A3T[A-Z0-9]|ABIA|ACCA)[0-9A-Z]{16}\b",
    r"\bgh[pousr]_[A-Za-z0-9]{30,}",
    r"\bgithub_pat_[A-Za-z0-9_]{30,}",
    r"\bxox[abposre]-[A-Za-z0-9-]{10,}",
    r"\bhooks\.slack\.com/services/[A-Za-z0-9_/]+",
    r"\bgl(?:pat|dt|ft|soat|rt|cbt)-[A-Za-z0-9_\-]{20,}",
    r"\bnvapi-[A-Za-z0-9_\-]{20,}",
    r"\bpypi-[A-Za-z0-9_\-]{50,}",
    r"\bnpm_[A-Za-z0-9]{30,}",
    r"\bSG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}",
    r"\bAIza[0-9A-Za-z_\-]{35}",
    r"\bya29\.[0-9A-Za-z_\-]{20,}",
    r"\b(?:gsk|r8|dapi|pplx|fw|tgp_v1)_[A-Za-z0-9]{24,}",
    r"\bAccountKey=[A-Za-z0-9+/=]{40,}",
    r"\beyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}",
]
# detect-secrets detectors that match a token by its own shape (prefix and length), without
# reading the context; the keyword, entropy and IP detectors are left out: they would hide
# hashes, UUIDs and counts a support engineer needs.
_BOUNDED = "(?<![A-Za-z0-9])"  # a token does not start inside a word
_DS_MODULES = ("artifactory", "azure_storage_key", "discord", "github_token", "gitlab_token", "mailchimp", "npm",
               "openai", "pypi_token", "sendgrid", "slack", "square_oauth", "stripe", "twilio", "aws")


def _detect_secrets_patterns() -> list[str]:
    """The token shapes of detect-secrets' shape-only detectors (see ``_derive_detect_secrets``).

    Importing detect-secrets pulls in ``requests`` and takes longer than the rest of a report, so
    the derived patterns are kept in the user's cache folder, keyed by the detector files they came
    from (path, size and modification time): an upgraded or edited detect-secrets derives afresh. A
    cache that cannot be read or written is ignored."""
    import importlib.util
    import os

    from bwdoctor import usercache

    try:
        spec = importlib.util.find_spec("detect_secrets")
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or ()) if spec is not None else []
    if not folders:
        return []
    stamps = []
    for mod in _DS_MODULES:
        path = os.path.join(folders[0], "plugins", f"{mod}.py")
        try:
            st = os.stat(path)
        except OSError:
            stamps.append(f"{path}:absent")
            continue
        stamps.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
    name = f"detect-secrets-patterns-{usercache.key_of(*stamps)}.json"
    data = usercache.read_json(name)
    if isinstance(data, list) and all(isinstance(x, str) for x in data):
        return data
    out = _derive_detect_secrets()
    usercache.write_json(name, out)
    return out


def _derive_detect_secrets() -> list[str]:
    """The token shapes of detect-secrets' shape-only detectors, bounded so that they do not eat a
    separator. A detector module a detect-secrets release lacks, or a pattern this engine cannot
    compile, is left out; the built-in shapes stay either way."""
    import importlib

    out = []
    for mod in _DS_MODULES:
        try:
            module = importlib.import_module(f"detect_secrets.plugins.{mod}")
        except ImportError:
            continue
        for obj in vars(module).values():
            denylist = getattr(obj, "denylist", ()) if isinstance(obj, type) else ()
            # a detector class lists its patterns; the abstract base declares the attribute only
            for rx in denylist if isinstance(denylist, (list, tuple)) else ():
                pattern = getattr(rx, "pattern", None)
                if not isinstance(pattern, str) or rx.flags & re.VERBOSE or "(?<=" in pattern:
                    continue
                # detect-secrets' boundary groups (\s|=|:|"|^) would eat the separator
                pattern = re.sub(r"^\(\?:\\s\|=\|:\|\"\|\^\)|\(\?:\\s\|\"\|\$\)$", "", pattern)
                with_bounds = rf"{_BOUNDED}(?:{pattern})"
                with contextlib.suppress(re.error):
                    re.compile(with_bounds)
                    out.append(with_bounds)
    return out



@functools.lru_cache(maxsize=1)
def _token_regexes() -> tuple[re.Pattern[str], ...]:
    """The token shapes as two alternations, applied one after the other: the built-in shapes, and
    detect-secrets' shapes behind their one shared boundary. Measured on a GPU machine's report
    (12 000 strings), each alone scans in about 5 ms and the two in one alternation in about
    200 ms: a leading boundary on every alternative keeps the engine from skipping ahead."""
    shapes = _detect_secrets_patterns()
    bounded = [p[len(_BOUNDED):] for p in shapes if p.startswith(_BOUNDED)]
    other = [p for p in shapes if not p.startswith(_BOUNDED)]
    out = [re.compile("|".join(f"(?:{p})" for p in [*_BUILTIN_TOKENS, *other]))]
    if bounded:
        out.append(re.compile(_BOUNDED + "(?:" + "|".join(f"(?:{p})" for p in bounded) + ")"))
    return tuple(out)


# ----------------------------------------------------------------------------- contexts

_PEM_BLOCK = lazy_regex(r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?)-----.*?(?:-----END \1-----|\Z)", re.S)
_PEM_LINE = lazy_regex(r"^[ \t\"']*[A-Za-z0-9+/]{60,80}={0,2}[ \t\"',\\]*$", re.M)
_URL_PASSWORD = lazy_regex(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@\"'<>]*):([^@/\s\"'<>]+)@")
# a URL cut short after its password (a clipped message): "https://user:pass" at the end
_URL_CUT = lazy_regex(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@\"'<>]+):(?!\d+(?:[/\s)\"'.…]|$))([^@/\s\"'<>);,]+)(?=$|\.\.\.|…|[);,\"'\s])")
_AUTH_HEADER = lazy_regex(r"""(?i)\b((?:proxy-)?authori[sz]ation|x-api-key|api-key|x-auth-token|cookie)(["']?\s*[:=]\s*["']?)"""
                          r"""(?:(basic|bearer|token|digest|negotiate|ntlm|apikey|aws4-hmac-sha256|key)\s+)?([^\s"',;]+)""")
_SCHEME_CRED = lazy_regex(r"(?i)\b(basic|bearer|token)(\s+)([A-Za-z0-9_\-.=/+:~]{12,})")
_FLAG = lazy_regex(r"""(?P<flag>(?<![\w\-])--?[A-Za-z][A-Za-z0-9_\-.]*)(?P<sep>[ \t]+|=)(?P<q>\\?["']?)""")
_ASSIGN = lazy_regex(r"""(?P<name>(?<![\w\-.$])[A-Za-z_][A-Za-z0-9_\-.]*)(?P<q1>\\?["']?)(?P<sep>[ \t]*(?:=|:(?!//))[ \t]*)""")
_ENV_SPACE = lazy_regex(r"(?im)^(?P<lead>[ \t]*ENV[ \t]+)(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<sep>[ \t]+)(?=[^=\s])")
_SPACE = lazy_regex(r"\s")
_SCHEMES = {"basic", "bearer", "token", "digest", "negotiate", "ntlm", "apikey", "key"}
_AWS_SECRET = lazy_regex(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_REFERENCE = lazy_regex(r"^(?:\$\{?[A-Za-z_][A-Za-z0-9_]*(?::?[-=?][^}]*)?\}?|\$\([^)]*\)|null|None|none|true|false|"
                        r"True|False|~|\*+|<[^<>]*>|\[\]|\{\})$")
_UNQUOTED = lazy_regex(r"[^\s\"',;&\]\}\)]+(?:&(?![A-Za-z_][\w\-.]*=)[^\s\"',;&\]\}\)]*)*")


def _value_end(text: str, pos: int, quote: str) -> int:
    """End of a value starting at ``pos`` (after an optional opening ``quote``)."""
    n = len(text)
    if quote:
        q = quote[-1]
        i = pos
        while i < n:
            c = text[i]
            if c == "\\" and i + 1 < n:
                if text[i + 1] == q and quote.startswith("\\"):
                    return i  # an escaped quote closes a value quoted by an escaped quote
                i += 2
                continue
            if c == q:
                return i
            i += 1
        return n
    if pos < n and text[pos] in "[({":
        close = {"[": "]", "(": ")", "{": "}"}[text[pos]]
        j = text.find(close, pos)
        return n if j < 0 else j + 1
    if pos < n and text[pos] in "'\"":
        return _value_end(text, pos + 1, text[pos]) + 1
    m = _UNQUOTED.match(text, pos)
    return m.end() if m else pos


def _redact_list_value(value: str) -> str:
    """``['a', "b"]`` → ``['***REDACTED***', '***REDACTED***']`` (the brackets stay)."""
    inner = value[1:-1] if value.endswith(("]", ")", "}")) else value[1:]
    items = [s for s in re.split(r"\s*,\s*", inner.strip()) if s]
    if not items:
        return value
    quoted = [f"{it[0]}{REDACTED}{it[0]}" if it[:1] in "'\"" else REDACTED for it in items]
    return value[0] + ", ".join(quoted) + (value[-1] if value.endswith(("]", ")", "}")) else "")


def _sub_values(text: str, rx: Any, name_of: Callable[[re.Match[str]], str],
                quote_of: Callable[[re.Match[str]], str]) -> str:
    """Replace the value after each match of ``rx`` whose name is secret."""
    out: list[str] = []
    last = 0
    pos = 0
    while True:
        m = rx.search(text, pos)
        if m is None:
            break
        pos = m.end()
        if not is_secret_name(name_of(m)):
            pos = max(pos, m.start() + 1)
            continue
        quote = quote_of(m)
        start = m.end()
        if quote and text.startswith(quote, start):
            start += len(quote)
        end = _value_end(text, start, quote)
        value = text[start:end]
        if not value or value.startswith(REDACTED) or _REFERENCE.match(value) or (
                not quote and value.startswith("-") and rx is _FLAG) or (
                value.lower() in _SCHEMES and text.startswith(" " + REDACTED, end)):
            continue
        if not quote and value[:1] in "[({":
            replacement = _redact_list_value(value)
        elif not quote and value[:1] in "'\"":
            replacement = value[0] + REDACTED + (value[-1] if len(value) > 1 and value[-1] == value[0] else "")
        else:
            replacement = REDACTED
        out.append(text[last:start])
        out.append(replacement)
        last = end
        pos = max(end, m.end())
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


# No token shape matches fewer characters than this (a test holds every shape to it), and every
# other rule needs white space, "=" or ":" (a flag's value, an assignment, a header, a URL), so a
# shorter text without them is returned as it is: most strings of a report are versions and names.
SHORTEST_TOKEN = 8
_NEEDS_FULL_SCAN = frozenset(" \t\n\r\f\v=:")


def redact_text(text: str) -> str:
    """Remove secrets from free text (a log, a config file, a command line, a message)."""
    if not text or not isinstance(text, str):
        return text
    if len(text) < SHORTEST_TOKEN and _NEEDS_FULL_SCAN.isdisjoint(text):
        return text
    out = text
    if "PRIVATE KEY" in out:
        out = _PEM_BLOCK.sub(lambda m: f"-----BEGIN {m.group(1)}-----{REDACTED}-----END {m.group(1)}-----", out)
    for rx in _token_regexes():
        out = rx.sub(REDACTED, out)
    if "://" in out:
        out = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{REDACTED}@", out)
        out = _URL_CUT.sub(lambda m: m.group(0) if m.group(2).startswith(REDACTED) else f"{m.group(1)}:{REDACTED}", out)
    separated = "=" in out or ":" in out
    spaced = _SPACE.search(out) is not None
    if separated:  # a header's name and value are joined by ':' or '='
        out = _AUTH_HEADER.sub(lambda m: m.group(0) if m.group(4).startswith(REDACTED) or _REFERENCE.match(m.group(4))
                               else f"{m.group(1)}{m.group(2)}{m.group(3) + ' ' if m.group(3) else ''}{REDACTED}",
                               out)
    if spaced:  # "Bearer <credential>"
        out = _SCHEME_CRED.sub(lambda m: m.group(0) if m.group(3).startswith(REDACTED) or m.group(3).isdigit()
                               else f"{m.group(1)}{m.group(2)}{REDACTED}", out)
    if "-" in out and (spaced or "=" in out):  # a flag and its value: "--api-key x", "--api-key=x"
        out = _sub_values(out, _FLAG, lambda m: m.group("flag"), lambda m: m.group("q"))
    if "=" in out or ":" in out:
        out = _sub_values(out, _ASSIGN, lambda m: m.group("name"),
                          lambda m: _quote_after(m))
    if spaced and "ENV" in out.upper():
        out = _sub_values(out, _ENV_SPACE, lambda m: m.group("name"), lambda m: "")
    if "AWS" in text.upper() or "SECRET" in text.upper():
        out = _AWS_SECRET.sub(lambda m: REDACTED if (re.search(r"[a-z]", m.group(0)) and re.search(r"[A-Z]", m.group(0))
                                                     and re.search(r"[0-9/+]", m.group(0))) else m.group(0), out)
    if "\n" in out and ("PRIVATE" in text or "KEY" in text.upper()):
        out = _PEM_LINE.sub(lambda m: REDACTED if re.search(r"[a-z]", m.group(0)) and re.search(r"[A-Z]", m.group(0))
                            else m.group(0), out)
    return out


def _quote_after(m: re.Match[str]) -> str:
    """The quote that opens the value after ``NAME=`` / ``"name": `` (an escaped one in JSON text)."""
    s = m.string
    i = m.end()
    if s.startswith('\\"', i):
        return '\\"'
    if i < len(s) and s[i] in "'\"":
        return ""  # _value_end handles a leading quote itself
    return ""


# ----------------------------------------------------------------------------- structures

_BLOCK_BEGIN = lazy_regex(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY")
_BLOCK_END = lazy_regex(r"-----END [A-Z0-9 ]*PRIVATE KEY")


def _redact_secret_value(value: Any) -> Any:
    """The value of a secret-named key, whatever its type (a number, a list, a mapping)."""
    if value is None or isinstance(value, bool) or value == "" or value == REDACTED:
        return value
    if isinstance(value, str) and _REFERENCE.match(value.strip()):
        return value
    if isinstance(value, list):
        return [_redact_secret_value(v) for v in value]
    if isinstance(value, dict):  # a version is never the secret ({"detect-secrets": {"version": "1.5.0"}})
        return {k: v if k == "version" and isinstance(v, str) else _redact_secret_value(v) for k, v in value.items()}
    return REDACTED


_VALUE_FIELDS = {"value", "values", "kept", "other", "old", "new", "before", "after", "default", "current", "expected",
                 "found", "was", "now", "setting"}


def _redact_list(items: list[Any], key: str | None) -> list[Any]:
    out: list[Any] = []
    secret_next = False
    in_pem = False
    for item in items:
        if isinstance(item, str):
            if in_pem:
                if _BLOCK_END.search(item):
                    in_pem = False
                out.append(REDACTED)
                continue
            if secret_next and item and not item.startswith("-"):
                out.append(REDACTED)
                secret_next = False
                continue
            secret_next = False
            red = _redact_field(item)
            out.append(red)
            if _BLOCK_BEGIN.search(item) and not _BLOCK_END.search(item):
                in_pem = True
            stripped = item.strip()
            if stripped.startswith("-") and "=" not in stripped and " " not in stripped and is_secret_name(stripped):
                secret_next = True  # argv: ["--api-key", "VALUE"]
        else:
            secret_next = False
            out.append(redact(item, key))
    return out


def redact(value: Any, key: str | None = None) -> Any:
    """Redact a JSON-like structure: secret-named keys lose their values, strings are scrubbed."""
    if isinstance(value, dict):
        label = value.get("name", value.get("key"))
        if isinstance(label, str) and (is_secret_name(label) or is_secret_name(label.rsplit(".", 1)[-1])):
            # {"key": "config.env.DB_PASS", "value" | "kept" | "other" | ...: the secret}
            value = {k: (_redact_secret_value(v) if k in _VALUE_FIELDS else v) for k, v in value.items()}
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if isinstance(k, str) and k != "key" and is_secret_name(k):
                out[k] = _redact_secret_value(v)
            else:
                out[k] = redact(v, k)
        return out
    if isinstance(value, list):
        return _redact_list(value, key)
    if isinstance(value, tuple):
        return tuple(_redact_list(list(value), key))
    if isinstance(value, str):
        return _redact_field(value)
    return value


@functools.lru_cache(maxsize=8192)
def _redact_short(text: str) -> str:
    return redact_text(text)


def _redact_field(text: str) -> str:
    """redact_text for a value in a structure. A report repeats the same values many times (a
    finding's evidence quotes the facts it read): a short value is redacted once per process."""
    return _redact_short(text) if len(text) <= 4096 else redact_text(text)


def redact_report_dict(data: dict[str, Any]) -> dict[str, Any]:
    """Redact a whole report dict (facts, findings, plans, options, inputs)."""
    return redact(data)  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- control characters

_CONTROLS = lazy_regex(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """Terminal control characters (ESC, NUL, BEL, C1, DEL; an OSC 52 clipboard write starts
    with ESC) shown as ``\\x1b``-style escapes; tabs, newlines and carriage returns before a
    newline stay."""
    if not text or text.isprintable():  # (str.isprintable is false for every control character)
        return text
    if not _CONTROLS.search(text) and "\r" not in text:
        return text
    text = re.sub(r"\r(?!\n)", r"\\r", text)
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


def scrub(value: Any) -> Any:
    """Control characters escaped in every string of a JSON-like structure."""
    if isinstance(value, str):
        return escape_controls(value)
    if isinstance(value, dict):
        return {scrub(k) if isinstance(k, str) else k: scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value
