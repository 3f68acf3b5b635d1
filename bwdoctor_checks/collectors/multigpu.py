"""Multi-GPU collectors: what tensor parallelism needs between GPUs.

* ``host.iommu`` (quick): IOMMU state from ``/sys/kernel/iommu_groups`` and the kernel command line
  (``intel_iommu=``/``amd_iommu=``/``iommu=pt``): ``{"groups": n, "enabled": bool, "passthrough":
  bool|None, "cmdline": [...]}``.
* ``host.pci_acs`` (quick): the PCIe bridges above each NVIDIA GPU (from the ``/sys/bus/pci``
  device path) and their ACS control bits, read from the extended configuration space
  (``/sys/bus/pci/devices/*/config``; beyond 256 bytes only root can read it, which is then said):
  ``{"bridges": [{"bdf", "gpus": [...], "acs": {"source_validation", "request_redirect",
  "completion_redirect", "upstream_forwarding", "egress_control", "direct_translated"} | null,
  "readable": bool}], "gpus": [bdf, ...]}``.
* ``nccl.libraries`` (quick): every ``libnccl.so*`` the dynamic loader would consider before the
  wheel's own copy (``LD_PRELOAD``, ``LD_LIBRARY_PATH``) and the system copies the loader cache
  knows, each with the version string inside the library.
* ``probe.p2p`` and ``probe.allreduce`` (``--level full``, two GPUs or more): the peer access
  matrix with a verified peer copy and its bandwidth per ordered pair, and NCCL all-reduce bus
  bandwidth from 1 MiB to 1 GiB, measured through the installed torch in a child process group that
  is killed at its deadline (the size it was at is kept, so a hang becomes a named finding).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bwdoctor import CollectorSpec, Fact, RunOptions, Unavailable, hookimpl
from bwdoctor_checks._lib import mgpuprobe
from bwdoctor_checks._lib.nccl import nccl_version_from_library
from bwdoctor_checks._lib.torchprobe import gpu_lock, run_child

P2P_TIMEOUT = 120.0
ALLREDUCE_TIMEOUT = 240.0
MARGIN = 10.0
SYS = "/"  # root of /sys and /proc; recorded trees in tests replace it

NVIDIA_VENDOR = "0x10de"
_BDF = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
ACS_CAP_ID = 0x000D
# ACS Control register bits (PCIe Base Specification, "ACS Extended Capability").
ACS_BITS = {"source_validation": 0, "translation_blocking": 1, "request_redirect": 2, "completion_redirect": 3,
            "upstream_forwarding": 4, "egress_control": 5, "direct_translated": 6}


def _root(options: RunOptions | None) -> Path:
    return Path(str((options.extra.get("sys_root") if options else None) or SYS))


def _read(path: Path, limit: int = 65536) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return None


# ------------------------------------------------------------------------------ IOMMU


def iommu_state(root: Path) -> dict[str, Any]:
    groups_dir = root / "sys" / "kernel" / "iommu_groups"
    try:
        groups = sum(1 for _ in groups_dir.iterdir())
    except OSError:
        groups = 0
    cmdline = (_read(root / "proc" / "cmdline") or "").split()
    flags = [w for w in cmdline if w.split("=")[0] in ("iommu", "intel_iommu", "amd_iommu", "iommu.passthrough")]
    passthrough: bool | None = None
    for w in flags:
        if w in ("iommu=pt", "iommu.passthrough=1") or w.endswith("=pt"):
            passthrough = True
        elif w in ("iommu.passthrough=0", "iommu=nopt"):
            passthrough = False
    off = any(w in ("intel_iommu=off", "amd_iommu=off", "iommu=off") for w in flags)
    return {"groups": groups, "enabled": groups > 0 and not off, "passthrough": passthrough, "cmdline": flags}


# ------------------------------------------------------------------------------ PCIe ACS


def _ext_caps(config: bytes) -> dict[int, int]:
    """Offsets of the PCIe extended capabilities in a configuration space dump (id -> offset)."""
    caps: dict[int, int] = {}
    off = 0x100
    seen = set()
    while 0x100 <= off <= len(config) - 4 and off not in seen:
        seen.add(off)
        header = int.from_bytes(config[off:off + 4], "little")
        if header in (0, 0xFFFFFFFF):
            break
        caps.setdefault(header & 0xFFFF, off)
        off = (header >> 20) & 0xFFC
    return caps


def acs_control(config: bytes) -> dict[str, bool] | None:
    """The ACS control bits of a bridge (None when it has no ACS capability)."""
    off = _ext_caps(config).get(ACS_CAP_ID)
    if off is None or off + 8 > len(config):
        return None
    ctrl = int.from_bytes(config[off + 6:off + 8], "little")
    return {name: bool(ctrl >> bit & 1) for name, bit in ACS_BITS.items()}


def nvidia_gpus(root: Path) -> list[str]:
    out: list[str] = []
    base = root / "sys" / "bus" / "pci" / "devices"
    try:
        entries = sorted(p.name for p in base.iterdir())
    except OSError:
        return out
    for bdf in entries:
        vendor = (_read(base / bdf / "vendor") or "").strip()
        cls = (_read(base / bdf / "class") or "").strip()
        if vendor == NVIDIA_VENDOR and cls[:6] in ("0x0300", "0x0302"):
            out.append(bdf)
    return out


def upstream_bridges(root: Path, bdf: str) -> list[str]:
    """The PCI bridges between a device and its root complex, nearest first."""
    link = root / "sys" / "bus" / "pci" / "devices" / bdf
    try:
        target = os.readlink(link)
    except OSError:
        return []
    parts = [p for p in target.split("/") if _BDF.match(p)]
    return list(reversed(parts[:-1]))


def pci_acs(root: Path) -> dict[str, Any]:
    gpus = nvidia_gpus(root)
    bridges: dict[str, dict[str, Any]] = {}
    for gpu in gpus:
        for br in upstream_bridges(root, gpu):
            entry = bridges.setdefault(br, {"bdf": br, "gpus": []})
            entry["gpus"].append(gpu)
    for br, entry in bridges.items():
        try:
            with open(root / "sys" / "bus" / "pci" / "devices" / br / "config", "rb") as fh:
                config = fh.read(4096)
        except OSError:
            config = b""
        entry["readable"] = len(config) > 0x100
        entry["acs"] = acs_control(config) if entry["readable"] else None
    return {"gpus": gpus, "bridges": sorted(bridges.values(), key=lambda b: b["bdf"])}


def collect_pcie(options: RunOptions) -> list[Fact]:
    root = _root(options)
    facts = [Fact("host.iommu", iommu_state(root), "/sys/kernel/iommu_groups, /proc/cmdline")]
    acs = pci_acs(root)
    if acs["gpus"]:
        facts.append(Fact("host.pci_acs", acs, "/sys/bus/pci/devices/*/config"))
    return facts


# ------------------------------------------------------------------------------ NCCL libraries


def _ldconfig_nccl() -> list[str]:
    exe = shutil.which("ldconfig") or ("/sbin/ldconfig" if os.path.exists("/sbin/ldconfig") else None)
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-p"], capture_output=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    paths = []
    for line in out[:4 << 20].decode("utf-8", errors="replace").splitlines():
        if "libnccl.so" in line and "=>" in line:
            paths.append(line.split("=>", 1)[1].strip())
    return paths


def nccl_libraries(environ: dict[str, str], cache_paths: list[str]) -> dict[str, Any]:
    def entry(path: str, origin: str) -> dict[str, Any]:
        real = os.path.realpath(path)
        return {"path": path, "origin": origin, "version": nccl_version_from_library(Path(real))}

    libs = []
    for item in re.split(r"[:\s]+", environ.get("LD_PRELOAD", "")):
        if "libnccl" in os.path.basename(item) and os.path.isfile(item):
            libs.append(entry(item, "LD_PRELOAD"))
    for d in environ.get("LD_LIBRARY_PATH", "").split(":"):
        if not d:
            continue
        try:
            names = sorted(n for n in os.listdir(d) if n.startswith("libnccl.so"))
        except OSError:
            continue
        if names:
            libs.append(entry(os.path.join(d, names[0]), "LD_LIBRARY_PATH"))
    seen = {os.path.realpath(lib["path"]) for lib in libs}
    for p in cache_paths:
        if os.path.realpath(p) not in seen and os.path.isfile(p):
            seen.add(os.path.realpath(p))
            libs.append(entry(p, "ld.so.cache"))
    return {"libraries": libs}


def collect_nccl_libraries(options: RunOptions) -> list[Fact]:
    return [Fact("nccl.libraries", nccl_libraries(dict(os.environ), _ldconfig_nccl()),
                 "LD_PRELOAD, LD_LIBRARY_PATH, ldconfig -p")]


# ------------------------------------------------------------------------------ probes


def _python(options: RunOptions) -> str:
    return str(options.extra.get("torch_python") or os.environ.get("BWDOCTOR_TORCH_PYTHON") or sys.executable)


OFF_REASON = "the multi-GPU probes run at --level full on a machine with two or more GPUs"


def _enabled(options: RunOptions) -> bool:
    """At --level full, unless the GPU count is known to be below two."""
    if options.level != "full":
        return False
    count = options.extra.get("gpu_count")
    return not isinstance(count, int) or count >= 2


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # torch's index i is NVML's gpu.<i>
    return env


def run_probe(mode: str, args: dict[str, Any], timeout: float, python: str) -> tuple[dict[str, Any], bool, int | None]:
    with tempfile.TemporaryDirectory(prefix=f"bwdoctor-{mode}-") as workdir:
        run = run_child(python, mode, args, timeout, workdir, env=_child_env(), script_source=mgpuprobe.__file__)
    return run.result or {}, run.timed_out, run.returncode


def p2p_fact(res: dict[str, Any], timed_out: bool, rc: int | None, timeout: float, python: str) -> list[Fact]:
    if not res.get("pairs") and not timed_out:
        if res.get("error") and "No module named 'torch'" in str(res.get("error")):
            raise Unavailable(f"PyTorch is not installed in {python}")
        if res.get("device_count", 2) < 2:
            raise Unavailable(f"{res.get('device_count')} GPU visible to torch: no pair to measure")
        if res.get("error"):
            raise Unavailable(f"the peer-to-peer probe could not run: {res['error']}")
    value = {"device_count": res.get("device_count"), "pairs": res.get("pairs") or [], "torch": res.get("torch"),
             "timed_out": timed_out, "stage": res.get("stage"), "deadline_s": timeout, "returncode": rc}
    return [Fact("probe.p2p", value, f"probe:{os.path.basename(python)}")]


def allreduce_fact(res: dict[str, Any], timed_out: bool, rc: int | None, timeout: float,
                   python: str) -> list[Fact]:
    if not res.get("sizes") and not timed_out and res.get("error"):
        err = str(res["error"])
        if "No module named 'torch'" in err:
            raise Unavailable(f"PyTorch is not installed in {python}")
        if "needs at least two" in err:
            raise Unavailable(err)
    value = {k: res.get(k) for k in ("backend", "world_size", "sizes", "nccl_version", "error", "stage", "torch")}
    value.update({"ok": bool(res.get("ok")) and not timed_out, "timed_out": timed_out, "deadline_s": timeout,
                  "returncode": rc})
    return [Fact("probe.allreduce", value, f"probe:{os.path.basename(python)}")]


def collect_p2p(options: RunOptions) -> list[Fact]:
    python = _python(options)
    args = {k: options.extra[f"mgpu_{k}"] for k in ("copy_bytes", "trials") if options.extra.get(f"mgpu_{k}")}
    with gpu_lock(30.0) as waited:
        res, timed_out, rc = run_probe("p2p", args, P2P_TIMEOUT - waited, python)
    return p2p_fact(res, timed_out, rc, P2P_TIMEOUT, python)


def collect_allreduce(options: RunOptions) -> list[Fact]:
    python = _python(options)
    args = {k: options.extra[f"mgpu_{k}"] for k in ("sizes", "trials", "backend", "device", "world_size",
                                                    "hang_rank", "hang_at_bytes") if options.extra.get(f"mgpu_{k}")
            is not None}
    timeout = float(options.extra.get("mgpu_timeout") or ALLREDUCE_TIMEOUT)
    with gpu_lock(30.0) as waited:
        res, timed_out, rc = run_probe("allreduce", args, timeout - waited, python)
    return allreduce_fact(res, timed_out, rc, timeout, python)


@hookimpl
def bwdoctor_collectors() -> list[CollectorSpec]:
    return [
        CollectorSpec(name="pcie-iommu-acs", func=collect_pcie, timeout=5.0, provides=["host.iommu", "host.pci_acs"],
                      doc="IOMMU state (/sys/kernel/iommu_groups, kernel command line) and the ACS control bits of "
                          "the PCIe bridges above each NVIDIA GPU (extended configuration space; root only)."),
        CollectorSpec(name="nccl-libraries", func=collect_nccl_libraries, timeout=10.0, provides=["nccl.libraries"],
                      doc="libnccl copies in LD_PRELOAD, LD_LIBRARY_PATH and the loader cache, with the version "
                          "string inside each: a system NCCL found before the wheel's own."),
        CollectorSpec(name="probe-p2p", func=collect_p2p, isolate=True, level="full", timeout=P2P_TIMEOUT + MARGIN,
                      enabled=_enabled, off_reason=OFF_REASON, provides=["probe.p2p"],
                      doc="Peer access matrix (torch.cuda.can_device_access_peer) and a verified, timed peer copy "
                          "for every ordered pair of GPUs, in a child process killed at its deadline."),
        CollectorSpec(name="probe-allreduce", func=collect_allreduce, isolate=True, level="full",
                      timeout=ALLREDUCE_TIMEOUT + MARGIN, enabled=_enabled, off_reason=OFF_REASON,
                      provides=["probe.allreduce"],
                      doc="NCCL all-reduce bus bandwidth from 1 MiB to 1 GiB, one process per GPU "
                          "(torch.distributed); a hang ends at the deadline with the size it was at."),
    ]
