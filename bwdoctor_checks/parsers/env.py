"""Parsers for pasted environment reports.

* ``collect_env``: ``python -m torch.utils.collect_env`` and vLLM's ``collect_env`` /
  ``vllm collect-env`` output, in the old ``Key: value`` layout and the newer sectioned
  ``Key   : value`` layout (with its ``Environment Variables`` section).
* ``nvidia-smi``: the default table, ``nvidia-smi -q``, ``--query-gpu ... --format=csv`` output and
  the ``nvidia-smi topo -m`` matrix.
* ``packages``: ``pip list``, ``pip freeze``, ``conda list`` (and collect_env's ``[pip3]``/``[conda]``
  lines).

Statements people write in prose are ``parsers.prose``'s.

Reporters paste several outputs into one blob, so each parser looks for its own markers anywhere
in the first MiB and extracts its part. Facts (provenance ``<parser>:line N``):
``torch`` {version, cuda, variant}, ``packages``, ``vllm`` {version, source_build}, ``vllm.cuda_archs``,
``driver.version``, ``driver.cuda_version``, ``gpu.count``, ``gpu.<i>`` {name, compute_capability,
cc_source, memory_total_mib, memory_used_mib, mig, persistence_mode, pci_device_id, processes, ...},
``host.os``, ``host.kernel``, ``host.python``, ``host.wsl``, ``host.env``, ``host.gpu_topology``,
``toolkit.nvcc``, ``nccl.version``, ``triton``, ``flashinfer``, ``container.cuda_version``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from typing import Any

from bwdoctor import Evidence, Fact, ParserSpec, hookimpl, lazy_regex
from bwdoctor_checks._lib.gpuutil import SMI_CLOCK_REASON_LABELS
from bwdoctor_checks._lib.runtimes import cuda_runtimes
from bwdoctor_checks._lib.textutil import (
    canonical_name,
    cc_from_sm,
    clip,
    gpu_entry,
    short_version,
    strip_ansi,
    to_int,
    torch_fact,
)

ENV_PREFIXES = ("CUDA", "NVIDIA", "VLLM", "NCCL", "TORCH", "HF_", "HUGGING", "PYTORCH", "TRITON", "FLASHINFER",
                "LD_LIBRARY_PATH", "OMP_", "TOKENIZERS", "TRANSFORMERS", "NV_", "CUBLAS", "CUDNN", "RAY_")
_ENV_LINE = lazy_regex(r"^\s*([A-Z][A-Z0-9_]{1,63})=(.*)$")


def _lines(ev: Evidence, limit: int | None = None) -> Iterator[tuple[int, str]]:
    try:
        for n, line in enumerate(ev.lines(), 1):
            if limit is not None and n > limit:
                return
            yield n, strip_ansi(line) if "\x1b" in line else line
    except OSError:
        for n, line in enumerate((ev.head or "").splitlines(), 1):
            yield n, line


def _safe(func: Any) -> Any:
    """Wrap a parser so that nothing escapes on bad input: what was parsed before stays."""

    def run(ev: Evidence) -> list[Fact]:
        out: list[Fact] = []
        with contextlib.suppress(Exception):
            for fact in func(ev):
                out.append(fact)
        return out

    run.__name__ = getattr(func, "__name__", "parser")
    run.__doc__ = func.__doc__
    return run


def _head(ev: Evidence) -> str:
    return ev.head or ""


# =========================================================================== collect_env

CE_MARKERS = lazy_regex(r"PyTorch version\s*:|Is debug build\s*:|CUDA used to build PyTorch\s*:|Collecting environment "
                        r"information|vLLM Version\s*:|vLLM Build Flags|GPU models and configuration\s*:|Nvidia driver "
                        r"version\s*:|^\[(?:pip3?|conda)\] |Versions of relevant libraries|collect_env", re.M)
_CE_KV = lazy_regex(r"^\s*([A-Za-z][A-Za-z0-9 ._/()+-]{1,60}?)\s*:\s?(.*)$")
_GPU_LINE = lazy_regex(r"GPU (\d+):\s*(.+?)(?:\s*\(UUID:[^)]*\))?\s*$")


def detect_collect_env(ev: Evidence) -> bool:
    try:
        return len(CE_MARKERS.findall(_head(ev))) >= 1
    except Exception:
        return False


def _os_fact(text: str) -> dict[str, Any]:
    pretty = re.sub(r"\s*\((?:x86_64|aarch64|arm64)\)\s*$", "", text.strip())
    m = re.match(r"(Ubuntu|Debian GNU/Linux|Red Hat Enterprise Linux|Rocky Linux|CentOS(?: Stream)?|Fedora(?: Linux)?"
                 r"|Amazon Linux|SUSE Linux Enterprise Server|openSUSE|AlmaLinux|Arch Linux|NixOS)\s*([\d.]+)?", pretty)
    ident = None
    version = None
    if m:
        ident = {"Debian GNU/Linux": "debian", "Red Hat Enterprise Linux": "rhel", "Rocky Linux": "rocky",
                 "Amazon Linux": "amzn", "SUSE Linux Enterprise Server": "sles", "AlmaLinux": "almalinux",
                 "Arch Linux": "arch"}.get(m.group(1), m.group(1).split()[0].lower())
        version = m.group(2)
    return {"id": ident, "version": version, "pretty": pretty}


def parse_collect_env(ev: Evidence) -> Iterator[Fact]:
    src = "collect_env"
    torch_version = None
    torch_cuda = None
    torch_line = 0
    gpus: dict[int, tuple[str, int]] = {}
    env: dict[str, str] = {}
    env_line = 0
    packages: dict[str, dict[str, Any]] = {}
    pkg_line = 0
    section = ""
    in_gpu_list = False
    pending_archs = False
    in_env = False
    in_topo = False
    topo_rows: list[str] = []
    topo_line = 0
    for n, line in _lines(ev):
        s = line.strip()
        if not s:
            in_gpu_list = False
            in_topo = False if topo_rows else in_topo
            continue
        if re.fullmatch(r"=+", s):
            continue
        if re.fullmatch(r"[A-Za-z /&]+", s) and len(s) < 40 and not s.endswith(":") and section != "topo":
            # a section title of the newer layout ("System Info", "Environment Variables")
            section = s.lower()
            in_env = "environment variables" in section
            continue
        if s.startswith("[pip") or s.startswith("[conda]"):
            entry = _package_line(s)
            if entry:
                name, info = entry
                packages[name] = info
                pkg_line = pkg_line or n
            continue
        if in_env or _ENV_LINE.match(line):
            m = _ENV_LINE.match(line)
            if m and m.group(1).startswith(ENV_PREFIXES):
                env[m.group(1)] = m.group(2).strip()
                env_line = env_line or n
                continue
        if in_gpu_list:
            m = _GPU_LINE.search(s)
            if m:
                gpus[int(m.group(1))] = (m.group(2).strip(), n)
                continue
            in_gpu_list = False
        if pending_archs:
            pending_archs = False
            m = re.search(r"CUDA Archs:\s*([^;]*)", s)
            if m:
                yield from _cuda_archs(m.group(1), f"{src}:line {n}")
                continue
        if in_topo:
            if re.match(r"^\s*(GPU\d+|NIC\d+|mlx\S+)\s", line) or re.match(r"^\s+GPU0", line):
                topo_rows.append(line)
                continue
            in_topo = False
        if s.startswith("GPU Topology"):
            in_topo = True
            topo_line = n
            continue
        m = _CE_KV.match(line)
        if not m:
            continue
        key = m.group(1).strip().lower()
        val = m.group(2).strip()
        where = f"{src}:line {n}"
        if key == "pytorch version":
            torch_version = val if val and val.lower() != "n/a" else None
            torch_line = n
        elif key == "cuda used to build pytorch":
            torch_cuda = None if val.lower() in ("n/a", "could not collect", "none") else short_version(val)
        elif key == "os":
            yield Fact("host.os", _os_fact(val), where)
        elif key == "python version":
            v = short_version(val, 3)
            if v:
                yield Fact("host.python", v, where)
        elif key == "python platform":
            km = re.search(r"Linux-([\w.+-]+?)-(x86_64|aarch64)", val)
            if km:
                yield Fact("host.kernel", km.group(1), where)
                yield Fact("host.arch", km.group(2), where)
            if re.search(r"microsoft|WSL", val, re.I):
                yield Fact("host.wsl", True, where)
        elif key == "cuda runtime version":
            v = short_version(val, 2)
            if v and "could not" not in val.lower():
                yield Fact("toolkit.nvcc", {"version": v, "full": short_version(val, 3), "path": None}, where)
        elif key == "gpu models and configuration":
            in_gpu_list = True
            gm = _GPU_LINE.search(val)
            if gm:
                gpus[int(gm.group(1))] = (gm.group(2).strip(), n)
            elif val and "could not" not in val.lower() and not val.lower().startswith("gpu"):
                gpus[0] = (val, n)
        elif key == "nvidia driver version":
            if re.match(r"\d+\.\d+", val):
                yield Fact("driver.version", val.split()[0], where)
        elif key == "vllm version":
            if val and "could not" not in val.lower() and val.lower() != "n/a":
                vinfo: dict[str, Any] = {"version": val.split()[0]}
                if re.search(r"\.dev|\+g[0-9a-f]{6,}|\(git sha", val):
                    vinfo["source_build"] = True
                yield Fact("vllm", vinfo, where)
        elif key == "vllm build flags":
            pending_archs = True
            am = re.search(r"CUDA Archs:\s*([^;]*)", val)
            if am:
                pending_archs = False
                yield from _cuda_archs(am.group(1), where)
        elif key == "cuda archs":
            yield from _cuda_archs(val.split(";")[0], where)
        elif key in ("is cuda available",):
            yield Fact("log.cuda_available", val.lower().startswith("true"), where)
        elif key == "caching allocator config" and val and val.lower() != "n/a":
            env.setdefault("PYTORCH_CUDA_ALLOC_CONF", val)
    if torch_version:
        yield Fact("torch", torch_fact(torch_version, torch_cuda), f"{src}:line {torch_line}")
    if gpus:
        for idx, (name, n) in sorted(gpus.items()):
            yield Fact(f"gpu.{idx}", gpu_entry(name, src), f"{src}:line {n}")
        yield Fact("gpu.count", len(gpus), src)
    if env:
        yield Fact("host.env", env, f"{src}:line {env_line}")
    if packages:
        yield from _package_facts(packages, f"{src}:line {pkg_line}", with_torch=not torch_version)
    if topo_rows:
        topo = _topology(topo_rows)
        if topo:
            yield Fact("host.gpu_topology", topo, f"{src}:line {topo_line}")


def _cuda_archs(text: str, where: str) -> Iterator[Fact]:
    text = text.strip()
    if not text or text.lower().startswith(("not set", "none", "n/a")):
        return
    archs = []
    for tok in re.split(r"[;,\s]+", text):
        tok = tok.replace("+PTX", "")
        m = re.fullmatch(r"(\d+)\.(\d+)\w?", tok)
        if m:
            archs.append(f"{m.group(1)}.{m.group(2)}")
        elif re.fullmatch(r"sm_\d+\w*", tok):
            cc = cc_from_sm(tok)
            if cc:
                archs.append(cc)
    if archs:
        yield Fact("vllm.cuda_archs", sorted(set(archs), key=lambda a: tuple(int(x) for x in a.split("."))), where)


# =========================================================================== packages

_FREEZE = lazy_regex(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(?:==|===)\s*([^\s;#]+)")
_AT_URL = lazy_regex(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*@\s*(\S+)")
_LIST_ROW = lazy_regex(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s+(\d[\w.+!-]*)(?:\s+(/\S.*|\S+))?\s*$")
_CONDA_ROW = lazy_regex(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s+(\d[\w.+!-]*)\s+(\S+)(?:\s+(\S+))?\s*$")
CONDA_ALIASES = {"pytorch": "torch", "pytorch-cuda": "pytorch-cuda", "torchtriton": "triton"}


def _package_line(line: str) -> tuple[str, dict[str, Any]] | None:
    """One ``[pip3] name==ver`` or ``[conda] name ver build channel`` line of collect_env."""
    if line.startswith("[conda]"):
        body = line[len("[conda]"):].strip()
        m = _CONDA_ROW.match(body)
        if not m:
            return None
        name = canonical_name(m.group(1))
        info: dict[str, Any] = {"version": m.group(2), "build": m.group(3), "manager": "conda"}
        if m.group(4):
            info["channel"] = m.group(4)
        return CONDA_ALIASES.get(name, name), info
    body = re.sub(r"^\[pip\d?\]\s*", "", line)
    m = _FREEZE.match(body)
    if m:
        return canonical_name(m.group(1)), {"version": m.group(2)}
    return None


def _conda_torch_cuda(info: dict[str, Any]) -> str | None:
    m = re.search(r"cuda(\d+)\.?(\d)", str(info.get("build", "")))
    if m:
        return f"{m.group(1)}.{m.group(2)}"
    m = re.search(r"_cu(\d{2,3})", str(info.get("build", "")))
    if m:
        d = m.group(1)
        return f"{d[:-1]}.{d[-1]}"
    return None


def _package_facts(packages: dict[str, dict[str, Any]], where: str, with_torch: bool = True) -> Iterator[Fact]:
    yield Fact("packages", packages, where)
    rt = cuda_runtimes({k: v.get("version") for k, v in packages.items() if v.get("manager") != "conda"})
    if rt:
        yield Fact("toolkit.cuda_runtimes", rt, where)
    torch = packages.get("torch")
    if with_torch and torch:
        cuda = _conda_torch_cuda(torch) if torch.get("manager") == "conda" else None
        if cuda is None and "pytorch-cuda" in packages:
            cuda = short_version(packages["pytorch-cuda"].get("version"))
        if cuda is None and "+" not in str(torch.get("version")):
            # pip's torch without a local version: the CUDA it uses shows in its nvidia-* companions
            cuda = _cuda_from_companions(packages)
        yield Fact("torch", torch_fact(torch.get("version"), cuda), where)
    vllm = packages.get("vllm")
    if vllm:
        info: dict[str, Any] = {"version": vllm.get("version")}
        if re.search(r"\.dev|\+g[0-9a-f]{6,}", str(vllm.get("version"))) or str(vllm.get("location", "")).startswith("/"):
            info["source_build"] = True
        m = re.search(r"\+cu(\d{2,3})", str(vllm.get("version")))
        if m:
            info["cuda_major"] = int(m.group(1)[:-1])
        yield Fact("vllm", info, where)
    triton = packages.get("triton") or packages.get("pytorch-triton")
    if triton:
        yield Fact("triton", {"version": triton.get("version")}, where)
    fi = {k: v.get("version") for k, v in packages.items() if k.startswith("flashinfer")}
    if fi:
        yield Fact("flashinfer", {"packages": fi}, where)
    for name in ("nvidia-nccl-cu13", "nvidia-nccl-cu12", "nvidia-nccl-cu11", "nvidia-nccl", "nccl"):
        if name in packages:
            v = short_version(packages[name].get("version"), 3)
            if v:
                yield Fact("nccl.version", v, where)
            break


def _cuda_from_companions(packages: dict[str, dict[str, Any]]) -> str | None:
    rt = packages.get("nvidia-cuda-runtime-cu12") or packages.get("nvidia-cuda-runtime") or \
        packages.get("nvidia-cuda-runtime-cu11")
    if rt:
        return short_version(rt.get("version"))
    return None


PIP_MARKERS = lazy_regex(r"^Package\s+Version\s*(?:Location|Editable project location|Installer)?\s*$|"
                         r"^-{5,}\s+-{3,}|^# packages in environment at|^# Name\s+Version\s+Build|"
                         r"^\s*(?:torch|vllm|numpy|transformers|triton|flashinfer[-\w]*)\s*==\s*\d", re.M | re.I)


def detect_packages(ev: Evidence) -> bool:
    try:
        head = _head(ev)
        if PIP_MARKERS.search(head):
            return True
        return len(re.findall(r"^\s*[A-Za-z0-9][\w.-]*==\d", head, re.M)) >= 3
    except Exception:
        return False


def parse_packages(ev: Evidence) -> Iterator[Fact]:
    packages: dict[str, dict[str, Any]] = {}
    first_line = 0
    conda = False
    in_list = False
    for n, line in _lines(ev):
        s = line.strip()
        if not s:
            continue
        if s.startswith("# packages in environment at") or re.match(r"#\s*Name\s+Version\s+Build", s):
            conda = True
            continue
        if re.match(r"^Package\s+Version", s):
            in_list = True
            continue
        if re.match(r"^-{3,}\s+-{3,}", s):
            continue
        if s.startswith("[pip") or s.startswith("[conda]"):
            entry = _package_line(s)
            if entry:
                packages[entry[0]] = entry[1]
                first_line = first_line or n
            continue
        m = _FREEZE.match(s)
        if m:
            packages[canonical_name(m.group(1))] = {"version": m.group(2)}
            first_line = first_line or n
            continue
        m = _AT_URL.match(s)
        if m and not s.startswith(("http", "git")):
            url = m.group(2)
            vm = re.search(r"-(\d+(?:\.\d+)+(?:\.post\d+|\.dev\d+|rc\d+)?(?:\+[\w.]+)?)-", url)
            packages[canonical_name(m.group(1))] = {"version": vm.group(1) if vm else None, "url": clip(url, 200)}
            first_line = first_line or n
            continue
        if conda:
            m = _CONDA_ROW.match(s)
            if m and not s.startswith("#"):
                name = canonical_name(m.group(1))
                info: dict[str, Any] = {"version": m.group(2), "build": m.group(3), "manager": "conda"}
                if m.group(4):
                    info["channel"] = m.group(4)
                packages[CONDA_ALIASES.get(name, name)] = info
                first_line = first_line or n
            continue
        if in_list:
            m = _LIST_ROW.match(s)
            if m:
                info = {"version": m.group(2)}
                if m.group(3) and m.group(3).startswith("/"):
                    info["location"] = m.group(3).strip()
                packages[canonical_name(m.group(1))] = info
                first_line = first_line or n
                continue
            in_list = False
    if packages:
        yield from _package_facts(packages, f"packages:line {first_line}")


# =========================================================================== nvidia-smi

SMI_MARKERS = lazy_regex(r"NVIDIA-SMI \d|Driver Version:\s*\d|==+NVSMI LOG==+|Attached GPUs\s*:|--query-gpu|"
                         r"^name, (?:driver_version|compute_cap|memory\.total|pci\.bus_id|uuid)|"
                         r"^\s+GPU0\s+(?:GPU1|CPU Affinity|NIC0)", re.M)
_SMI_HEADER = lazy_regex(r"NVIDIA-SMI\s+([\d.]+)\s+Driver Version:\s*([\d.]+)(?:\s+CUDA Version:\s*([\d.]+))?")
_SMI_GPU_ROW = lazy_regex(r"^\|\s*(\d+)\s+(.+?)\s+(On|Off)\s*\|\s*([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d)"
                          r"\s+(On|Off)\s*\|\s*(\S+)\s*\|")
_SMI_MEM_ROW = lazy_regex(r"^\|\s*(\S+)\s+(\S+)\s+(P\d+)\s+(?:(\S+)\s*/\s*(\S+))?\s*\|\s*(\d+)MiB\s*/\s*(\d+)MiB\s*\|"
                          r"\s*(\d+)%\s+(\S+)\s*\|")
_SMI_MIG_ROW = lazy_regex(r"^\|\s*\|\s*\|\s*(Disabled|Enabled|N/A)\s*\|")
_SMI_PROC_ROW = lazy_regex(r"^\|\s+(\d+)\s+(\S+)\s+(\S+)\s+(\d+)\s+(C|G|C\+G)\s+(.+?)\s+(\d+)MiB\s*\|")
_SMI_MIG_DEV = lazy_regex(r"^\|\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\|\s*(\d+)MiB\s*/\s*(\d+)MiB")


def detect_nvidia_smi(ev: Evidence) -> bool:
    try:
        return bool(SMI_MARKERS.search(_head(ev)))
    except Exception:
        return False


def parse_nvidia_smi(ev: Evidence) -> Iterator[Fact]:
    lines = list(_lines(ev, limit=200_000))
    text_head = "\n".join(line for _, line in lines[:4000])
    if "NVSMI LOG" in text_head or re.search(r"^Attached GPUs\s*:", text_head, re.M):
        yield from _parse_smi_q(lines)
    else:
        yield from _parse_smi_table(lines)
    yield from _parse_smi_csv(lines)
    topo_rows: list[str] = []
    topo_line = 0
    for n, line in lines:
        if re.match(r"^\s+GPU0(\s+GPU\d+)*\s+(?:NIC\d+\s+)*CPU Affinity", line) or re.match(r"^\s+GPU0\s+GPU1", line):
            topo_rows = [line]
            topo_line = n
            continue
        if topo_rows and re.match(r"^(GPU\d+|NIC\d+)\s", line):
            topo_rows.append(line)
        elif topo_rows and len(topo_rows) > 1:
            break
    if len(topo_rows) > 1:
        topo = _topology(topo_rows)
        if topo:
            yield Fact("host.gpu_topology", topo, f"nvidia-smi-topo:line {topo_line}")


def _parse_smi_table(lines: list[tuple[int, str]]) -> Iterator[Fact]:
    gpus: dict[int, dict[str, Any]] = {}
    gpu_lines: dict[int, int] = {}
    last: int | None = None
    procs: list[dict[str, Any]] = []
    in_procs = False
    for n, line in lines:
        m = _SMI_HEADER.search(line)
        if m:
            yield Fact("driver.version", m.group(2), f"nvidia-smi:line {n}")
            if m.group(3):
                yield Fact("driver.cuda_version", m.group(3), f"nvidia-smi:line {n}")
            continue
        if "Processes:" in line:
            in_procs = True
            continue
        if in_procs:
            pm = _SMI_PROC_ROW.match(line)
            if pm:
                procs.append({"gpu": int(pm.group(1)), "pid": int(pm.group(4)), "type": pm.group(5),
                              "name": pm.group(6).strip(), "used_mib": int(pm.group(7))})
            continue
        m = _SMI_GPU_ROW.match(line)
        if m:
            idx = int(m.group(1))
            name = m.group(2).strip()
            g = gpu_entry(name, "nvidia-smi", pci_bus_id=m.group(4),
                          persistence_mode=m.group(3) == "On")
            if m.group(6).isdigit():
                g["ecc"] = {"volatile_uncorrected": int(m.group(6))}
            gpus[idx] = g
            gpu_lines[idx] = n
            last = idx
            continue
        if last is not None:
            m = _SMI_MEM_ROW.match(line)
            if m:
                g = gpus[last]
                g["memory_used_mib"] = int(m.group(6))
                g["memory_total_mib"] = int(m.group(7))
                g["utilization"] = {"gpu": int(m.group(8))}
                g["compute_mode"] = _COMPUTE.get(m.group(9).lower(), m.group(9).lower())
                g["performance_state"] = m.group(3)
                if m.group(2) and m.group(2).endswith("C"):
                    g["temperature"] = {"gpu_c": to_int(m.group(2)[:-1])}
                draw = to_float_safe(m.group(4) or "")
                cap = to_float_safe(m.group(5) or "")
                if draw is not None or cap is not None:
                    g["power"] = {"draw_w": draw, "limit_w": cap}
                continue
            m = _SMI_MIG_ROW.match(line)
            if m:
                if m.group(1) != "N/A":
                    gpus[last]["mig"] = {"current": m.group(1) == "Enabled"}
                last = None
    for p in procs:
        if p["gpu"] in gpus:
            gpus[p["gpu"]].setdefault("processes", []).append({k: v for k, v in p.items() if k != "gpu"})
    for idx, g in sorted(gpus.items()):
        yield Fact(f"gpu.{idx}", g, f"nvidia-smi:line {gpu_lines[idx]}")
    if gpus:
        yield Fact("gpu.count", len(gpus), "nvidia-smi")


def _parse_smi_q(lines: list[tuple[int, str]]) -> Iterator[Fact]:
    src = "nvidia-smi-q"
    gpus: list[dict[str, Any]] = []
    gpu_lines: list[int] = []
    stack: list[tuple[int, str]] = []
    cur: dict[str, Any] | None = None
    procs_current: dict[str, Any] | None = None
    for n, line in lines:
        if not line.strip():
            continue
        hm = re.match(r"^GPU ([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d)\s*$", line)
        if hm:
            cur = {"pci_bus_id": hm.group(1)}
            gpus.append(cur)
            gpu_lines.append(n)
            stack = [(0, "GPU")]
            procs_current = None
            continue
        m = re.match(r"^(\s*)([^:]+?)\s*(?::\s*(.*))?$", line)
        if not m:
            continue
        indent = len(m.group(1).expandtabs())
        key = m.group(2).strip()
        val = (m.group(3) or "").strip() if m.group(3) is not None else None
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [k for _, k in stack] + [key]
        if indent == 0:
            if key == "Driver Version" and val:
                yield Fact("driver.version", val, f"{src}:line {n}")
            elif key == "CUDA Version" and val:
                yield Fact("driver.cuda_version", val, f"{src}:line {n}")
            cur = None if key not in ("Driver Version", "CUDA Version", "Timestamp", "Attached GPUs") else cur
        if val is None:
            stack.append((indent, key))
            continue
        if cur is None:
            continue
        p = tuple(path[1:])
        _smi_q_field(cur, p, val)
        if p and p[0] == "Processes":
            if key == "GPU instance ID" or (key == "Process ID" and procs_current is None):
                procs_current = {}
                cur.setdefault("processes", []).append(procs_current)
            if procs_current is not None:
                if key == "Process ID":
                    if "pid" in procs_current:
                        procs_current = {}
                        cur.setdefault("processes", []).append(procs_current)
                    procs_current["pid"] = to_int(val)
                elif key == "Name":
                    procs_current["name"] = val
                elif key == "Used GPU Memory":
                    procs_current["used_mib"] = to_int(val.split()[0])
    for i, g in enumerate(gpus):
        name = g.pop("_name", None)
        entry = gpu_entry(name, src, compute_capability=None)
        entry.update(g)
        yield Fact(f"gpu.{i}", entry, f"{src}:line {gpu_lines[i]}")
    if gpus:
        yield Fact("gpu.count", len(gpus), src)


_SMI_REASONS = SMI_CLOCK_REASON_LABELS  # nvidia-smi -q label -> (name, bit): bwdoctor/kb/nvml.json
_RECOVERY = {"none": "none", "gpu reset": "gpu_reset", "reset": "gpu_reset", "node reboot": "node_reboot",
             "reboot": "node_reboot", "drain p2p": "drain_p2p", "drain and reset": "drain_and_reset"}
_COMPUTE = {"default": "default", "exclusive_process": "exclusive_process", "exclusive process": "exclusive_process",
            "e. process": "exclusive_process", "prohibited": "prohibited", "exclusive_thread": "exclusive_thread"}


def _yes(val: str) -> bool:
    return val.strip().lower() in ("yes", "enabled", "on", "true", "active")


def _smi_q_field(g: dict[str, Any], p: tuple[str, ...], val: str) -> None:
    """One ``nvidia-smi -q`` field into the NVML collector's ``gpu.<i>`` shape."""
    na = val in ("N/A", "Not Supported", "[N/A]", "Requested functionality has been deprecated", "")
    if na:
        return
    low = tuple(x.lower() for x in p)
    if low == ("product name",):
        g["_name"] = val
    elif low == ("product architecture",):
        g["arch"] = val.lower()
    elif low == ("persistence mode",):
        g["persistence_mode"] = _yes(val)
    elif low in (("mig mode", "current"), ("mig mode", "pending")):
        g.setdefault("mig", {})[low[1]] = _yes(val)
    elif low == ("gpu uuid",):
        g["uuid"] = val
    elif low == ("pci", "device id"):
        m = re.match(r"0x([0-9A-Fa-f]{4})([0-9A-Fa-f]{4})", val)
        if m:
            g["pci_device_id"] = "0x" + m.group(1).lower()
    elif low[:3] == ("pci", "gpu link info", "pcie generation") and len(low) == 4:
        key = {"max": "gen_max", "current": "gen_current", "device max": "gen_gpu_max"}.get(low[3])
        if key:
            g.setdefault("pcie", {})[key] = to_int(val)
    elif low[:3] == ("pci", "gpu link info", "link width") and len(low) == 4:
        key = {"max": "width_max", "current": "width_current"}.get(low[3])
        if key:
            g.setdefault("pcie", {})[key] = to_int(val.rstrip("x"))
    elif low[:2] == ("pci", "replays since reset"):
        g.setdefault("pcie", {})["replay_counter"] = to_int(val)
    elif low[:1] == ("fb memory usage",) and len(low) == 2 and low[1] in ("total", "used", "free"):
        g[f"memory_{low[1]}_mib"] = to_int(val.split()[0])
    elif low == ("compute mode",):
        g["compute_mode"] = _COMPUTE.get(val.lower(), val.lower())
    elif low in (("ecc mode", "current"), ("ecc mode", "pending")):
        g.setdefault("ecc", {})[low[1]] = _yes(val)
    elif low[:1] == ("ecc errors",) and len(low) == 3 and low[1] in ("volatile", "aggregate"):
        n = to_int(val)
        if n is not None:
            kind = "uncorrected" if "uncorrectable" in low[2] else "corrected"
            ecc = g.setdefault("ecc", {})
            key = f"{low[1]}_{kind}"
            ecc[key] = ecc.get(key, 0) + n
    elif low[:1] == ("remapped rows",) and len(low) == 2:
        rows = g.setdefault("remapped_rows", {})
        if low[1] == "correctable error":
            rows["corrected"] = to_int(val)
        elif low[1] == "uncorrectable error":
            rows["uncorrected"] = to_int(val)
        elif low[1] == "pending":
            rows["pending"] = _yes(val)
        elif low[1] == "remapping failure occurred":
            rows["failure"] = _yes(val)
    elif low == ("retired pages", "pending page blacklist") or low == ("retired pages", "pending page retirement"):
        g.setdefault("retired_pages", {})["pending"] = _yes(val)
    elif low == ("gpu recovery action",):
        g["recovery_action"] = _RECOVERY.get(val.lower(), val.lower())
    elif low == ("temperature", "gpu current temp"):
        g.setdefault("temperature", {})["gpu_c"] = to_int(val.split()[0])
    elif low == ("temperature", "gpu slowdown temp"):
        g.setdefault("temperature", {})["slowdown_c"] = to_int(val.split()[0])
    elif low[:1] == ("gpu power readings",) and len(low) == 2:
        key = {"power draw": "draw_w", "average power draw": "draw_w", "current power limit": "limit_w",
               "power limit": "limit_w", "enforced power limit": "enforced_limit_w",
               "default power limit": "default_limit_w"}.get(low[1])
        w = to_float_safe(val)
        if key and w is not None:
            g.setdefault("power", {}).setdefault(key, w)
    elif low[:1] in (("clocks",), ("max clocks",)) and len(low) == 2 and low[1] in ("graphics", "sm", "memory"):
        mhz = to_int(val.split()[0])
        g.setdefault("clocks", {}).setdefault(low[1], {})["current" if low[0] == "clocks" else "max"] = mhz
    elif low[:1] == ("clocks event reasons",) or low[:1] == ("clocks throttle reasons",):
        if len(low) >= 2 and val.lower() == "active" and low[-1] in _SMI_REASONS:
            name, bit = _SMI_REASONS[low[-1]]
            cer = g.setdefault("clock_event_reasons", {"active": 0, "active_names": []})
            cer["active"] |= bit
            cer["active_names"].append(name)
    elif low == ("fabric", "state"):
        g.setdefault("fabric", {})["state"] = val.lower()
    elif low == ("fabric", "status"):
        g.setdefault("fabric", {})["status"] = val
    elif low == ("gpu virtualization mode", "virtualization mode"):
        g["virtualization_mode"] = val.lower().replace("-", "").replace(" ", "_")


def to_float_safe(val: str) -> float | None:
    m = re.match(r"\s*(-?[\d.]+)", val)
    try:
        return float(m.group(1)) if m else None
    except ValueError:
        return None


_CSV_FIELDS = {"name": "name", "compute_cap": "compute_capability", "memory.total": "memory_total_mib",
               "memory.used": "memory_used_mib", "memory.free": "memory_free_mib", "driver_version": "driver_version",
               "pci.bus_id": "pci_bus_id", "uuid": "uuid", "pci.device_id": "pci_device_id",
               "persistence_mode": "persistence_mode", "mig.mode.current": "mig_current", "index": "index"}


def _parse_smi_csv(lines: list[tuple[int, str]]) -> Iterator[Fact]:
    fields: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    for n, line in lines:
        s = line.strip()
        m = re.search(r"--query-gpu[= ]([\w.,]+)", s)
        if m:
            fields = [f.strip() for f in m.group(1).split(",") if f.strip()]
            rows = []
            continue
        if fields is None and re.match(r"^(name|index|uuid|pci\.bus_id|driver_version|compute_cap)\s*,", s):
            fields = [re.sub(r"\s*\[.*?\]", "", f).strip() for f in s.split(",")]
            continue
        if fields is not None:
            if re.match(r"^(name|index|uuid|pci\.bus_id|driver_version|compute_cap)\s*,", s):
                fields = [re.sub(r"\s*\[.*?\]", "", f).strip() for f in s.split(",")]
                continue
            parts = [p.strip() for p in s.split(",")]
            if len(parts) == len(fields) and len(fields) > 1 or (len(fields) == 1 and s and "," not in s
                                                                   and s.startswith("NVIDIA")):
                rows.append((n, parts))
            elif rows:
                break
    if not fields or not rows:
        return
    driver = None
    for i, (n, parts) in enumerate(rows):
        raw = dict(zip(fields, parts, strict=False))
        g: dict[str, Any] = {}
        for f, v in raw.items():
            key = _CSV_FIELDS.get(f)
            if not key or v in ("[N/A]", "N/A", "[Not Supported]"):
                continue
            if key.endswith("_mib"):
                g[key] = to_int(v.split()[0])
            elif key == "driver_version":
                driver = (v, n)
            elif key == "pci_device_id":
                mm = re.match(r"0x([0-9A-Fa-f]{4})", v)
                if mm:
                    g[key] = "0x" + mm.group(1).lower()
            else:
                g[key] = v
        idx = to_int(g.pop("index", None)) if "index" in g else i
        name = g.pop("name", None)
        cc = g.pop("compute_capability", None)
        entry = gpu_entry(name, "nvidia-smi --query-gpu", compute_capability=cc)
        entry.update(g)
        yield Fact(f"gpu.{idx if idx is not None else i}", entry, f"nvidia-smi-csv:line {n}")
    yield Fact("gpu.count", len(rows), "nvidia-smi-csv")
    if driver:
        yield Fact("driver.version", driver[0], f"nvidia-smi-csv:line {driver[1]}")


def _topology(rows: list[str]) -> dict[str, Any] | None:
    header = rows[0].split()
    cols = [h for h in header if re.fullmatch(r"GPU\d+|NIC\d+", h)]
    links: dict[str, dict[str, str]] = {}
    kinds: set[str] = set()
    for row in rows[1:]:
        parts = row.split()
        if not parts or not re.fullmatch(r"GPU\d+", parts[0]):
            continue
        me = parts[0]
        for col, val in zip(cols, parts[1:1 + len(cols)], strict=False):
            if col == me or not col.startswith("GPU") or val == "X":
                continue
            links.setdefault(me, {})[col] = val
            kinds.add(val)
    if not links:
        return None
    nvlink = any(k.startswith("NV") for k in kinds)
    return {"links": links, "kinds": sorted(kinds), "nvlink": nvlink,
            "pcie_only": not nvlink and bool(kinds)}


def _env_facts(lines: Iterable[tuple[int, str]]) -> Iterator[Fact]:
    env: dict[str, str] = {}
    first_line = 0
    for n, line in lines:
        m = _ENV_LINE.match(line)
        if m and m.group(1).startswith(ENV_PREFIXES):
            env[m.group(1)] = m.group(2).strip()
            first_line = first_line or n
    if env:
        yield Fact("host.env", env, f"env-dump:line {first_line}")
        req = env.get("NVIDIA_REQUIRE_CUDA", "")
        m = re.search(r"cuda>=(\d+\.\d+)", req)
        if m:
            yield Fact("container.cuda_version", m.group(1), f"env-dump:line {first_line}")
        elif env.get("CUDA_VERSION"):
            v = short_version(env["CUDA_VERSION"])
            if v:
                yield Fact("container.cuda_version", v, f"env-dump:line {first_line}")


def detect_env_dump(ev: Evidence) -> bool:
    try:
        if re.search(r"\.env$|^\.env", ev.name or ""):
            return False  # .env files belong to the config parser
        head = _head(ev)
        hits = [m.group(1) for m in re.finditer(r"^\s*([A-Z][A-Z0-9_]{1,63})=\S", head, re.M)]
        relevant = [h for h in hits if h.startswith(ENV_PREFIXES)]
        if not relevant:
            return False
        if re.search(r"Environment Variables", head, re.I):
            return True
        nonblank = sum(1 for line in head.splitlines()[:2000] if line.strip())
        return len(relevant) >= 3 and len(hits) * 2 >= min(nonblank, 2000)
    except Exception:
        return False


def parse_env_dump(ev: Evidence) -> Iterator[Fact]:
    yield from _env_facts(_lines(ev, limit=100_000))


@hookimpl
def bwdoctor_parsers() -> list[ParserSpec]:
    return [
        ParserSpec(name="collect_env", func=_safe(parse_collect_env), detect=detect_collect_env, timeout=120.0,
                   provides=[],
                   doc="torch.utils.collect_env and vLLM collect_env output (old and sectioned layouts): torch, "
                       "CUDA, driver, GPUs, OS, Python, vLLM version and build archs, pip/conda packages, env vars, "
                       "GPU topology."),
        ParserSpec(name="nvidia-smi", func=_safe(parse_nvidia_smi), detect=detect_nvidia_smi, timeout=60.0,
                   doc="nvidia-smi table, nvidia-smi -q, --query-gpu CSV and topo -m: driver, CUDA driver API "
                       "version, GPUs (name, compute capability via the knowledge base, memory, MIG, processes), "
                       "link topology."),
        ParserSpec(name="packages", func=_safe(parse_packages), detect=detect_packages, timeout=60.0,
                   doc="pip list, pip freeze and conda list: the packages fact, plus torch, vllm, triton, "
                       "flashinfer and NCCL versions."),
        ParserSpec(name="env-dump", func=_safe(parse_env_dump), detect=detect_env_dump, timeout=60.0,
                   doc="KEY=VALUE environment listings (collect_env's Environment Variables section, `env` "
                       "output): host.env and the container's CUDA version."),
    ]
