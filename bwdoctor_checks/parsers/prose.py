"""Environment facts from what people write: issue text, markdown bullets and tables, chat-style
pastes, printed ``torch.__version__`` lines, traceback paths.

A person writes "vLLM version: 0.13.0", "- **GPU**: 2x NVIDIA RTX PRO 6000 (Blackwell, SM120a)",
"| Driver | 570.133.20 |", "Compute Capability: (12, 0)", "torch 2.6.0+cu124", "two RTX 5090s",
"vllm版本v0.3.2" or "CUDA：11.6"; a traceback carries ``.../torch-2.6.0+cu124.dist-info`` or
``/nix/store/...-cuda_nvcc-12.8.93/bin/ptxas``; an image tag in prose names the vLLM release.

Every fact is yielded with ``rank=STATED`` (``bwdoctor.STATED``): a tool's own output of the same
fact (collect_env, nvidia-smi, pip list, a log line) always wins, and a disagreement is kept in the
snapshot's ``meta["conflicts"]``. A labelled statement ("vLLM version: X") wins over a passing
mention ("it worked on vllm 0.5.5"). Install and pull commands are the configuration parser's
(``parsers.config``); this parser skips those lines.

Facts (source ``issue-text:line N``): ``vllm`` {version, install, cuda_major}, ``torch`` {version,
cuda, variant}, ``driver.version``, ``gpu.<i>`` {name, compute_capability, cc_source}, ``gpu.count``,
``nccl.version``, ``nccl.cuda``, ``flashinfer``, ``triton``, ``toolkit.nvcc``, ``log.cuda_runtime``,
``container.cuda_version``, ``host.wsl``, ``env.stated`` (the statements found, for the report).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from typing import Any

from bwdoctor import INFERRED, STATED, Evidence, Fact, ParserSpec, hookimpl, kb, lazy_regex
from bwdoctor.kb import vllm as kbv
from bwdoctor_checks._lib.textutil import cc_from_sm, gpu_entry, gpu_names, short_version, torch_fact

SRC = "issue-text"
MAX_LINES = 20000
MAX_MENTION_CHARS = 256 * 1024  # GPU models named in passing are looked for in the first 256 KiB

_VER = r"v?(\d+\.\d+(?:\.\d+){0,2}(?:\.?post\d+|rc\d+|\.dev\d+|a\d+)?(?:\+[\w.]+)?)"
# "Key: value" after markdown is stripped; full-width colons count.
_KV = lazy_regex(r"^\s*([A-Za-z][A-Za-z0-9 ._/()+\-]{0,40}?|[^\x00-\x7f]{0,8}[A-Za-z][\w .]{0,30}?)\s*[:：=]\s*(.+?)\s*$")
_TABLE_ROW = lazy_regex(r"^\s*\|?\s*([^|]{1,50}?)\s*\|\s*([^|]{1,200}?)\s*\|?\s*$")
_SKIP_LINE = lazy_regex(r"^\s*(?:RUN|FROM|ARG|ENV)\s|(?:pip3?|uv pip|python[\d.]* -m pip)\s+install|--index-url"
                        r"|docker (?:pull|run)|^\s*\$?\s*(?:nvidia-smi(?:\s+-\S+)*\s*$|nvcc\s+-|vllm serve\b)", re.I)
_PKG_ROW = lazy_regex(r"^\s*(?:\[(?:pip\d?|conda)\]\s*)?[\w.-]+\s*(?:==\s*|\s{2,})\d[\w.+!-]*(?:\s+\S+){0,2}\s*$")

# labelled keys (lower-case, after markdown is stripped)
_K_VLLM = lazy_regex(r"^(?:vllm|vllm[ _-]?(?:version|ver|版本)|version of vllm|vllm-openai)$")
_K_TORCH = lazy_regex(r"^(?:py)?torch(?:[ _-]?(?:version|ver))?$")
_K_DRIVER = lazy_regex(r"^(?:nvidia |cuda |gpu |host )?driver(?:[ _-]?version)?$|^nvidia[- ]smi$")
_K_GPU = lazy_regex(r"^(?:gpus?|gpu ?(?:model|type|name|info)s?|graphics ?cards?|hardware|device|accelerators?)$")
_K_CC = lazy_regex(r"^(?:gpu )?(?:compute[ _-]?capability|cc|sm|arch(?:itecture)?)$")
_K_CUDA = lazy_regex(r"^cuda(?:[ _-]?(?:version|runtime|runtime version))?$")
_K_TOOLKIT = lazy_regex(r"^(?:cuda[ _-]?toolkit(?: version)?|nvcc(?: version)?)$")
_K_NCCL = lazy_regex(r"^nccl(?:[ _-]?version)?$")
_K_FLASHINFER = lazy_regex(r"^flashinfer(?:[-_ ]python)?(?:[ _-]?version)?$")
_K_TRITON = lazy_regex(r"^triton(?:[ _-]?version)?$")
_K_IMAGE = lazy_regex(r"^(?:docker )?(?:image|container)(?: tag)?$")

# free mentions anywhere in a line
_F_VLLM = lazy_regex(r"\bvllm(?![/A-Za-z0-9_-])[^\S\n]*(?:版本|version|ver\.?)?[^\S\n]*(?:[:：=]=?)?[^\S\n]*" + _VER, re.I)
_F_TORCH = lazy_regex(r"\b(?:py)?torch[^\S\n]*(?:version)?[^\S\n]*(?:[:：=]=?)?[^\S\n]*v?(\d+\.\d+\.\d+(?:a0)?"
                      r"(?:\+(?:cu\d{2,3}|cpu|rocm[\d.]+|[\w.]+))?)", re.I)
_F_TORCH_PRINT = lazy_regex(r"^\s*(\d+\.\d+\.\d+(?:\.dev\d+)?\+(?:cu\d{2,3}|cpu))\s+(\d+\.\d+|None)\b")
_F_DRIVER = lazy_regex(r"(?:driver(?:[^\S\n]*version)?|NVIDIA[^\S\n]+driver)[^\S\n]*[:：=]?[^\S\n]*v?(\d{3}\.\d{2,3}"
                       r"(?:\.\d{2,3})?)\b", re.I)
_F_IMAGE = lazy_regex(r"\b((?:docker\.io/)?vllm/vllm-openai(?:-cpu)?):(v?\d+\.\d+(?:\.\d+){0,2}(?:\.?post\d+)?)\b")
_F_BASE_IMAGE = lazy_regex(r"\bnvidia/cuda:(\d+\.\d+(?:\.\d+)?)")
_F_NCCL = lazy_regex(r"\bNCCL(?:[^\S\n]*version)?[^\S\n]*[:：=]?[^\S\n]*v?(2\.\d{1,2}\.\d{1,2})(?:\+cuda(\d+\.\d+))?", re.I)
# a driver named by its branch only: "Driver 570", "R570", "the 575 driver"
_F_DRIVER_BRANCH = lazy_regex(r"\bdriver(?:[^\S\n]*(?:version|branch))?[^\S\n]*[:：=]?[^\S\n]*R?(\d{3})(?![\d.])|"
                              r"\bR?(\d{3})[^\S\n]+(?:series[^\S\n]+)?driver\b|\bR(5\d\d|6\d\d)\b", re.I)
_F_NCCL_DEB = lazy_regex(r"\b(2\.\d{1,2}\.\d{1,2})-\d+\+cuda(\d+\.\d+)\b")
_F_FLASHINFER = lazy_regex(r"\bflashinfer(?:-python)?[^\S\n]*(?:==|:|\s)[^\S\n]*v?(\d+\.\d+\.\d+(?:\.post\d+)?)", re.I)
_F_TOOLKIT = lazy_regex(r"CUDA toolkit[^\S\n]*v?(\d+\.\d+)|nvcc[^\n]{0,30}?(?:release|V)[^\S\n]*(\d+\.\d+)|"
                        r"(?:CUDA(?:_HOME)?)[^\n]{0,20}?/usr/local/cuda-(\d+\.\d+)", re.I)
_F_CC = lazy_regex(r"compute[ _-]?capability[^\S\n]*[:：=]?[^\S\n]*\(?(\d{1,2})[.,][^\S\n]*(\d)\)?"
                   r"|\b(?:sm|SM)[_ ]?(\d{2,3})[af]?\b|\bcompute_(\d{2,3})[af]?\b|\bCC[^\S\n]*(\d{1,2}\.\d)\b")
# an error message names architectures it wants or lacks, not the GPU the person has
_ERRORISH = lazy_regex(r"error|requires?|not (?:compatible|supported)|supports?|expected|minimum|only|failed|"
                       r"Traceback|Exception|\bat least\b|or (?:higher|newer|later)", re.I)
_F_WSL = lazy_regex(r"\bWSL ?2?\b|Windows Subsystem for Linux|Docker Desktop")
_F_SOURCE_BUILD = lazy_regex(r"(?:built|installed|compiled|build) (?:vllm |it )?from (?:the )?source|Installation "
                             r"Method\W+[^\n]{0,20}source|pip install -e \.|python setup\.py (?:develop|install)", re.I)
# versions carried in paths: dist-info folders, nix store entries, conda package folders
_F_PATH_PKG = lazy_regex(r"(?:/|\b)(torch|vllm|triton|flashinfer(?:[-_]python)?|nvidia[-_]nccl[-_]cu1\d)-(\d+\.\d+\.\d+"
                         r"(?:\.post\d+)?(?:\+[\w.]+)?)(?=\.dist-info|/|-py|\.egg|-cp\d)", re.I)
_F_PATH_NVCC = lazy_regex(r"(?:cuda[_-]nvcc|cuda-toolkit|cudatoolkit)-(\d+\.\d+)(?:\.\d+)*/")

_COUNT_WORDS = {"two": 2, "dual": 2, "three": 3, "four": 4, "quad": 4, "six": 6, "eight": 8, "2": 2, "3": 3, "4": 4,
                "5": 5, "6": 6, "7": 7, "8": 8, "16": 16}
_COUNT_BEFORE = lazy_regex(r"\b(two|dual|three|four|quad|six|eight|\d{1,2})\s*(?:[x×*]\s*)?(?:NVIDIA\s+)?$", re.I)
_COUNT_AFTER = lazy_regex(r"^(?:\s*GPUs?)?\s*(?:[x×*]\s*(\d{1,2})\b|\((\d{1,2})\)|s\b)", re.I)


def _clean(line: str) -> str:
    """Markdown and chat decoration off: emphasis, code ticks, bullets, quote marks, headings."""
    s = line.replace("**", "").replace("__", "").replace("`", "")
    s = re.sub(r"^\s*(?:[-*+>]|\d+[.)])\s+", "", s)
    s = re.sub(r"^\s*#+\s*", "", s)
    return s.rstrip()


def _kv(line: str) -> tuple[str, str] | None:
    m = _TABLE_ROW.match(line) if line.count("|") >= 2 else None
    if m and not re.fullmatch(r"[-:\s]+", m.group(2)):
        return m.group(1).strip().lower(), m.group(2).strip()
    m = _KV.match(line)
    if m and m.group(2):
        return m.group(1).strip().lower(), m.group(2).strip()
    return None


# a line says nothing this parser reads unless it names one of these (substring tests: a big log
# costs one pass, not twenty regular expressions per line)
_TRIGGERS = ("+cuda", "vllm", "torch", "driver", "nccl", "flashinfer", "triton", "cuda", "nvcc", "sm", "compute", "cc", "wsl",
             "docker desktop", "source", "setup.py", "dist-info", "/nix/store", "gpu", "hardware", "device",
             "accelerator", "card", "image", "container", "cu1", "|")
_SKIP_HINTS = ("run", "from", "arg", "env", "install", "--index-url", "docker", "nvidia-smi", "nvcc", "vllm serve")
_SEGMENT = lazy_regex(r"\s*[,;、，|]\s*(?=[A-Za-z][\w .()/+-]{0,30}?\s*[:：])")


def _kvs(line: str) -> list[tuple[str, str]]:
    """Every "key: value" of a line; several on one line ("OS: CentOS 7, GPU: P40*4") are split."""
    one = _kv(line)
    if line.count("|") >= 2:
        return [one] if one else []
    parts = _SEGMENT.split(line)
    if len(parts) < 2:
        return [one] if one else []
    out = [kv for part in parts if (kv := _kv(part))]
    return out or ([one] if one else [])


def _gpu_mentions(text: str) -> list[tuple[str, int, int]]:
    """GPU models named in free text as ``(canonical name, start, end)``; knowledge-base names only.
    A name followed by a variant word (Ti, SUPER, Laptop, D) is not taken for its base product."""
    low = text.lower()
    found: list[tuple[str, int, int]] = []
    taken: list[tuple[int, int]] = []
    for alias, canonical in gpu_names():
        start = 0
        while True:
            i = low.find(alias, start)
            if i < 0:
                break
            j = i + len(alias)
            start = j
            before = low[i - 1] if i > 0 else " "
            after = low[j] if j < len(low) else " "
            if before.isalnum() or after.isalnum():
                continue
            if re.match(r"\s*(?:ti|super|laptop|mobile|max-q|d|m)\b", low[j:j + 12]) and \
                    not re.search(r"(?:ti|super|laptop|mobile|max-q|\bd|\bm)$", alias):
                continue
            if any(a < j and i < b for a, b in taken):
                continue
            taken.append((i, j))
            found.append((canonical, i, j))
    return sorted(found, key=lambda t: t[1])


def _count_near(line: str, start: int, end: int) -> int | None:
    """A GPU count written around a GPU name: "2x", "two", "4 x", "x2", "*4", "(8)"."""
    m = _COUNT_BEFORE.search(line[max(0, start - 14):start])
    if m:
        n = _COUNT_WORDS.get(m.group(1).lower())
        if n and m.group(0).strip().lower() not in {str(n)} | {"1", "0"}:  # "2x", "two", not a bare digit
            return n
        if n and re.search(r"[x×*]", m.group(0)):
            return n
    m = _COUNT_AFTER.match(line[end:end + 12])
    if m:
        for g in (m.group(1), m.group(2)):
            if g and 1 < int(g) <= 16:
                return int(g)
    return None


def _cc_from(m: re.Match[str]) -> str | None:
    if m.group(1):
        return f"{int(m.group(1))}.{m.group(2)}"
    for g in (m.group(3), m.group(4)):
        if g:
            cc = cc_from_sm(g)
            return cc if cc and 3.0 <= float(cc) <= 13.0 else None
    return m.group(5)


class _Pick:
    """The best candidate per fact: a labelled statement over a passing mention; the first of each."""

    def __init__(self) -> None:
        self.best: dict[str, tuple[float, Any, int]] = {}

    def offer(self, key: str, value: Any, line: int, strength: float) -> None:
        if value in (None, "", {}):
            return
        cur = self.best.get(key)
        if cur is None or strength > cur[0]:
            self.best[key] = (strength, value, line)


LABEL, MENTION = 2, 1


def _vllm_info(version: str, install: str | None = None) -> dict[str, Any]:
    base = version.split("+", 1)[0]
    info: dict[str, Any] = {"version": base}
    if install:
        info["install"] = install
    m = re.search(r"\+cu(\d+)(\d)$", version)
    if m:
        info["cuda_major"] = int(m.group(1))
    elif install == "image":
        cuda = kbv.build_cuda_for(base)
        if cuda:
            info["cuda_major"] = int(cuda.split(".")[0])
            info["cuda_inferred"] = f"the vllm/vllm-openai image of vLLM {base} is built with CUDA {cuda}"
    if re.search(r"\.dev|\+g[0-9a-f]{6,}", version):
        info["source_build"] = True
    return info


def _branch_cuda(branch: int, line: int) -> Iterator[Fact]:
    """The CUDA a driver branch supports at least: the newest toolkit whose own driver is not newer
    than the branch's first release (570 -> 12.8). Drivers later in a branch may support more."""
    best: tuple[int, ...] | None = None
    for cuda, drv in kb.cuda_driver_table():
        if kb.version_tuple(drv)[:1] <= (branch,):
            t = kb.version_tuple(cuda)[:2]
            best = t if best is None or t > best else best
    if best is not None and len(best) == 2:
        yield Fact("driver.cuda_version", f"{best[0]}.{best[1]}", f"{SRC}:line {line} (driver branch {branch})",
                   INFERRED)


def _torch(version: str, cuda: str | None = None) -> dict[str, Any]:
    return torch_fact(version, cuda)


def detect_env_text(ev: Evidence) -> bool:
    try:
        if re.search(r"^(?:Dockerfile|Containerfile)|\.(?:ya?ml|env|toml|json)$", ev.name or "", re.I):
            return False
        head = ev.head or ""
        return bool(_F_TORCH.search(head) or _F_VLLM.search(head) or _F_DRIVER.search(head) or _F_CC.search(head)
                    or _F_IMAGE.search(head) or _F_NCCL.search(head) or _F_PATH_PKG.search(head)
                    or re.search(r"^\s*[-*|]?\s*\**(?:GPU|CUDA)\b|\bGPUs?\**\s*[:：=]", head, re.M | re.I)
                    or _gpu_mentions(head[:200000]))
    except Exception:
        return False


def parse_env_text(ev: Evidence) -> Iterator[Fact]:
    head = ev.head or ""
    lines = head.splitlines()[:MAX_LINES]
    pick = _Pick()
    gpu_label: tuple[str, int, int | None] | None = None  # (name, line, count)
    cc_hint: tuple[str, int] | None = None
    stated: list[dict[str, Any]] = []
    wsl_line = 0
    source_build_line = 0
    for n, raw in enumerate(lines, 1):
        if len(raw) > 4000:
            raw = raw[:4000]
        low = raw.lower()
        if not any(t in low for t in _TRIGGERS):
            continue
        if (any(t in low for t in _SKIP_HINTS) and _SKIP_LINE.search(raw)) or _PKG_ROW.match(raw):
            continue
        line = _clean(raw)
        if not line.strip():
            continue
        for kv in _kvs(line) if (":" in line or "|" in line or "=" in line or "：" in line) else ():
            key, val = kv
            key = re.sub(r"\s+", " ", key)
            m: re.Match[str] | None
            if _K_VLLM.match(key) and (m := re.match(_VER, val.lstrip("=").strip())):
                pick.offer("vllm", _vllm_info(m.group(1)), n, LABEL)
            elif _K_TORCH.match(key) and (m := re.match(r"v?(\d+\.\d+\.\d+[\w.+]*)", val)):
                pick.offer("torch", _torch(m.group(1)), n, LABEL)
            elif _K_DRIVER.match(key) and (m := re.search(r"\b(\d{3}\.\d{2,3}(?:\.\d{2,3})?)\b", val)):
                pick.offer("driver.version", m.group(1), n, LABEL)
            elif _K_CC.match(key) and (m := re.search(r"\(?(\d{1,2})[.,]\s*(\d)\)?|(?:sm_?)(\d{2,3})", val, re.I)):
                cc = f"{int(m.group(1))}.{m.group(2)}" if m.group(1) else cc_from_sm(m.group(3))
                if cc and cc_hint is None:
                    cc_hint = (cc, n)
            elif _K_GPU.match(key) or (key.startswith("gpu") and "capab" not in key and "driver" not in key):
                names = _gpu_mentions(val)
                if names and gpu_label is None:
                    name, s, e = names[0]
                    gpu_label = (name, n, _count_near(val, s, e))
                elif gpu_label is None:
                    # a name the mention list lacks ("P40*4", "RTX 3060 Ti"): ask the resolver (product
                    # prefixes, families)
                    cm = re.search(r"(?:^|\s)(\d{1,2})\s*[x×*]\s*|\s*[x×*]\s*(\d{1,2})\b", val)
                    bare = re.sub(r"\(.*?\)|(?:^|\s)\d{1,2}\s*[x×*]\s*|\s*[x×*]\s*\d{1,2}\b", " ", val)
                    bare = re.split(r"[,;]", bare)[0].strip()
                    if 2 < len(bare) <= 60 and gpu_entry(bare, SRC).get("compute_capability"):
                        count = int(cm.group(1) or cm.group(2)) if cm else None
                        gpu_label = (bare, n, count if count and 1 < count <= 16 else None)
            elif _K_CUDA.match(key) and (m := re.match(r"v?(\d{1,2}(?:\.\d+)?)(?![\d.])", val)):
                pick.offer("log.cuda_runtime", m.group(1), n, LABEL)
            elif _K_TOOLKIT.match(key) and (m := re.search(r"(\d+\.\d+)", val)):
                pick.offer("toolkit.nvcc", {"version": m.group(1), "path": None}, n, LABEL)
            elif _K_NCCL.match(key) and (m := re.match(r"v?(2\.\d{1,2}\.\d{1,2})", val)):
                pick.offer("nccl.version", m.group(1), n, LABEL)
            elif _K_FLASHINFER.match(key) and (m := re.match(r"v?(\d+\.\d+\.\d+(?:\.post\d+)?)", val)):
                pick.offer("flashinfer", {"packages": {"flashinfer-python": m.group(1)}}, n, LABEL)
            elif _K_TRITON.match(key) and (m := re.match(r"v?(\d+\.\d+\.\d+)", val)):
                pick.offer("triton", {"version": m.group(1)}, n, LABEL)
            elif _K_IMAGE.match(key) and (m := _F_IMAGE.search(val)):
                pick.offer("vllm", _vllm_info(m.group(2).lstrip("v"), "image"), n, LABEL)
        # passing mentions anywhere in the line
        if (m := _F_IMAGE.search(line)):
            pick.offer("vllm", _vllm_info(m.group(2).lstrip("v"), "image"), n, MENTION + 0.5)
        elif (m := _F_VLLM.search(line)) and not re.search(r"vllm/vllm-openai", line, re.I):
            pick.offer("vllm", _vllm_info(m.group(1)), n, MENTION)
        if (m := _F_TORCH_PRINT.match(line)):
            pick.offer("torch", _torch(m.group(1), None if m.group(2) == "None" else m.group(2)), n, LABEL)
        elif (m := _F_TORCH.search(line)):
            pick.offer("torch", _torch(m.group(1)), n, MENTION)
        if (m := _F_DRIVER.search(line)):
            pick.offer("driver.version", m.group(1), n, MENTION)
        if "driver.version" not in pick.best and (m := _F_DRIVER_BRANCH.search(line)):
            pick.offer("driver.branch", int(m.group(1) or m.group(2) or m.group(3)), n, MENTION)
        if (m := _F_NCCL_DEB.search(line)):  # the libnccl2 package form: 2.25.1-1+cuda12.8
            pick.offer("nccl.version", m.group(1), n, MENTION)
            pick.offer("nccl.cuda", m.group(2), n, MENTION)
        if (m := _F_NCCL.search(line)):
            pick.offer("nccl.version", m.group(1), n, MENTION)
            if m.group(2):
                pick.offer("nccl.cuda", m.group(2), n, MENTION)
        if (m := _F_FLASHINFER.search(line)):
            pick.offer("flashinfer", {"packages": {"flashinfer-python": m.group(1)}}, n, MENTION)
        if (m := _F_TOOLKIT.search(line)):
            v = m.group(1) or m.group(2) or m.group(3)
            path = re.search(r"(/usr/local/cuda[\w.-]*)", line)
            pick.offer("toolkit.nvcc", {"version": v, "path": path.group(1) if path else None}, n, MENTION)
        if (m := _F_BASE_IMAGE.search(line)):
            pick.offer("container.cuda_version", short_version(m.group(1)), n, MENTION)
        for pm in _F_PATH_PKG.finditer(raw):
            name, ver = pm.group(1).lower().replace("_", "-"), pm.group(2)
            if name == "torch":
                pick.offer("torch", _torch(ver), n, MENTION)
            elif name == "vllm":
                pick.offer("vllm", _vllm_info(ver), n, MENTION)
            elif name == "triton":
                pick.offer("triton", {"version": ver}, n, MENTION)
            elif name.startswith("flashinfer"):
                pick.offer("flashinfer", {"packages": {"flashinfer-python": ver}}, n, MENTION)
            elif name.startswith("nvidia-nccl"):
                pick.offer("nccl.version", short_version(ver, 3), n, MENTION)
        if (m := _F_PATH_NVCC.search(raw)):
            pick.offer("toolkit.nvcc", {"version": m.group(1), "path": None}, n, MENTION)
        if cc_hint is None and not _ERRORISH.search(line) and (m := _F_CC.search(line)):
            cc = _cc_from(m)
            if cc:
                cc_hint = (cc, n)
        if not wsl_line and _F_WSL.search(line):
            wsl_line = n
        if not source_build_line and _F_SOURCE_BUILD.search(line):
            source_build_line = n
    if "driver.version" in pick.best:
        pick.best.pop("driver.branch", None)
    for key, (strength, value, n) in pick.best.items():
        stated.append({"key": key, "value": value, "line": n, "how": "labelled" if strength >= LABEL else "mention"})
        yield Fact(key, value, f"{SRC}:line {n}", STATED)
    if "driver.branch" in pick.best:
        yield from _branch_cuda(pick.best["driver.branch"][1], pick.best["driver.branch"][2])
    if source_build_line:
        yield Fact("vllm", {"source_build": True}, f"{SRC}:line {source_build_line}", STATED)
    if wsl_line:
        yield Fact("host.wsl", True, f"{SRC}:line {wsl_line}", STATED)
    yield from _gpu_facts(head, lines, gpu_label, cc_hint, stated)
    if stated:
        yield Fact("env.stated", stated, SRC, STATED)


def _gpu_facts(head: str, lines: list[str], label: tuple[str, int, int | None] | None,
               cc_hint: tuple[str, int] | None, stated: list[dict[str, Any]]) -> Iterator[Fact]:
    """A labelled "GPU: ..." line wins; otherwise a single model named in the text (several different
    models named: none is chosen, the compute capability alone may still be stated)."""
    chosen = label
    if chosen is None:
        found: list[tuple[str, int, int | None]] = []
        text = "\n".join(lines)[:MAX_MENTION_CHARS]
        starts = [0]
        for raw in lines:
            starts.append(starts[-1] + len(raw) + 1)
        for name, s, e in _gpu_mentions(text):  # one pass over the text, not one per line
            n = bisect.bisect_right(starts, s)
            raw = lines[n - 1]
            if _SKIP_LINE.search(raw):
                continue
            col = s - starts[n - 1]
            found.append((name, n, _count_near(raw, col, col + (e - s))))
        if len({f[0] for f in found}) == 1:
            counts = [c for _, _, c in found if c]
            chosen = (found[0][0], found[0][1], max(counts) if counts else None)
    if chosen is not None:
        name, n, count = chosen
        entry = gpu_entry(name, SRC)
        if cc_hint and not entry.get("compute_capability"):
            entry.update({"compute_capability": cc_hint[0], "cc_source": SRC})
        for i in range(count or 1):
            yield Fact(f"gpu.{i}", entry, f"{SRC}:line {n}", STATED)
        if count:  # a count only when one is written ("2x", "two", "*4"); naming a GPU is not saying "one"
            yield Fact("gpu.count", count, f"{SRC}:line {n}", STATED)
        stated.append({"key": "gpu", "value": {"name": name, "count": count}, "line": n})
    elif cc_hint is not None:
        yield Fact("gpu.0", {"compute_capability": cc_hint[0], "cc_source": SRC}, f"{SRC}:line {cc_hint[1]}", STATED)
        stated.append({"key": "gpu", "value": {"compute_capability": cc_hint[0]}, "line": cc_hint[1]})


def _safe(func: Any) -> Any:
    def run(ev: Evidence) -> list[Fact]:
        out: list[Fact] = []
        try:
            for fact in func(ev):
                out.append(fact)
        except Exception:  # bad input never breaks the run: what was read before stays
            return out
        return out

    run.__name__ = getattr(func, "__name__", "parser")
    return run


@hookimpl
def bwdoctor_parsers() -> list[ParserSpec]:
    return [
        ParserSpec(name="env-text", func=_safe(parse_env_text), detect=detect_env_text, timeout=60.0, guesses=True,
                   doc="Environment statements people write (prose, markdown bullets and tables, printed versions, "
                       "traceback paths): vLLM, torch, driver, CUDA, NCCL, FlashInfer, Triton versions, the GPU "
                       "model, count and compute capability, a vLLM image tag. Ranked below any tool's output of "
                       "the same fact; disagreements are recorded."),
    ]
