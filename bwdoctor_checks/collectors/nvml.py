"""NVML collector: driver, GPUs, links, clocks, health, MIG, processes and topology.

Facts produced (source ``nvml``):

- ``nvml.status``: ``{"ok": true}`` or, when NVML is present but cannot start (driver/library
  version mismatch, kernel driver not loaded, no permission), ``{"ok": false, "error":
  "NVMLError_LibRmVersionMismatch", "message": ...}`` and no GPU facts.
- ``nvml.version`` ("13.580.159.04"), ``driver.version`` ("580.159.04"), ``driver.cuda_version``
  ("13.0", from ``nvmlSystemGetCudaDriverVersion_v2``), ``gpu.count``.
- ``gpu.<i>``: one dict per GPU (see docs/plugin-guide.md): ``name``, ``uuid``, ``pci_device_id``
  ("0x2330"), ``pci_bus_id``, ``compute_capability`` ("9.0"), ``arch``, memory, ``pcie``,
  ``nvlink`` (list of per-link dicts), ``clocks``, ``clock_event_reasons``, ``power``,
  ``temperature``, ``persistence_mode``, ``compute_mode``, ``mig``, ``ecc``, ``remapped_rows``,
  ``retired_pages``, ``recovery_action``, ``fabric``, ``processes``. A field NVML answers "not
  supported" for is ``Unsupported("NVMLError_NotSupported")``. A GPU that fails with
  ``NVMLError_GpuIsLost`` is recorded with ``error`` and ``lost: true``; the other GPUs are
  unaffected.
- ``gpu.topology`` (several GPUs): per pair, the common PCIe ancestor and P2P read/write/NVLink
  status.

When ``libnvidia-ml.so.1`` cannot be loaded at all (no driver installed) or nvidia-ml-py is not
installed, the collector raises ``Unavailable`` so that GPU checks are skipped with that reason.

The translation from NVML answers to facts (:func:`build_facts`) takes a *query* object. The live
run passes :class:`LiveQuery` (pynvml); tests pass :class:`ReplayQuery` built from a recorded
capture (``ReplayQuery.from_capture``), so both go through the same code.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys
import time
from collections.abc import Iterable
from typing import Any

from bwdoctor import CollectorSpec, Fact, Missing, RunOptions, Unavailable, Unsupported, hookimpl, resolve
from bwdoctor_checks._lib.gpuutil import (
    ARCHITECTURES,
    CLOCK_EVENT_REASONS,
    COMPUTE_MODES,
    FABRIC_STATES,
    P2P_STATUS,
    RECOVERY_ACTIONS,
    TOPOLOGY,
    VIRTUALIZATION,
    decode_clock_reasons,
)

SOURCE = "nvml"
MAX_NVLINKS = 36  # NVML_NVLINK_MAX_LINKS in the NVML 13 header
CLOCK_TYPES = {"graphics": 0, "sm": 1, "memory": 2, "video": 3}
# Errors that end the collection for one device (the others go on).
FATAL_DEVICE_ERRORS = ("NVMLError_GpuIsLost", "NVMLError_ResetRequired", "NVMLError_GpuNotFound")
# nvmlInit errors that mean "NVML is installed but unusable": reported as a fact, not Unavailable.
INIT_ERROR_MESSAGES = {
    "NVMLError_LibRmVersionMismatch": "NVML: Driver/library version mismatch: the loaded NVIDIA kernel module and "
                                      "the user-space driver libraries are different versions (typically after a "
                                      "driver upgrade without reboot, or stale libraries in a container image)",
    "NVMLError_DriverNotLoaded": "NVML: the NVIDIA kernel driver is not loaded (nvidia.ko); libnvidia-ml.so.1 is "
                                 "installed but the driver is not running",
    "NVMLError_NoPermission": "NVML: no permission to access the GPU device files (/dev/nvidia*)",
    "NVMLError_Unknown": "NVML: unknown error during initialisation",
}


class NvmlCallError(Exception):
    """One NVML call failed; ``name`` is pynvml's error class name (``NVMLError_NotSupported``)."""

    def __init__(self, name: str, message: str = "") -> None:
        super().__init__(f"{name}: {message}" if message else name)
        self.name = name
        self.message = message


# ------------------------------------------------------------------------------------ queries


def _plain(value: Any) -> Any:
    """ctypes structures/arrays/bytes from pynvml -> JSON types."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").rstrip("\x00")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    fields = getattr(value, "_fields_", None)
    if fields is not None:
        return {name: _plain(getattr(value, name)) for name, *_ in fields}
    try:  # ctypes arrays
        return [_plain(v) for v in value]
    except TypeError:
        return str(value)


class LiveQuery:
    """Answers queries from the real driver through nvidia-ml-py (``import pynvml``)."""

    def __init__(self) -> None:
        try:
            import pynvml  # noqa: PLC0415 - imported only in the collector's child process
        except ImportError as exc:
            raise Unavailable(f"nvidia-ml-py is not installed ({exc})") from exc
        self.nv = pynvml
        self._handles: dict[int, Any] = {}
        self.timings: dict[str, float] = {}

    def _err(self, exc: Exception) -> NvmlCallError:
        name = type(exc).__name__
        if not name.startswith("NVMLError"):
            name = f"{type(exc).__name__}"
        return NvmlCallError(name, str(exc))

    def init(self) -> None:
        t = time.perf_counter()
        try:
            self.nv.nvmlInit()
        except self.nv.NVMLError as exc:
            raise self._err(exc) from None
        finally:
            self.timings["init_s"] = round(time.perf_counter() - t, 4)

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self.nv.nvmlShutdown()

    def system(self, fn: str, *args: Any) -> Any:
        try:
            return _plain(getattr(self.nv, fn)(*args))
        except self.nv.NVMLError as exc:
            raise self._err(exc) from None
        except AttributeError:
            raise NvmlCallError("NVMLError_FunctionNotFound", f"{fn} is not in this nvidia-ml-py") from None

    def device_count(self) -> int:
        return int(self.system("nvmlDeviceGetCount"))

    def _handle(self, i: int) -> Any:
        if i not in self._handles:
            try:
                self._handles[i] = self.nv.nvmlDeviceGetHandleByIndex(i)
            except self.nv.NVMLError as exc:
                raise self._err(exc) from None
        return self._handles[i]

    def device(self, i: int, fn: str, *args: Any) -> Any:
        h = self._handle(i)
        try:
            if fn == "GpuRecoveryAction":
                return self._recovery_action(h)
            if fn == "GpuFabricInfo":
                return self._fabric(h)
            if fn == "MigDevices":
                return self._mig_devices(h)
            if fn == "Processes":
                return self._processes(h)
            if fn == "nvmlDeviceGetRetiredPages":
                return len(self.nv.nvmlDeviceGetRetiredPages(h, *args))
            func = getattr(self.nv, fn, None)
            if func is None:
                raise NvmlCallError("NVMLError_FunctionNotFound", f"{fn} is not in this nvidia-ml-py")
            return _plain(func(h, *args))
        except self.nv.NVMLError as exc:
            raise self._err(exc) from None

    def pair(self, i: int, j: int, fn: str, *args: Any) -> Any:
        a, b = self._handle(i), self._handle(j)
        try:
            return _plain(getattr(self.nv, fn)(a, b, *args))
        except self.nv.NVMLError as exc:
            raise self._err(exc) from None

    # -- composite queries
    def _recovery_action(self, h: Any) -> int:
        direct = getattr(self.nv, "nvmlDeviceGetGpuRecoveryAction", None)
        if direct is not None:
            return int(direct(h))
        field = getattr(self.nv, "NVML_FI_DEV_GET_GPU_RECOVERY_ACTION", None)
        if field is None:
            raise NvmlCallError("NVMLError_FunctionNotFound", "no GPU recovery action query in this nvidia-ml-py")
        vals = self.nv.nvmlDeviceGetFieldValues(h, [field])
        ret = int(vals[0].nvmlReturn)
        if ret != 0:
            raise self._err(self.nv.NVMLError(ret))
        return int(vals[0].value.uiVal)

    def _fabric(self, h: Any) -> dict[str, Any]:
        info_v = getattr(self.nv, "c_nvmlGpuFabricInfoV_t", None)
        if info_v is not None and hasattr(self.nv, "nvmlDeviceGetGpuFabricInfoV"):
            info = info_v()
            info.version = getattr(self.nv, "nvmlGpuFabricInfo_v2", 0)
            try:
                # pynvml passes the structure through as given: it must be a pointer
                self.nv.nvmlDeviceGetGpuFabricInfoV(h, ctypes.byref(info))
                return {"state": int(info.state), "status": int(info.status), "clique_id": int(info.cliqueId),
                        "health_mask": int(info.healthMask)}
            except self.nv.NVMLError as exc:
                if type(exc).__name__ not in ("NVMLError_FunctionNotFound", "NVMLError_ArgumentVersionMismatch"):
                    raise
        info = self.nv.c_nvmlGpuFabricInfo_t()
        self.nv.nvmlDeviceGetGpuFabricInfo(h, ctypes.byref(info))
        return {"state": int(info.state), "status": int(info.status), "clique_id": int(info.cliqueId)}

    def _mig_devices(self, h: Any) -> list[dict[str, Any]]:
        out = []
        count = int(self.nv.nvmlDeviceGetMaxMigDeviceCount(h))
        for k in range(count):
            try:
                m = self.nv.nvmlDeviceGetMigDeviceHandleByIndex(h, k)
            except self.nv.NVMLError:
                continue
            entry: dict[str, Any] = {"index": k}
            for key, fn in (("uuid", "nvmlDeviceGetUUID"), ("name", "nvmlDeviceGetName")):
                try:
                    entry[key] = _plain(getattr(self.nv, fn)(m))
                except self.nv.NVMLError as exc:
                    entry[key] = {"error": type(exc).__name__}
            with contextlib.suppress(self.nv.NVMLError):
                entry["memory_total_mib"] = int(self.nv.nvmlDeviceGetMemoryInfo(m).total) >> 20
            out.append(entry)
        return out

    def _processes(self, h: Any) -> list[dict[str, Any]]:
        procs: dict[int, dict[str, Any]] = {}
        got_any = False
        errors = []
        for kind, fn in (("compute", "nvmlDeviceGetComputeRunningProcesses"),
                         ("graphics", "nvmlDeviceGetGraphicsRunningProcesses")):
            try:
                items = getattr(self.nv, fn)(h)
            except self.nv.NVMLError as exc:
                errors.append(exc)
                continue
            got_any = True
            for p in items:
                pid = int(p.pid)
                used = p.usedGpuMemory
                entry = procs.setdefault(pid, {"pid": pid, "type": kind, "used_bytes": None})
                if used is not None and int(used) < (1 << 62):
                    entry["used_bytes"] = int(used)
                if entry["type"] != kind:
                    entry["type"] = "compute+graphics"
        if not got_any and errors:
            raise errors[0]
        for entry in procs.values():
            entry["name"] = self._process_name(entry["pid"])
        return list(procs.values())

    def _process_name(self, pid: int) -> str | None:
        with contextlib.suppress(Exception):
            return _plain(self.nv.nvmlSystemGetProcessName(pid)) or None
        try:
            with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as fh:
                return fh.read().strip() or None
        except OSError:
            return None


class ReplayQuery:
    """Answers queries from a recorded capture. Format (what :class:`RecordingQuery` writes)::

        {"init_error": null | {"error": "NVMLError_...", "msg": ...},
         "system": {"nvmlSystemGetDriverVersion": "580.159.04", ...},
         "devices": [{"nvmlDeviceGetName": "...", "nvmlDeviceGetClockInfo(1)": 345, ...}, ...],
         "pairs": {"0,1": {"nvmlDeviceGetTopologyCommonAncestor": 40, "nvmlDeviceGetP2PStatus(0)": 0}}}

    A recorded ``{"error": "NVMLError_X", "msg": ...}`` is raised as that error; a query that was
    not recorded raises ``NotRecorded``.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.timings: dict[str, float] = {}

    @staticmethod
    def _key(fn: str, args: tuple) -> str:
        return f"{fn}({','.join(str(a) for a in args)})" if args else fn

    @staticmethod
    def _answer(table: dict[str, Any], key: str) -> Any:
        if key not in table:
            raise NvmlCallError("NotRecorded", f"{key} was not recorded in this capture")
        val = table[key]
        if isinstance(val, dict) and set(val) <= {"error", "msg"} and "error" in val:
            raise NvmlCallError(str(val["error"]), str(val.get("msg") or ""))
        return val

    def init(self) -> None:
        err = self.data.get("init_error")
        if err:
            raise NvmlCallError(str(err.get("error")), str(err.get("msg") or ""))

    def shutdown(self) -> None:
        return None

    def system(self, fn: str, *args: Any) -> Any:
        return self._answer(self.data.get("system") or {}, self._key(fn, args))

    def device_count(self) -> int:
        if "nvmlDeviceGetCount" in (self.data.get("system") or {}):
            return int(self.system("nvmlDeviceGetCount"))
        return len(self.data.get("devices") or [])

    def device(self, i: int, fn: str, *args: Any) -> Any:
        devs = self.data.get("devices") or []
        if i >= len(devs):
            raise NvmlCallError("NVMLError_InvalidArgument", f"no device {i}")
        dev = devs[i]
        if isinstance(dev, dict) and "__error__" in dev:  # every call on this device fails
            raise NvmlCallError(str(dev["__error__"]), str(dev.get("msg") or ""))
        return self._answer(dev, self._key(fn, args))

    def pair(self, i: int, j: int, fn: str, *args: Any) -> Any:
        pairs = self.data.get("pairs") or {}
        return self._answer(pairs.get(f"{i},{j}") or {}, self._key(fn, args))

    @classmethod
    def from_capture(cls, capture: dict[str, Any]) -> ReplayQuery:
        """Accept this module's recording format, or the flat capture format used by the
        repository's H100 fixture (``{"driver", "cuda_driver_version", "nvml_version", "devices":
        [{"nvmlDeviceGetName": ..., "clocks": {...}, "nvlink_state": {...}}]}``)."""
        if "system" in capture or "init_error" in capture:
            return cls(capture)
        system = {}
        if "driver" in capture:
            system["nvmlSystemGetDriverVersion"] = capture["driver"]
        if "cuda_driver_version" in capture:
            system["nvmlSystemGetCudaDriverVersion_v2"] = capture["cuda_driver_version"]
        if "nvml_version" in capture:
            system["nvmlSystemGetNVMLVersion"] = capture["nvml_version"]
        devices = []
        for raw in capture.get("devices") or []:
            dev: dict[str, Any] = {}
            for k, v in raw.items():
                if k == "clocks" and isinstance(v, dict):
                    for cname, vals in v.items():
                        ctype = CLOCK_TYPES.get({"mem": "memory"}.get(cname) or cname)
                        if ctype is None or not isinstance(vals, dict):
                            continue
                        for short, fn in (("cur", "nvmlDeviceGetClockInfo"), ("max", "nvmlDeviceGetMaxClockInfo"),
                                          ("app", "nvmlDeviceGetApplicationsClock")):
                            if short in vals:
                                dev[f"{fn}({ctype})"] = vals[short]
                elif k == "nvlink_state" and isinstance(v, dict):
                    for link, state in v.items():
                        dev[f"nvmlDeviceGetNvLinkState({link})"] = state
                elif k == "nvmlDeviceGetTemperature":
                    dev["nvmlDeviceGetTemperature(0)"] = v
                elif k == "nvmlDeviceGetComputeRunningProcesses":
                    dev["Processes"] = [{"pid": p.get("pid"), "used_bytes": p.get("usedGpuMemory"), "type": "compute",
                                         "name": p.get("name")} for p in v if isinstance(p, dict)] \
                        if isinstance(v, list) else v
                else:
                    dev[k] = v
            devices.append(dev)
        system["nvmlDeviceGetCount"] = len(devices)
        return cls({"system": system, "devices": devices, "pairs": {}})


class RecordingQuery:
    """Wraps a query and records every answer in :class:`ReplayQuery`'s format."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.data: dict[str, Any] = {"init_error": None, "system": {}, "devices": [], "pairs": {}}

    @property
    def timings(self) -> dict[str, float]:
        return getattr(self.inner, "timings", {})

    def _rec(self, table: dict[str, Any], key: str, call: Any) -> Any:
        try:
            val = call()
        except NvmlCallError as exc:
            table[key] = {"error": exc.name, "msg": exc.message}
            raise
        table[key] = val
        return val

    def init(self) -> None:
        try:
            self.inner.init()
        except NvmlCallError as exc:
            self.data["init_error"] = {"error": exc.name, "msg": exc.message}
            raise

    def shutdown(self) -> None:
        self.inner.shutdown()

    def system(self, fn: str, *args: Any) -> Any:
        return self._rec(self.data["system"], ReplayQuery._key(fn, args), lambda: self.inner.system(fn, *args))

    def device_count(self) -> int:
        return self._rec(self.data["system"], "nvmlDeviceGetCount", self.inner.device_count)

    def device(self, i: int, fn: str, *args: Any) -> Any:
        while len(self.data["devices"]) <= i:
            self.data["devices"].append({})
        return self._rec(self.data["devices"][i], ReplayQuery._key(fn, args), lambda: self.inner.device(i, fn, *args))

    def pair(self, i: int, j: int, fn: str, *args: Any) -> Any:
        table = self.data["pairs"].setdefault(f"{i},{j}", {})
        return self._rec(table, ReplayQuery._key(fn, args), lambda: self.inner.pair(i, j, fn, *args))


# ------------------------------------------------------------------------------------ translation


class _DeviceGone(Exception):
    def __init__(self, err: NvmlCallError) -> None:
        super().__init__(err.name)
        self.err = err


def _unsupported(err: NvmlCallError) -> Unsupported:
    return Unsupported(err.name if err.name != "NotRecorded" else "not recorded in this capture")


class _Dev:
    """Per-device call helper: errors become Unsupported(name); fatal ones end the device."""

    def __init__(self, q: Any, i: int) -> None:
        self.q, self.i = q, i

    def get(self, fn: str, *args: Any) -> Any:
        try:
            return self.q.device(self.i, fn, *args)
        except NvmlCallError as err:
            if err.name in FATAL_DEVICE_ERRORS:
                raise _DeviceGone(err) from None
            return _unsupported(err)


def _ok(v: Any) -> bool:
    return not isinstance(v, Unsupported)


def _map(v: Any, table: dict[int, str]) -> Any:
    if not _ok(v):
        return v
    try:
        return table.get(int(v), f"unknown({v})")
    except (TypeError, ValueError):
        return Unsupported(f"unexpected value {v!r}")


def _mib(v: Any) -> Any:
    return int(v) >> 20 if isinstance(v, int) and not isinstance(v, bool) else v


def _pci_device_id(pci: Any) -> Any:
    if not isinstance(pci, dict) or not isinstance(pci.get("pciDeviceId"), int):
        return pci if not _ok(pci) else Unsupported("no PCI info")
    return f"0x{(pci['pciDeviceId'] >> 16) & 0xFFFF:04x}"


def _gpu_dict(q: Any, i: int) -> dict[str, Any]:
    d = _Dev(q, i)
    g: dict[str, Any] = {"index": i}
    g["name"] = d.get("nvmlDeviceGetName")
    g["uuid"] = d.get("nvmlDeviceGetUUID")
    pci = d.get("nvmlDeviceGetPciInfo")
    g["pci_device_id"] = _pci_device_id(pci)
    if isinstance(pci, dict):
        g["pci_bus_id"] = pci.get("busId") or pci.get("busIdLegacy")
        sub = pci.get("pciSubSystemId")
        g["pci_subsystem_id"] = f"0x{sub:08x}" if isinstance(sub, int) else None
    else:
        g["pci_bus_id"] = pci
    cc = d.get("nvmlDeviceGetCudaComputeCapability")
    g["compute_capability"] = resolve.cc(cc) or cc if isinstance(cc, (list, tuple)) else cc
    g["arch"] = _map(d.get("nvmlDeviceGetArchitecture"), ARCHITECTURES)
    g["brand"] = d.get("nvmlDeviceGetBrand")
    g["vbios"] = d.get("nvmlDeviceGetVbiosVersion")
    g["virtualization_mode"] = _map(d.get("nvmlDeviceGetVirtualizationMode"), VIRTUALIZATION)
    mem = d.get("nvmlDeviceGetMemoryInfo")
    if isinstance(mem, dict):
        g["memory_total_mib"] = _mib(mem.get("total"))
        g["memory_used_mib"] = _mib(mem.get("used"))
        g["memory_free_mib"] = _mib(mem.get("free"))
    else:
        g["memory_total_mib"] = g["memory_used_mib"] = g["memory_free_mib"] = mem
    g["pcie"] = {
        "gen_current": d.get("nvmlDeviceGetCurrPcieLinkGeneration"),
        "gen_max": d.get("nvmlDeviceGetMaxPcieLinkGeneration"),
        "gen_gpu_max": d.get("nvmlDeviceGetGpuMaxPcieLinkGeneration"),
        "width_current": d.get("nvmlDeviceGetCurrPcieLinkWidth"),
        "width_max": d.get("nvmlDeviceGetMaxPcieLinkWidth"),
        "speed_mbps": d.get("nvmlDeviceGetPcieSpeed"),
        "replay_counter": d.get("nvmlDeviceGetPcieReplayCounter"),
    }
    g["nvlink"] = _nvlinks(q, d)
    clocks = {}
    for cname, ctype in CLOCK_TYPES.items():
        clocks[cname] = {"current": d.get("nvmlDeviceGetClockInfo", ctype),
                         "max": d.get("nvmlDeviceGetMaxClockInfo", ctype),
                         "application": d.get("nvmlDeviceGetApplicationsClock", ctype)}
    g["clocks"] = clocks
    cur = d.get("nvmlDeviceGetCurrentClocksEventReasons")
    if not _ok(cur) and cur.reason == "NVMLError_FunctionNotFound":
        cur = d.get("nvmlDeviceGetCurrentClocksThrottleReasons")
    sup = d.get("nvmlDeviceGetSupportedClocksEventReasons")
    if not _ok(sup) and sup.reason == "NVMLError_FunctionNotFound":
        sup = d.get("nvmlDeviceGetSupportedClocksThrottleReasons")
    g["clock_event_reasons"] = {
        "active": cur, "supported": sup,
        "active_hex": f"{cur:#018x}" if isinstance(cur, int) else None,
        "active_names": decode_clock_reasons(cur) if isinstance(cur, int) else [],
    }
    g["performance_state"] = (f"P{d_ps}" if isinstance(d_ps := d.get("nvmlDeviceGetPerformanceState"), int)
                              else d_ps)

    def watts(v: Any) -> Any:
        return round(v / 1000.0, 1) if isinstance(v, (int, float)) and not isinstance(v, bool) else v

    g["power"] = {
        "draw_w": watts(d.get("nvmlDeviceGetPowerUsage")),
        "limit_w": watts(d.get("nvmlDeviceGetPowerManagementLimit")),
        "enforced_limit_w": watts(d.get("nvmlDeviceGetEnforcedPowerLimit")),
        "default_limit_w": watts(d.get("nvmlDeviceGetPowerManagementDefaultLimit")),
    }
    g["temperature"] = {
        "gpu_c": d.get("nvmlDeviceGetTemperature", 0),
        "slowdown_c": d.get("nvmlDeviceGetTemperatureThreshold", 1),
        "shutdown_c": d.get("nvmlDeviceGetTemperatureThreshold", 0),
        "gpu_max_c": d.get("nvmlDeviceGetTemperatureThreshold", 3),
    }
    pm = d.get("nvmlDeviceGetPersistenceMode")
    g["persistence_mode"] = bool(pm) if _ok(pm) else pm
    g["compute_mode"] = _map(d.get("nvmlDeviceGetComputeMode"), COMPUTE_MODES)
    mig = d.get("nvmlDeviceGetMigMode")
    if isinstance(mig, (list, tuple)) and len(mig) == 2:
        g["mig"] = {"current": bool(mig[0]), "pending": bool(mig[1])}
        if mig[0]:
            devs = d.get("MigDevices")
            g["mig"]["devices"] = devs
    else:
        g["mig"] = mig
    ecc = d.get("nvmlDeviceGetEccMode")
    if isinstance(ecc, (list, tuple)) and len(ecc) == 2:
        g["ecc"] = {"current": bool(ecc[0]), "pending": bool(ecc[1])}
        if ecc[0]:
            # nvmlDeviceGetTotalEccErrors(handle, errorType 0 corrected / 1 uncorrected, counter 0 volatile / 1 aggregate)
            g["ecc"].update({
                "volatile_corrected": d.get("nvmlDeviceGetTotalEccErrors", 0, 0),
                "volatile_uncorrected": d.get("nvmlDeviceGetTotalEccErrors", 1, 0),
                "aggregate_corrected": d.get("nvmlDeviceGetTotalEccErrors", 0, 1),
                "aggregate_uncorrected": d.get("nvmlDeviceGetTotalEccErrors", 1, 1),
            })
    else:
        g["ecc"] = ecc
    rows = d.get("nvmlDeviceGetRemappedRows")
    if isinstance(rows, (list, tuple)) and len(rows) == 4:
        g["remapped_rows"] = {"corrected": int(rows[0]), "uncorrected": int(rows[1]), "pending": bool(rows[2]),
                              "failure": bool(rows[3])}
    else:
        g["remapped_rows"] = rows
    rp_pending = d.get("nvmlDeviceGetRetiredPagesPendingStatus")
    if not _ok(rp_pending) and rp_pending.reason == "NVMLError_NotSupported":
        g["retired_pages"] = rp_pending
    else:
        g["retired_pages"] = {
            "pending": bool(rp_pending) if _ok(rp_pending) else rp_pending,
            "multiple_single_bit": d.get("nvmlDeviceGetRetiredPages", 0),
            "double_bit": d.get("nvmlDeviceGetRetiredPages", 1),
        }
    g["recovery_action"] = _map(d.get("GpuRecoveryAction"), RECOVERY_ACTIONS)
    fab = d.get("GpuFabricInfo")
    if isinstance(fab, dict):
        status = fab.get("status")
        state = fab.get("state")
        g["fabric"] = {"state": FABRIC_STATES.get(state, f"unknown({state})") if isinstance(state, int) else f"unknown({state})",
                       "status": status, "ok": status == 0, "clique_id": fab.get("clique_id"),
                       "health_mask": fab.get("health_mask")}
    else:
        g["fabric"] = fab
    procs = d.get("Processes")
    if isinstance(procs, list):
        out = []
        for p in procs:
            if not isinstance(p, dict):
                continue
            used = p.get("used_bytes")
            out.append({"pid": p.get("pid"), "name": p.get("name"), "type": p.get("type"),
                        "used_mib": int(used) >> 20 if isinstance(used, int) else None})
        g["processes"] = out
    else:
        g["processes"] = procs
    g["utilization"] = d.get("nvmlDeviceGetUtilizationRates")
    return g


def _nvlinks(q: Any, d: _Dev) -> Any:
    links = []
    first_err: Unsupported | None = None
    for link in range(MAX_NVLINKS):
        state = d.get("nvmlDeviceGetNvLinkState", link)
        if not _ok(state) and state.reason in ("NVMLError_InvalidArgument", "not recorded in this capture"):
            break  # past the last link of this GPU
        if not _ok(state):
            first_err = first_err or state
            links.append({"link": link, "state": state})
            if link == 0 and state.reason == "NVMLError_NotSupported":
                break  # NVLink not supported on this device (PCIe-only card or hidden by virtualisation)
            continue
        entry: dict[str, Any] = {"link": link, "state": "up" if state else "down"}
        if state:
            remote = d.get("nvmlDeviceGetNvLinkRemotePciInfo", link)
            entry["remote_pci_bus_id"] = remote.get("busId") if isinstance(remote, dict) else remote
            entry["remote_pci_device_id"] = _pci_device_id(remote) if isinstance(remote, dict) else remote
            ver = d.get("nvmlDeviceGetNvLinkVersion", link)
            entry["version"] = ver
        links.append(entry)
    if not links:
        return first_err or Unsupported("NVMLError_NotSupported")
    if all(not _ok(x["state"]) for x in links):
        return links[0]["state"]  # every link unsupported: NVLink absent (or hidden by virtualisation)
    return links


def _topology(q: Any, count: int) -> dict[str, Any]:
    pairs = []
    for i in range(count):
        for j in range(i + 1, count):
            entry: dict[str, Any] = {"a": i, "b": j}
            try:
                entry["common_ancestor"] = TOPOLOGY.get(q.pair(i, j, "nvmlDeviceGetTopologyCommonAncestor"), "unknown")
            except NvmlCallError as err:
                entry["common_ancestor"] = _unsupported(err)
            p2p: dict[str, Any] = {}
            for name, idx in (("read", 0), ("write", 1), ("nvlink", 2), ("atomics", 3)):
                try:
                    p2p[name] = P2P_STATUS.get(q.pair(i, j, "nvmlDeviceGetP2PStatus", idx), "unknown")
                except NvmlCallError as err:
                    p2p[name] = _unsupported(err)
            entry["p2p"] = p2p
            pairs.append(entry)
    return {"pairs": pairs}


def _cuda_version(v: Any) -> Any:
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v // 1000}.{(v % 1000) // 10}"
    return v


def build_facts(q: Any, source: str = SOURCE) -> list[Any]:
    """Translate NVML answers (live or replayed) into facts. Raises Unavailable when NVML itself
    is absent; returns an ``nvml.status`` failure fact when NVML is present but cannot start."""
    t0 = time.perf_counter()
    try:
        q.init()
    except NvmlCallError as err:
        if err.name == "NVMLError_LibraryNotFound":
            raise Unavailable("no NVIDIA driver: libnvidia-ml.so.1 not found") from None
        msg = INIT_ERROR_MESSAGES.get(err.name, f"NVML could not initialise: {err.name}")
        detail = f" ({err.message})" if err.message else ""
        return [Fact("nvml.status", {"ok": False, "error": err.name, "message": msg + detail}, source),
                Missing("gpu.*", msg + detail)]
    facts: list[Any] = []
    try:
        def sysq(fn: str) -> Any:
            try:
                return q.system(fn)
            except NvmlCallError as err:
                return _unsupported(err)

        facts.append(Fact("driver.version", sysq("nvmlSystemGetDriverVersion"), source))
        facts.append(Fact("driver.cuda_version", _cuda_version(sysq("nvmlSystemGetCudaDriverVersion_v2")), source))
        facts.append(Fact("nvml.version", sysq("nvmlSystemGetNVMLVersion"), source))
        try:
            count = int(q.device_count())
        except NvmlCallError as err:
            facts.append(Fact("nvml.status", {"ok": False, "error": err.name,
                                              "message": f"NVML could not count GPUs: {err.name} {err.message}"},
                              source))
            return facts
        facts.append(Fact("gpu.count", count, source))
        lost = []
        for i in range(count):
            try:
                g = _gpu_dict(q, i)
            except _DeviceGone as gone:
                lost.append(i)
                g = {"index": i, "error": gone.err.name, "lost": True,
                     "message": f"GPU {i}: {gone.err.name} {gone.err.message}".strip()}
            except NvmlCallError as err:  # handle lookup failed
                if err.name in FATAL_DEVICE_ERRORS:
                    lost.append(i)
                g = {"index": i, "error": err.name, "lost": err.name in FATAL_DEVICE_ERRORS,
                     "message": f"GPU {i}: {err.name} {err.message}".strip()}
            facts.append(Fact(f"gpu.{i}", g, source))
        if count > 1:
            healthy = count - len(lost)
            if healthy > 1:
                facts.append(Fact("gpu.topology", _topology(q, count), source))
        status: dict[str, Any] = {"ok": True, "lost_gpus": lost}
        timings = dict(getattr(q, "timings", {}) or {})
        timings["collect_s"] = round(time.perf_counter() - t0, 4)
        status["timings"] = timings
        facts.append(Fact("nvml.status", status, source))
    finally:
        q.shutdown()
    return facts


# ------------------------------------------------------------------------------------ collector


def _driver_library_loads() -> bool:
    """Whether the driver's NVML library can be loaded (the name nvidia-ml-py loads on Linux)."""
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def collect_nvml(options: RunOptions) -> list[Any]:
    """The collector: runs in a child process (driver calls can hang)."""
    if sys.platform.startswith("linux") and not _driver_library_loads():
        # what NVML's own init would say, without importing nvidia-ml-py (~0.1 s) to learn it
        raise Unavailable("no NVIDIA driver: libnvidia-ml.so.1 not found")
    query: Any = LiveQuery()
    record = os.environ.get("BWDOCTOR_NVML_RECORD")
    if record:
        query = RecordingQuery(query)
    facts = build_facts(query)
    if record and isinstance(query, RecordingQuery):
        with contextlib.suppress(OSError):
            with open(record, "w", encoding="utf-8") as fh:
                json.dump(query.data, fh, indent=1, default=str)
    return facts


def replay_facts(capture: dict[str, Any], source: str = SOURCE) -> list[Fact]:
    """Facts from a recorded capture, through the same translation as the live collector."""
    return build_facts(ReplayQuery.from_capture(capture), source)


def nvml_capture_facts(path: str) -> Iterable[Fact]:
    with open(path, encoding="utf-8") as fh:
        return replay_facts(json.load(fh), source=f"nvml-capture:{os.path.basename(path)}")


@hookimpl
def bwdoctor_collectors() -> list[CollectorSpec]:
    return [CollectorSpec(
        name="nvml", func=collect_nvml, provides=["driver.*", "gpu.*", "nvml.*"], level="quick", isolate=True,
        timeout=8.0,
        doc="Reads the NVIDIA driver through NVML (nvidia-ml-py) in a child process killed after 8 s: driver and "
            "CUDA driver API version, and per GPU its identity, PCIe and NVLink links, clocks and clock event "
            "reasons, power, temperature, persistence/compute/MIG modes, ECC and row remapping, recovery action, "
            "fabric state, processes holding memory, and P2P/topology between GPUs. Set BWDOCTOR_NVML_RECORD=FILE "
            "to save every NVML answer for replay.",
    )]


__all__ = ["CLOCK_EVENT_REASONS", "LiveQuery", "NvmlCallError", "RecordingQuery", "ReplayQuery", "build_facts",
           "collect_nvml", "replay_facts"]
