"""Remedies that edit the user's deployment files (.env, docker compose, Dockerfile) as unified
diffs: invented or unread ``VLLM_*`` variables commented out with the real flag named (and added
to a compose ``command:`` when there is one), ``ipc: host`` / ``shm_size`` for the vLLM service,
a base image and a vLLM pin with kernels for the GPU.

Remedy ids: ``config.replace-vllm-env``, ``config.serve-flags``, ``compose.ipc-host``, ``compose.shm-size``,
``dockerfile.base-image``, ``dockerfile.vllm-pin``.
Facts read: ``config.files`` (``{path: {"kind": "dotenv"|"compose"|"dockerfile", ...}}``), ``config.vllm_pin``,
``vllm``, ``vllm.config``, ``gpu.<i>``, ``target``, ``driver.version``.

These remedies read the file they patch (and nothing else): the diff is computed from its
current content. One file gets one combined correction: every remedy that touches a file
produces the same diff (all the corrections bwdoctor knows that file needs), so the first step
edits it and the later ones find it "already done". A file that cannot be read (missing, not
UTF-8, over 1 MiB) gets advice instead of a patch.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from typing import Any

from packaging.version import Version

from bwdoctor import Finding, FixPlan, FixStep, RemedySpec, Snapshot, hookimpl, resolve

from . import _common as c

FALSE_WORDS = {"", "0", "false", "no", "off", "n", "f"}
SHM_SIZE = "16gb"


# --------------------------------------------------------------------------- env variables


def _vllm_release(snap: Snapshot, prefer_config: bool = True) -> str | None:
    """The vLLM release the configuration (or, ``prefer_config`` False, the environment) will run
    once fixed: the one a fix moves it to, else its pin or the installed/reported vLLM
    (:func:`bwdoctor.resolve.vllm_release`, the release the checks phrase their advice for)."""
    return resolve.vllm_release(snap, prefer_config=prefer_config).advice


def env_replacement(name: str, value: str, version: str | None) -> tuple[str, str] | None:
    """For an unread variable whose real replacement is another variable (VLLM_USE_FLASHINFER ->
    VLLM_ATTENTION_BACKEND=FLASHINFER on releases before --attention-backend): (name, value)."""
    kbv = c.kb_vllm()
    if kbv is None:
        return None
    try:
        repl = kbv.env_var_replacement(name, version) or {}
    except Exception:
        return None
    use = str(repl.get("use") or "")
    if repl.get("kind") != "env" or "=" not in use or str(value).strip().strip("'\"").lower() in FALSE_WORDS:
        return None
    new_name, _, new_value = use.partition("=")
    if not re.fullmatch(r"[A-Z][A-Z0-9_]*", new_name) or "{" in new_value:
        return None
    return new_name, new_value


def serve_flags(found: list[tuple[str, list[str], str]], version: str | None) -> tuple[str | None, list[str]]:
    """The model and the de-duplicated flags for ``vllm serve`` from the unread variables found
    (``[(name, flags, value)]``). Speculative-decoding settings given as two variables become one
    ``--speculative-config`` JSON on the releases that take it."""
    model = None
    flags: list[str] = []
    spec: dict[str, Any] = {}
    for name, fl, value in found:
        if fl[:2] == ["vllm", "serve"]:
            model = fl[2] if len(fl) > 2 else None
            continue
        if any(f == "--speculative-config" for f in fl):
            v = str(value).strip().strip("'\"")
            if name.endswith("NUM_SPECULATIVE_TOKENS") and v.isdigit():
                spec["num_speculative_tokens"] = int(v)
            elif v:
                spec["model"] = v
            continue
        flags = merge_flags(flags, fl)
    if spec:
        flags += ["--speculative-config", json.dumps(spec, separators=(",", ":"))]
    return model, flags


def merge_flags(flags: list[str], more: list[str]) -> list[str]:
    """``flags`` plus the ``--flag [value]`` pairs of ``more`` whose flag is not there yet."""
    out = list(flags)
    i = 0
    while i < len(more):
        pair = more[i:i + 2] if i + 1 < len(more) and not more[i + 1].startswith("--") else more[i:i + 1]
        if pair[0] not in out:
            out += pair
        i += len(pair)
    return out


def unread_var(name: str, value: str, version: str | None) -> tuple[bool, list[str], str]:
    """(vLLM does not read it, the flags to use instead, why)."""
    kbv = c.kb_vllm()
    if kbv is None or not name.startswith("VLLM_"):
        return False, [], ""
    try:
        if kbv.env_var_exists(name, version):
            return False, [], ""
        repl = kbv.env_var_replacement(name, version) or {}
    except Exception:
        return False, [], ""
    use = str(repl.get("use") or "")
    if str(value).strip().strip("'\"").lower() in FALSE_WORDS and "use_if_false" in repl:
        use = str(repl.get("use_if_false") or "")
    if repl.get("kind") not in ("flag", None) and repl:
        use = ""
    if "{value}" in use:
        v = str(value).strip().strip("'\"")
        if not v or "N" == v:
            use = ""
        else:
            use = use.replace("{value}", v)
    flags: list[str] = []
    if use:
        try:
            flags = shlex.split(use)
        except ValueError:
            flags = []
    why = str(repl.get("why") or f"vLLM {version or ''} does not read {name}").strip()
    return True, flags, why


_ENV_LINE = re.compile(r"^(?P<indent>\s*)(?P<export>export\s+)?(?P<name>VLLM_[A-Za-z0-9_]+)\s*=\s*(?P<value>.*?)[ \t]*(?P<eol>\r?\n?)$")
_COMPOSE_LIST = re.compile(r"^(?P<indent>\s*)-\s*(?P<q>[\"']?)(?P<name>VLLM_[A-Za-z0-9_]+)=(?P<value>[^\"'#\r\n]*?)(?P=q)[ \t]*(?:#[^\r\n]*)?(?P<eol>\r?\n?)$")
_COMPOSE_MAP = re.compile(r"^(?P<indent>\s*)(?P<name>VLLM_[A-Za-z0-9_]+)\s*:\s*(?P<value>[^#\r\n]*?)[ \t]*(?:#[^\r\n]*)?(?P<eol>\r?\n?)$")
_DOCKER_ENV = re.compile(r"^(?P<indent>\s*)ENV\s+(?P<name>VLLM_[A-Za-z0-9_]+)(?:\s*=\s*|\s+)(?P<value>\S*)[ \t]*(?P<eol>\r?\n?)$", re.I)


def _comment(line: str, indent: str, eol: str, name: str, flags: list[str], why: str) -> str:
    body = line[len(indent):].rstrip("\r\n")
    hint = f"use `{shlex.join(flags)}` on the vLLM server's command line" if flags else "remove it"
    return f"{indent}# {body}  # bwdoctor: vLLM does not read {name}; {hint}{eol or ''}"


def fix_env_vars(text: str, kind: str, version: str | None) -> tuple[str, list[tuple[str, list[str], str]]]:
    """Comment out the VLLM_* assignments vLLM does not read (adding the real variable where the
    replacement is one). Returns the new text and ``[(name, flags, value)]`` for each one."""
    pattern = {"env": [_ENV_LINE], "dotenv": [_ENV_LINE], "compose": [_COMPOSE_LIST, _COMPOSE_MAP], "dockerfile": [_DOCKER_ENV]}.get(kind, [])
    out, found = [], []
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("#"):
            out.append(line)
            continue
        for rx in pattern:
            m = rx.match(line)
            if m:
                unread, flags, why = unread_var(m.group("name"), m.group("value"), version)
                if unread:
                    swap = env_replacement(m.group("name"), m.group("value"), version)
                    if swap:
                        start, end = m.span("value")
                        real = (line[:start] + swap[1] + line[end:]).replace(m.group("name"), swap[0], 1)
                        why = f"set {swap[0]}={swap[1]} instead"
                        out.append(_comment(line, m.group("indent"), "\n", m.group("name"), [], why)
                                   .replace("; remove it", f"; {why}"))
                        out.append(real if real.endswith("\n") else real + (m.group("eol") or ""))
                    else:
                        out.append(_comment(line, m.group("indent"), m.group("eol"), m.group("name"), flags, why))
                    found.append((m.group("name"), flags, m.group("value")))
                    break
        else:
            out.append(line)
    new = "".join(out)
    if kind == "compose" and found:
        new = _tidy_empty_environment(new)
    return new, found


def _tidy_empty_environment(text: str) -> str:
    """An ``environment:`` key left without entries becomes a comment (compose rejects null)."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)environment:\s*(#.*)?\r?\n?$", line)
        if not m:
            continue
        indent = len(m.group(1))
        j, has_entry = i + 1, False
        while j < len(lines):
            s = lines[j]
            if s.strip() and not s.lstrip().startswith("#"):
                if len(s) - len(s.lstrip()) <= indent and not s.lstrip().startswith("- "):
                    break
                has_entry = True
                break
            j += 1
        if not has_entry:
            lines[i] = f"{m.group(1)}# environment:  # bwdoctor: no variable left that vLLM reads\n"
    return "".join(lines)


# --------------------------------------------------------------------------- compose


def _compose_services(text: str) -> list[tuple[int, int, str, dict[str, Any]]]:
    """``[(line index of the service key, its indent, name, parsed service)]`` for services
    under ``services:`` or, in the legacy format, at the top level."""
    import yaml  # imported here: a live run never needs it

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    if not isinstance(data, dict):
        return []
    services: dict[str, Any] | None = data["services"] if isinstance(data.get("services"), dict) else None
    legacy = services is None
    if services is None:
        services = {k: v for k, v in data.items() if (isinstance(v, dict) or v is None)
                    and not str(k).startswith("x-") and k not in ("version", "volumes", "networks", "configs", "secrets")}
    lines = text.splitlines()
    out = []
    in_services = legacy
    for i, line in enumerate(lines):
        if not legacy and re.match(r"^services:\s*(#.*)?$", line):
            in_services = True
            continue
        if not in_services:
            continue
        m = re.match(r"^(\s*)([A-Za-z0-9_.-]+):\s*(#.*)?$", line)
        if m and m.group(2) in services:
            indent = len(m.group(1))
            if (legacy and indent == 0) or (not legacy and indent > 0):
                out.append((i, indent, m.group(2), services[m.group(2)] or {}))
    return out


def _vllm_services(services: list[tuple[int, int, str, dict[str, Any]]]) -> list[tuple[int, int, str, dict[str, Any]]]:
    def is_vllm(name: str, svc: dict[str, Any]) -> bool:
        blob = " ".join(str(svc.get(k, "")) for k in ("image", "command", "entrypoint", "environment", "build"))
        return "vllm" in name.lower() or "vllm" in blob.lower()
    picked = [s for s in services if is_vllm(s[2], s[3])]
    return picked or (services if len(services) == 1 else [])


def _child_indent(lines: list[str], idx: int, indent: int) -> str:
    for s in lines[idx + 1:]:
        if s.strip() and not s.lstrip().startswith("#"):
            n = len(s) - len(s.lstrip())
            if n > indent:
                return s[:n]
            break
    return " " * (indent + 2)


def _shm_bytes(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", str(value or ""), re.I)
    if not m:
        return None
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def fix_compose_shm(text: str) -> tuple[str, list[str]]:
    """Give each vLLM service ``ipc: host`` unless it shares memory already (ipc: host, or
    shm_size >= 1 GiB); a service with another explicit ``ipc:`` mode gets ``shm_size`` instead."""
    lines = text.splitlines(keepends=True)
    inserts: list[tuple[int, str]] = []
    changed = []
    for idx, indent, name, svc in _vllm_services(_compose_services(text)):
        ipc = svc.get("ipc")
        shm = _shm_bytes(svc.get("shm_size"))
        if ipc == "host" or (shm is not None and shm >= 1 << 30):
            continue
        child = _child_indent([ln.rstrip("\r\n") for ln in lines], idx, indent)
        eol = "\r\n" if lines[idx].endswith("\r\n") else "\n"
        if ipc is None:
            inserts.append((idx + 1, f"{child}ipc: host  # bwdoctor: shared memory for NCCL/vLLM workers{eol}"))
            changed.append(f"{name}: ipc: host")
        elif "shm_size" not in svc:
            inserts.append((idx + 1, f"{child}shm_size: \"{SHM_SIZE}\"  # bwdoctor: /dev/shm for NCCL/vLLM{eol}"))
            changed.append(f"{name}: shm_size {SHM_SIZE}")
    for at, line in sorted(inserts, reverse=True):
        lines.insert(at, line)
    return "".join(lines), changed


_COMMAND_LINE = re.compile(r"^(\s*)command:[ \t]*(.*?)[ \t]*(\r?\n?)$")


def _command_lines(lines: list[str], idx: int, indent: int) -> Iterator[tuple[int, re.Match[str]]]:
    """``(line number, match)`` of each ``command:`` key in the block of the service that starts at
    line ``idx`` with ``indent`` (groups: its indent, its inline value, the line end)."""
    for j in range(idx + 1, len(lines)):
        s = lines[j]
        if s.strip() and not s.lstrip().startswith("#") and len(s) - len(s.lstrip()) <= indent:
            return
        m = _COMMAND_LINE.match(s)
        if m:
            yield j, m


def add_compose_flags(text: str, flags: list[str]) -> str:
    """Append flags to the vLLM service's ``command:`` when it is a block list or a plain string,
    verified by parsing the result; otherwise the text is returned unchanged."""
    if not flags:
        return text
    services = _vllm_services(_compose_services(text))
    if len(services) != 1:
        return text
    idx, indent, _name, svc = services[0]
    cmd = svc.get("command")
    if cmd is None:
        return text
    lines = text.splitlines(keepends=True)
    for j, m in _command_lines(lines, idx, indent):
        new_lines = list(lines)
        if isinstance(cmd, list) and not m.group(2):
            k = j + 1
            item_indent = None
            while k < len(lines) and (not lines[k].strip() or lines[k].lstrip().startswith("- ")
                                      or lines[k].lstrip().startswith("#")):
                if lines[k].lstrip().startswith("- "):
                    item_indent = lines[k][:len(lines[k]) - len(lines[k].lstrip())]
                k += 1
            if item_indent is None:
                return text
            eol = m.group(3) or "\n"
            new_lines[k:k] = [f"{item_indent}- {json_str(f)}{eol}" for f in flags]
        elif isinstance(cmd, str) and m.group(2) and m.group(2)[0] not in "\"'[|>":
            new_lines[j] = f"{m.group(1)}command: {m.group(2)} {shlex.join(flags)}{m.group(3)}"
        else:
            return text
        candidate = "".join(new_lines)
        check = [s for s in _vllm_services(_compose_services(candidate)) if s[2] == _name]
        got = check[0][3].get("command") if check else None
        tokens = got if isinstance(got, list) else shlex.split(got) if isinstance(got, str) else []
        if [str(t) for t in tokens[-len(flags):]] == flags:
            return candidate
        return text
    return text


def json_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _serve_args(tokens: list[str]) -> dict[str, Any]:
    """``{"--flag": value}`` of a ``vllm serve`` argument list (``--flag value``, ``--flag=value``; a
    flag without a value is True)."""
    out: dict[str, Any] = {}
    for i, tok in enumerate(tokens):
        if not tok.startswith("--"):
            continue
        flag, eq, val = tok.partition("=")
        flag = "--" + flag[2:].replace("_", "-")
        if eq:
            out[flag] = val
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
            out[flag] = tokens[i + 1]
        else:
            out[flag] = True
    return out


def rewrite_serve_flags(tokens: list[str], version: str | None) -> tuple[list[str], list[str], list[str]]:
    """The argument list with the flags the release does not accept replaced
    (:func:`bwdoctor.kb.vllm.serve_flag_changes`): ``(new tokens, what changed, VLLM_* settings to
    make instead)``."""
    kbv = c.kb_vllm()
    if kbv is None:
        return tokens, [], []
    args = _serve_args(tokens)
    changes = kbv.serve_flag_changes(args, version)
    # a flag whose replacement is a VLLM_* variable stays until the variable is set (advice)
    drop = set(changes["drop"]) - {p["flag"] for p in changes["problems"] if p["use"].startswith("VLLM_")}
    if not drop:
        return tokens, [], list(changes["env"])
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        flag, eq, _ = tok.partition("=")
        flag = "--" + flag[2:].replace("_", "-") if flag.startswith("--") else flag
        if flag in drop:
            takes_value = not eq and isinstance(args.get(flag), str)
            i += 2 if takes_value else 1
            continue
        out.append(tok)
        i += 1
    out += changes["add"]
    what = [f"{p['flag']} -> {p['use'] or 'removed'}" for p in changes["problems"] if not p["use"].startswith("VLLM_")]
    return out, what, list(changes["env"])


def fix_compose_command(text: str, version: str | None) -> tuple[str, list[str]]:
    """Replace, in the vLLM service's one-line ``command:``, the ``vllm serve`` flags the release
    does not accept; the result is verified by parsing it."""
    services = _vllm_services(_compose_services(text))
    if len(services) != 1:
        return text, []
    idx, indent, name, svc = services[0]
    cmd = svc.get("command")
    if not isinstance(cmd, str):
        return text, []
    try:
        tokens = shlex.split(cmd)
    except ValueError:
        return text, []
    new_tokens, what, _env = rewrite_serve_flags(tokens, version)
    if not what:
        return text, []
    lines = text.splitlines(keepends=True)
    for j, m in _command_lines(lines, idx, indent):
        if not m.group(2) or m.group(2)[0] in "\"'[|>":
            continue
        candidate = "".join(lines[:j] + [f"{m.group(1)}command: {shlex.join(new_tokens)}{m.group(3)}"] + lines[j + 1:])
        check = [sv for sv in _vllm_services(_compose_services(candidate)) if sv[2] == name]
        got = check[0][3].get("command") if check else None
        if isinstance(got, str) and shlex.split(got) == new_tokens:
            return candidate, [f"{name} command: " + "; ".join(what)]
        return text, []
    return text, []


# --------------------------------------------------------------------------- Dockerfile

_FROM = re.compile(r"^(?P<indent>\s*)FROM\s+(?P<flags>(?:--\S+\s+)*)(?P<image>[^\s:@]+)(?::(?P<tag>[^\s@]+))?(?P<rest>.*?)(?P<eol>\r?\n?)$", re.I)
_PIN = re.compile(r"(?P<pre>(?:^|[\s\"'])vllm(?:\[[^\]]*\])?)(?P<op>==|>=|~=)(?P<ver>[0-9][0-9A-Za-z.+]*)")


_VLLM_REQ = re.compile(r"^vllm(?:\[[^\]]*\])?(?:\s*(?:===|==|>=|<=|~=|!=|>|<)\s*[0-9][0-9A-Za-z.+*]*(?:\s*,\s*(?:==|>=|<=|~=|!=|>|<)\s*[0-9][0-9A-Za-z.+*]*)*)?$",
                       re.I)
# pip install options that take a value as the next word (pip's own option list)
_PIP_VALUE_OPTS = {"-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-i", "--index-url",
                   "--extra-index-url", "-f", "--find-links", "-t", "--target", "--root", "--prefix", "--src",
                   "--platform", "--python-version", "--implementation", "--abi", "--upgrade-strategy",
                   "--progress-bar", "--trusted-host", "--cache-dir", "--log", "--proxy", "--retries", "--timeout",
                   "--exists-action", "--cert", "--client-cert", "--no-binary", "--only-binary", "--config-settings",
                   "-C", "--global-option", "--python", "--report", "--group"}
_SHELL_OPS = ("&&", "||", ";", "|")


def _shell_words(block: str) -> list[tuple[str, int, int]]:
    """``[(word, start, end)]`` of a shell-form RUN instruction's text (``\\`` continuations and
    comment lines inside it count as blanks; quotes are kept in the word, operators are words)."""
    out: list[tuple[str, int, int]] = []
    i, n = 0, len(block)
    at_line_start = True
    while i < n:
        ch = block[i]
        if at_line_start and block[i:].lstrip(" \t").startswith("#") and out:
            j = block.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if ch == "\\" and block[i + 1:i + 2] in ("\n", "\r"):
            i += 2 if block[i + 1] == "\n" else 3
            at_line_start = True
            continue
        if ch in " \t\r\n":
            at_line_start = ch == "\n" or (at_line_start and ch in " \t")
            i += 1
            continue
        at_line_start = False
        op = next((o for o in _SHELL_OPS if block.startswith(o, i)), None)
        if op:
            out.append((op, i, i + len(op)))
            i += len(op)
            continue
        start = i
        while i < n and block[i] not in " \t\r\n" and not (block[i] == "\\" and block[i + 1:i + 2] in ("\n", "\r")) \
                and not any(block.startswith(o, i) for o in _SHELL_OPS):
            if block[i] in "\"'":
                close = block.find(block[i], i + 1)
                i = n if close < 0 else close + 1
            else:
                i += 1
        out.append((block[start:i], start, i))
    return out


def _pip_install_at(words: list[str], k: int) -> int | None:
    """The index of the first argument when a ``pip install`` command starts at word ``k``."""
    w = [x.rsplit("/", 1)[-1].lower() for x in words[k:k + 5]]
    if len(w) >= 2 and re.fullmatch(r"pip[0-9.]*", w[0]) and w[1] == "install":
        return k + 2
    if len(w) >= 4 and re.fullmatch(r"python[0-9.]*", w[0]) and w[1] == "-m" and w[2] == "pip" and w[3] == "install":
        return k + 4
    return None


def drop_vllm_install(block: str) -> tuple[str | None, list[str]]:
    """The RUN instruction ``block`` without the vLLM requirement of its ``pip install`` commands:
    ``(new block, the requirements removed)``; the new block is ``""`` when nothing is left to
    run, None when no ``pip install`` in it names vLLM (or the instruction is in exec form)."""
    spans = _shell_words(block)
    words = [w for w, _, _ in spans]
    if len(words) < 2 or words[1].startswith("["):
        return None, []
    cuts: list[tuple[int, int]] = []
    removed: list[str] = []
    k = 1
    while k < len(words):
        first = _pip_install_at(words, k)
        if first is None:
            k += 1
            continue
        end = first
        while end < len(words) and words[end] not in _SHELL_OPS:
            end += 1
        pkgs, vllm_at = [], []
        a = first
        while a < end:
            word = words[a]
            if word.startswith("-"):
                a += 2 if word in _PIP_VALUE_OPTS else 1
                if word in ("-r", "--requirement", "-e", "--editable"):
                    pkgs.append(a - 1)  # a requirements file or an editable project installs more
                continue
            pkgs.append(a)
            if _VLLM_REQ.match(word.strip("\"'")):
                vllm_at.append(a)
            a += 1
        if vllm_at and len(vllm_at) == len(pkgs):  # vLLM was all it installed: the command goes
            if end < len(words) and words[end] == "&&":
                cuts.append((spans[k][1], spans[end + 1][1] if end + 1 < len(words) else spans[end][2]))
            elif k > 1 and words[k - 1] == "&&":
                cuts.append((spans[k - 2][2], spans[end - 1][2]))
            elif k == 1 and end == len(words):
                return "", [words[i].strip("\"'") for i in vllm_at]
            else:
                return None, []  # chained with ; or | : left to the user
        else:
            for i in vllm_at:
                cuts.append((spans[i - 1][2], spans[i][2]))
        removed += [words[i].strip("\"'") for i in vllm_at]
        k = end + 1
    if not cuts:
        return None, []
    new = block
    for s, e in sorted(cuts, reverse=True):
        new = new[:s] + new[e:]
    # a continuation left at the very end would swallow the next instruction
    body = new.rstrip()
    while body.endswith("\\"):
        body = body[:-1].rstrip()
    eol = "\r\n" if block.endswith("\r\n") else "\n" if block.endswith("\n") else ""
    return body + eol, removed


def _image_cuda(image: str, tag: str | None) -> Version | None:
    if not tag:
        return None
    name = image.lower().split("/")[-1]
    if name == "cuda":
        return c.vparse(tag)
    m = re.search(r"cuda[-_]?(\d+\.\d+)", tag.lower())
    return c.vparse(m.group(1)) if m else None


def _tag_version(kbv: Any, image: str, tag: str | None) -> str | None:
    if kbv is None:
        return None
    try:
        return kbv.image_tag_version(image, tag)  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001 - an unknown image has no version
        return None


def _stale_comment(lines: list[str], i: int, old_versions: list[str]) -> int | None:
    """The index of the comment right above line ``i`` (blank lines between allowed) when it names
    one of ``old_versions`` (or its major.minor), else None."""
    j = i - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    if j < 0 or not lines[j].lstrip().startswith("#"):
        return None
    names = set()
    for v in old_versions:
        names.add(v)
        parts = v.split(".")
        if len(parts) > 2:
            names.add(".".join(parts[:2]))  # "CUDA 12.4+" for 12.4.1
    if not any(re.search(rf"(?<![\d.]){re.escape(n)}(?![\d])", lines[j]) for n in names if n):
        return None
    return j


def _refresh_comment(lines: list[str], i: int, old_versions: list[str], now: str) -> None:
    """A comment right above line ``i`` that names a version the edit replaced would now be
    wrong: it is rewritten to say what the line holds now."""
    j = _stale_comment(lines, i, old_versions)
    if j is None:
        return
    comment = lines[j]
    indent = comment[: len(comment) - len(comment.lstrip())]
    eol = "\r\n" if comment.endswith("\r\n") else "\n"
    lines[j] = f"{indent}# {now} (updated by bwdoctor; the comment named the replaced version){eol}"


def _no_kernels(snap: Snapshot, version: Any) -> str | None:
    """``"has no kernels for this GPU (needs >= 0.9.2)"`` when a vLLM release lies outside the
    releases with kernels for every judged GPU (:func:`bwdoctor.resolve.vllm_bounds`), else None."""
    first, last, _ = resolve.vllm_bounds(snap)
    if version is None:
        return None
    if first and resolve.at_least(version, first) is False:
        return f"has no kernels for this GPU (needs >= {first})"
    if last and resolve.compare(version, last) == 1:
        return f"has no kernels for this GPU (needs <= {last})"
    return None


_COMPOSE_IMAGE = re.compile(r"^(?P<pre>\s*image:[ \t]*[\"']?)(?P<image>[^\s:@\"'#]+):(?P<tag>[^\s@\"'#]+)(?P<post>.*?)"
                            r"(?P<eol>\r?\n?)$")


def fix_compose_image(text: str, snap: Snapshot) -> tuple[str, list[str]]:
    """Point a service's official vLLM image (``image: vllm/vllm-openai:vX``) whose release has no
    kernels for the GPU at the release the fix moves to (:func:`bwdoctor.resolve.vllm_release`)."""
    rel = resolve.vllm_release(snap)
    kbv = c.kb_vllm()
    if not rel.moves or rel.target is None or kbv is None:
        return text, []
    lines = text.splitlines(keepends=True)
    changes: list[str] = []
    for i, line in enumerate(lines):
        m = _COMPOSE_IMAGE.match(line)
        if not m:
            continue
        ver = _tag_version(kbv, m.group("image"), m.group("tag"))
        gap = _no_kernels(snap, ver)
        if not gap:
            continue
        lines[i] = f"{m.group('pre')}{m.group('image')}:v{rel.target}{m.group('post')}{m.group('eol')}"
        changes.append(f"image {m.group('image')}:{m.group('tag')} -> {m.group('image')}:v{rel.target} (vLLM {ver} {gap})")
        _refresh_comment(lines, i, [str(ver)], f"vLLM {rel.target}")
    return "".join(lines), changes


def fix_dockerfile(text: str, snap: Snapshot) -> tuple[str, list[str]]:
    """Point an old base image at the official vLLM image of the recommended release and pin
    ``vllm==`` to it when the pinned release has no kernels for the GPU."""
    rec, _ = c.recommended_vllm(snap)
    need_cuda = c.vparse(c.strictest(snap, "min_cuda"))
    kbv = c.kb_vllm()
    lines = text.splitlines(keepends=True)
    changes: list[str] = []
    if not rec:
        return text, changes
    rec_cuda = None
    if kbv is not None:
        try:
            rec_cuda = c.vparse(kbv.build_cuda_for(rec))
        except Exception:
            rec_cuda = None
    new_base = False
    moved: list[int] = []  # the FROM lines now naming the official image of ``rec``
    for i, line in enumerate(lines):
        m = _FROM.match(line)
        if not m:
            continue
        image, tag = m.group("image"), m.group("tag")
        old = None
        if kbv is not None:
            try:
                img_ver = kbv.image_tag_version(image, tag)
            except Exception:
                img_ver = None
            gap = _no_kernels(snap, img_ver)
            if gap:
                old = f"vLLM {img_ver} {gap}"
        cuda = _image_cuda(image, tag)
        if cuda is not None and need_cuda is not None and cuda < need_cuda:
            old = f"CUDA {cuda} predates this GPU (needs >= {need_cuda})"
        if old:
            lines[i] = f"{m.group('indent')}FROM {m.group('flags')}vllm/vllm-openai:v{rec}{m.group('rest')}{m.group('eol')}"
            changes.append(f"base image {image}:{tag or 'latest'} -> vllm/vllm-openai:v{rec} ({old})")
            new_base = True
            stale = [str(v) for v in (cuda, _tag_version(kbv, image, tag)) if v is not None]
            _refresh_comment(lines, i, stale, f"vLLM {rec} (official image" + (f", CUDA {rec_cuda})" if rec_cuda else ")"))
            moved.append(i)
    if moved:
        changes += _drop_redundant_vllm(lines, moved, rec)
    for i, line in enumerate(lines):
        if line.lstrip().startswith("#"):
            continue
        m = _PIN.search(line)
        if not m or "pip" not in line.lower():
            continue
        pinned = c.vparse(m.group("ver"))
        if pinned is None:
            continue
        gap = _no_kernels(snap, str(pinned))
        if gap or (new_base and str(pinned) != rec):
            lines[i] = line[:m.start("op")] + "==" + rec + line[m.end("ver"):]
            why = f"vLLM {pinned} {gap}" if gap else "match the base image"
            changes.append(f"vllm=={pinned} -> vllm=={rec} ({why})")
            _refresh_comment(lines, i, [str(pinned), m.group("ver")], f"vLLM {rec}")
    if rec_cuda is not None and changes:
        changes.append(f"vLLM {rec} is built with CUDA {rec_cuda}")
    return "".join(lines), changes


def _drop_redundant_vllm(lines: list[str], moved: list[int], rec: str) -> list[str]:
    """In the build stages whose FROM became vllm/vllm-openai:v<rec> (lines ``moved``), remove the
    vLLM requirement from ``pip install`` commands of RUN instructions (the image has that vLLM):
    the whole RUN goes when vLLM was all it installed, together with a comment right above it that
    names the replaced version; such a comment above a RUN that stays is rewritten. Edits ``lines``
    in place; returns what changed."""
    import io

    from dockerfile_parse import DockerfileParser

    try:
        dfp = DockerfileParser(fileobj=io.BytesIO("".join(lines).encode("utf-8", "replace")), env_replace=False)
        structure = list(dfp.structure)
    except Exception:  # noqa: BLE001 - a file the parser cannot read keeps its RUN lines (re-pinned below)
        return []
    in_moved, runs = False, []
    for ins in structure:
        kind = str(ins.get("instruction", "")).upper()
        if kind == "FROM":
            in_moved = int(ins["startline"]) in moved
        elif kind == "RUN" and in_moved:
            runs.append((int(ins["startline"]), int(ins["endline"])))
    changes: list[str] = []
    for start, end in sorted(runs, reverse=True):
        block = "".join(lines[start:end + 1])
        new, removed = drop_vllm_install(block)
        if new is None or not removed:
            continue
        versions = [v for r in removed for v in re.findall(r"[0-9]+(?:\.[0-9]+)+", r)]
        comment = _stale_comment(lines, start, versions) if versions else None
        first = start
        if new:
            lines[start:end + 1] = [new]
            if comment is not None:
                indent = lines[comment][: len(lines[comment]) - len(lines[comment].lstrip())]
                eol = "\r\n" if lines[comment].endswith("\r\n") else "\n"
                lines[comment] = (f"{indent}# vLLM {rec} comes with the base image (updated by bwdoctor; the comment "
                                  f"named the replaced version){eol}")
            what = "removed from RUN"
        else:
            if comment is not None:
                first = comment
            del lines[first:end + 1]
            if first > 0 and not lines[first - 1].strip() and (first >= len(lines) or not lines[first].strip()):
                del lines[first - 1]
            what = "RUN removed"
        changes.append(f"{', '.join(removed)} {what} (vllm/vllm-openai:v{rec} ships vLLM {rec})")
    return list(reversed(changes))


# --------------------------------------------------------------------------- combined file fix


def fixed_text(path: str, kind: str, text: str, snap: Snapshot) -> tuple[str, list[str], list[str]]:
    """Every correction bwdoctor knows for one file: (new text, what changed, flags to add)."""
    version = _vllm_release(snap)
    wanted = snap.meta.get("remedies_wanted")

    def want(*ids: str) -> bool:  # without the list (a remedy called on its own) every correction applies
        return not isinstance(wanted, list) or any(i in wanted for i in ids)

    changes: list[str] = []
    new, found = fix_env_vars(text, kind, version) if want("config.replace-vllm-env") else (text, [])
    for name, fl, _value in found:
        changes.append(f"{name}: not read by vLLM" + (f"; use {shlex.join(fl)}" if fl else ""))
    model, flags = serve_flags(found, version)
    if model:
        flags = ["--model", model] + flags
    if kind == "compose":
        if want("compose.ipc-host", "compose.shm-size"):
            new, ch = fix_compose_shm(new)  # ipc first: its insertion keeps the service a mapping
            changes += ch
        if want("dockerfile.vllm-pin", "dockerfile.base-image"):
            new, ch = fix_compose_image(new, snap)
            changes += ch
        if want("config.serve-flags"):
            new, ch = fix_compose_command(new, version)
            changes += ch
        with_flags = add_compose_flags(new, flags)
        if with_flags != new:
            changes.append("flags added to command: " + shlex.join(flags))
            new, flags = with_flags, []
    elif kind == "dockerfile" and want("dockerfile.base-image", "dockerfile.vllm-pin"):
        new, ch = fix_dockerfile(new, snap)
        changes += ch
    return new, changes, flags


def _targets(finding: Finding, snap: Snapshot, kinds: tuple[str, ...]) -> list[tuple[str, str]]:
    files = c.config_files(snap, kinds)
    wanted = set(c.finding_paths(finding))
    picked = [(p, str(i.get("kind"))) for p, i in files if p in wanted]
    return picked or [(p, str(i.get("kind"))) for p, i in files]


def _file_plan(remedy_id: str, title: str, finding: Finding, snap: Snapshot, kinds: tuple[str, ...],
               fallback: str) -> FixPlan | None:
    steps: list[FixStep] = []
    leftover_flags: list[str] = []
    for path, kind in _targets(finding, snap, kinds):
        text = c.read_user_file(path)
        if text is None:
            steps.append(c.advice(f"{path} could not be read to compute a patch: {fallback}"))
            continue
        new, changes, flags = fixed_text(path, kind, text, snap)
        leftover_flags = merge_flags(leftover_flags, flags)
        step = c.patch_step(path, text, new, f"Edit {path}: " + "; ".join(changes), kind=kind)
        if step is not None:
            steps.append(step)
    if leftover_flags:
        steps.append(c.advice("Add these flags to the vllm serve command line (where the model is given): "
                              + shlex.join(leftover_flags)))
    if not steps:
        if not c.config_files(snap, kinds):
            return c.plan(remedy_id, title, finding, [c.advice(fallback)])
        return None
    return c.plan(remedy_id, title, finding, steps,
                  "Every remedy for the same file carries the same combined diff; the file is edited once.")


def replace_vllm_env(finding: Finding, snap: Snapshot) -> FixPlan | None:
    plan = _file_plan("config.replace-vllm-env", "Replace VLLM_* variables vLLM does not read", finding, snap,
                      ("env", "dotenv", "compose", "dockerfile"),
                      "remove the VLLM_* variables vLLM does not read and pass the real flags to vllm serve")
    if plan is None or all(s.advisory for s in plan.steps):
        env = c.host_env(snap)
        extra = []
        for name, value in sorted(env.items()):
            unread, flags, why = unread_var(str(name), str(value), _vllm_release(snap, prefer_config=False))
            if unread:
                extra.append(c.advice(f"Unset {name} where vLLM is started ({why})"
                                      + (f"; use {shlex.join(flags)}" if flags else ""), ["unset", str(name)]))
        if extra:
            plan = plan or c.plan("config.replace-vllm-env", "Replace VLLM_* variables vLLM does not read", finding, [])
            plan.steps = [s for s in plan.steps if not s.advisory] + extra
    return plan


def compose_ipc(finding: Finding, snap: Snapshot) -> FixPlan | None:
    return _file_plan("compose.ipc-host", "Share host IPC with the vLLM container", finding, snap, ("compose",),
                      "add `ipc: host` to the vLLM service (docker run --ipc=host)")


def compose_shm(finding: Finding, snap: Snapshot) -> FixPlan | None:
    return _file_plan("compose.shm-size", "Give the vLLM container enough /dev/shm", finding, snap, ("compose",),
                      f"add `shm_size: \"{SHM_SIZE}\"` (docker run --shm-size={SHM_SIZE}) or `ipc: host`")


def dockerfile_base(finding: Finding, snap: Snapshot) -> FixPlan | None:
    rec, why = c.recommended_vllm(snap)
    return _file_plan("dockerfile.base-image", "Use a base image with kernels for this GPU", finding, snap,
                      ("dockerfile",), f"base the image on vllm/vllm-openai:v{rec}" if rec else
                      f"use a base image with CUDA new enough for this GPU ({why})")


def dockerfile_pin(finding: Finding, snap: Snapshot) -> FixPlan | None:
    rec, why = c.recommended_vllm(snap)
    return _file_plan("dockerfile.vllm-pin", "Pin a vLLM release with kernels for this GPU", finding, snap,
                      ("dockerfile", "compose"), f"pin vllm=={rec}" if rec else f"pin a vLLM release for this GPU ({why})")


def replace_serve_flags(finding: Finding, snap: Snapshot) -> FixPlan | None:
    title = "Use the vllm serve flags the vLLM release accepts"
    plan = _file_plan("config.serve-flags", title, finding, snap, ("compose",),
                      "give vllm serve only the flags its release accepts (`vllm serve --help` lists them)")
    patched = plan is not None and any(not s.advisory for s in plan.steps)
    version = _vllm_release(snap)
    kbv = c.kb_vllm()
    changes = kbv.serve_flag_changes(snap.mapping("config.serve_args"), version) if kbv is not None else {}
    steps = []
    for p in changes.get("problems", []):
        if patched and not p["use"].startswith("VLLM_"):
            continue  # the patch replaces it
        was = f"{p['flag']} {p['value']}" if p.get("value") else p["flag"]
        use = p["use"] or "nothing (remove it)"
        where = "set " + use + " where vLLM is started" if p["use"].startswith("VLLM_") else "use " + use
        steps.append(c.advice(f"In the vllm serve command line, remove {was} and {where}"
                              + (f" (vLLM {version} does not accept {p['flag']})" if version else "")))
    if patched and plan is not None:
        plan.steps = [s for s in plan.steps if not s.advisory] + steps
        return plan
    if not steps:
        return plan
    return c.plan("config.serve-flags", title, finding, steps)


@hookimpl
def bwdoctor_remedies() -> list[RemedySpec]:
    doc = (" Reads the file it patches (the only I/O a remedy does) and emits a unified diff; every remedy for a "
           "file emits the same combined diff.")
    return [
        RemedySpec("config.replace-vllm-env", "Replace VLLM_* variables vLLM does not read", replace_vllm_env,
                   doc="Comments out VLLM_* assignments that the vLLM release does not read (kb.vllm), names the "
                       "real flag, and adds it to a compose command: when there is one." + doc),
        RemedySpec("config.serve-flags", "vllm serve flags the release accepts", replace_serve_flags,
                   doc="Replaces, in a compose service's one-line command:, the vllm serve flags the vLLM release "
                       "(the one a fix moves to, else the pinned one) does not accept: --speculative-model and "
                       "--num-speculative-tokens become one --speculative-config JSON (kb.vllm flags); other "
                       "command lines get the replacement as advice." + doc),
        RemedySpec("compose.ipc-host", "ipc: host for the vLLM service", compose_ipc,
                   doc="Adds `ipc: host` to the vLLM service unless it already shares enough memory." + doc),
        RemedySpec("compose.shm-size", "shm_size for the vLLM service", compose_shm,
                   doc=f"Adds `ipc: host`, or `shm_size: {SHM_SIZE}` when another ipc mode is set." + doc),
        RemedySpec("dockerfile.base-image", "Base image with kernels for the GPU", dockerfile_base,
                   doc="Replaces a base image whose CUDA or vLLM predates the GPU by vllm/vllm-openai:v<release>."
                       + doc),
        RemedySpec("dockerfile.vllm-pin", "vLLM pin with kernels for the GPU", dockerfile_pin,
                   doc="Re-pins `pip install vllm==X` to the recommended release; in a build stage whose base image "
                       "became the official image of that release, removes the vLLM requirement from RUN pip installs "
                       "(the whole RUN when vLLM was all it installed) and the stale comment above it." + doc),
    ]
