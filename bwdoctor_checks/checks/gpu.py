"""GPU, driver and link checks (pure functions of the snapshot).

Consumes: ``nvml.status``, ``driver.version``, ``driver.cuda_version``, ``driver.kernel_module``,
``gpu.count``, ``gpu.<i>``, ``gpu.topology``, ``target``, ``torch``, ``vllm``, ``packages``,
``host.env``, ``vllm.config``. Produces no facts.

A check that judges "the GPU" looks at every ``gpu.<i>`` and, when there are none and it only
needs the compute capability or the SKU, at ``target`` (``--target``).
"""

from __future__ import annotations

from typing import Any

from bwdoctor import CheckSpec, Outcome, Snapshot, failed, hookimpl, kb, known, passed, resolve, skipped, warned
from bwdoctor_checks._lib.gpuutil import (
    CLOCK_EVENT_REASONS,
    IDLE_BIT,
    SEVERE_REASON_BITS,
    TOPOLOGY_HELP,
    decode_clock_reasons,
)

# --------------------------------------------------------------------------------- helpers


def _subject(i: int | None) -> str:
    return "target" if i is None else f"gpu{i}"


def _ev(i: int | None) -> list[str]:
    return ["target"] if i is None else [f"gpu.{i}"]


def _gpu_label(i: int | None, g: dict[str, Any]) -> str:
    name = g.get("name") if known(g.get("name")) else "unknown GPU"
    return f"target {name}" if i is None else f"GPU {i} ({name})"


def _spec_for(g: dict[str, Any]) -> kb.GpuSpec | None:
    """The knowledge base's row for a ``gpu.<i>`` or ``target`` dict (:func:`bwdoctor.resolve.gpu_cc`)."""
    return resolve.gpu_cc(g)[1]


def _live_gpus(snap: Snapshot) -> list[tuple[int, dict[str, Any]]]:
    """GPUs that answered (lost ones are judged by BWD-GPU-002)."""
    return [(i, g) for i, g in snap.gpus() if not g.get("lost") and not g.get("error")]


def _judged(snap: Snapshot) -> list[tuple[int | None, dict[str, Any]]]:
    """The GPUs to judge (:func:`bwdoctor.resolve.judged_gpus`): every live ``gpu.<i>``, else the
    ``target`` (index None)."""
    return [(j.index, j.fact) for j in resolve.judged_gpus(snap, need_cc=False)]


def _cc(g: dict[str, Any]) -> str | None:
    return resolve.gpu_cc(g)[0]


def _idle(g: dict[str, Any]) -> bool:
    cer = g.get("clock_event_reasons")
    active = cer.get("active") if isinstance(cer, dict) else None
    if isinstance(active, int) and not isinstance(active, bool):
        return bool(active & IDLE_BIT)
    util = g.get("utilization")
    if isinstance(util, dict) and isinstance(util.get("gpu"), int):
        return util["gpu"] == 0
    return False


def _env(snap: Snapshot) -> dict[str, Any]:
    env: dict[str, Any] = {}
    for key in ("config.env", "host.env"):
        v = snap.value(key)
        if isinstance(v, dict):
            env.update({str(k): val for k, val in v.items()})
    return env


def _driver_cuda(snap: Snapshot) -> str | None:
    """The CUDA version the driver supports: ``driver.cuda_version``, else derived from
    ``driver.version`` with the toolkit/driver table."""
    v = snap.value("driver.cuda_version")
    if known(v) and kb.version_tuple(v):
        t = kb.version_tuple(v)
        return f"{t[0]}.{t[1] if len(t) > 1 else 0}"
    drv = snap.value("driver.version")
    if not known(drv) or not kb.version_tuple(drv):
        return None
    best = None
    for cuda, mind in kb.cuda_driver_table():
        if kb.driver_at_least(drv, mind):
            t = kb.version_tuple(cuda)
            if best is None or t > best:
                best = t
    return f"{best[0]}.{best[1]}" if best else None


# --------------------------------------------------------------------------------- BWD-DRV-001


def check_nvml_status(snap: Snapshot) -> Outcome:
    st = snap.value("nvml.status")
    if not isinstance(st, dict):
        return skipped("no NVML status recorded")
    if st.get("ok"):
        drv = snap.value("driver.version")
        km = snap.value("driver.kernel_module")
        kmv = km.get("version") if isinstance(km, dict) else None
        if known(drv) and kmv and str(kmv) != str(drv):
            return failed(f"the loaded kernel module is {kmv} but the NVML library is {drv}: user-space driver "
                          "libraries and kernel module disagree", ["driver.version", "driver.kernel_module"],
                          root_cause="driver_library_mismatch", remedies=["driver.reload"])
        return passed(f"NVML initialised (driver {drv})", ["nvml.status", "driver.version"])
    err = str(st.get("error") or "")
    msg = str(st.get("message") or err)
    if err == "NVMLError_NoPermission":
        return failed(msg, ["nvml.status"], root_cause="container_runtime", remedies=["container.toolkit"])
    return failed(msg, ["nvml.status"], root_cause="driver_library_mismatch", remedies=["driver.reload"],
                  confidence=1.0 if err == "NVMLError_LibRmVersionMismatch" else 0.8)


# --------------------------------------------------------------------------------- BWD-DRV-002


def check_driver_for_arch(snap: Snapshot) -> list[Outcome] | Outcome:
    drv = snap.value("driver.version")
    if not known(drv) or not kb.version_tuple(drv):
        return skipped("driver version unknown", ["driver.version"])
    gs = _judged(snap)
    if not gs:
        return skipped("no GPU facts and no --target")
    out = []
    for i, g in gs:
        cc = _cc(g)
        req = kb.arch_requirements(cc) if cc else None
        spec = _spec_for(g)
        label = _gpu_label(i, g)
        ev = ["driver.version", *_ev(i)]
        if req is None:
            out.append(skipped(f"{label}: compute capability {cc or 'unknown'} is not in the knowledge base; cannot "
                               f"judge driver {drv}", ev, subject=_subject(i)))
            continue
        floors = [(req.min_driver, f"{req.arch_name} ({req.sm})")]
        mig = g.get("mig")
        if spec and isinstance(mig, dict) and (mig.get("current") or mig.get("pending")):
            floors.extend((row["min_driver"], row["feature"]) for row in kb.feature_driver_floors("mig", spec))
        known_floors = [(f, w) for f, w in floors if f]
        pci = g.get("pci_device_id") if known(g.get("pci_device_id")) else None
        listed, listed_why = kb.driver_lists_gpu(drv, spec, pci)
        first = spec.first_listed_for(pci) if spec else None
        if not known_floors and listed is None:
            out.append(skipped(f"{label}: no minimum driver is known for {req.arch_name} ({req.sm})", ev,
                               subject=_subject(i)))
            continue
        below = [(f, w) for f, w in known_floors if not kb.driver_at_least(drv, f)]
        if listed is False and spec is not None:
            # a first-listed driver is not a numeric floor: the driver either predates it or is known not to list it
            need = max([first or "0", *(f for f, _ in known_floors)], key=kb.version_tuple)
            out.append(failed(f"{label}: driver {drv} does not list {spec.name} ({listed_why}); install a driver "
                              f"that lists it", ev, subject=_subject(i),
                              details={"required": need, "driver": drv, "first_listed_driver": first}))
        elif below:
            need, why = max(below, key=lambda fw: kb.version_tuple(fw[0]))
            out.append(failed(f"{label}: driver {drv} is older than {need}, the first driver that supports {why}",
                              ev, subject=_subject(i), details={"required": need, "driver": drv}))
        else:
            parts = [f"{drv} >= {f} for {w}" for f, w in known_floors]
            if listed and spec is not None:
                parts.append(f"{spec.name} {listed_why}")
            out.append(passed(f"{label}: driver " + "; ".join(parts), ev, subject=_subject(i)))
    return out


# --------------------------------------------------------------------------------- BWD-DRV-003


def _required_cuda(snap: Snapshot) -> list[tuple[str, str, str]]:
    """``[(cuda_version, what, fact_key)]`` the installed stack needs."""
    out = []
    torch = snap.value("torch")
    if isinstance(torch, dict) and torch.get("cuda") and kb.version_tuple(torch["cuda"]):
        out.append((str(torch["cuda"]), f"torch {torch.get('version') or ''} (CUDA {torch['cuda']})".replace("  ", " "),
                    "torch"))
    vllm = snap.value("vllm")
    if isinstance(vllm, dict) and isinstance(vllm.get("cuda_major"), int):
        out.append((f"{vllm['cuda_major']}.0", f"vLLM {vllm.get('version') or ''} (CUDA {vllm['cuda_major']} build)",
                    "vllm"))
    pkgs = snap.value("packages")
    if isinstance(pkgs, dict):
        for name in ("nvidia-cuda-runtime", "nvidia-cuda-runtime-cu13", "nvidia-cuda-runtime-cu12",
                     "nvidia-cuda-runtime-cu11"):
            info = pkgs.get(name)
            ver = info.get("version") if isinstance(info, dict) else None
            if ver and kb.version_tuple(ver):
                t = kb.version_tuple(ver)
                out.append((f"{t[0]}.{t[1] if len(t) > 1 else 0}", f"{name} {ver}", "packages"))
    return out


def check_driver_for_cuda(snap: Snapshot) -> list[Outcome] | Outcome:
    dcuda = _driver_cuda(snap)
    drv = snap.value("driver.version")
    if dcuda is None:
        return skipped("the driver's CUDA version is unknown", ["driver.version", "driver.cuda_version"])
    needs = _required_cuda(snap)
    if not needs:
        return skipped("no CUDA runtime found in torch, vLLM or the installed packages")
    dt = kb.version_tuple(dcuda)
    ev_drv = [k for k in ("driver.cuda_version", "driver.version") if snap.has(k)]
    out = []
    seen = set()
    for cuda, what, key in needs:
        if (cuda, what) in seen:
            continue
        seen.add((cuda, what))
        rt = kb.version_tuple(cuda)
        floor = kb.cuda_compat_min_driver(cuda)
        drv_label = f"driver {drv} (CUDA {dcuda})" if known(drv) else f"a driver that supports CUDA {dcuda}"
        if rt[0] > dt[0] or (known(drv) and floor and kb.driver_at_least(drv, floor) is False):
            need = kb.cuda_min_driver(cuda) or floor
            out.append(failed(f"{what} needs a driver for CUDA {cuda} (>= {floor} for CUDA {rt[0]}.x); this host has "
                              f"{drv_label}. Expect 'CUDA driver version is insufficient' / 'driver too old (found "
                              f"version {dt[0] * 1000 + (dt[1] if len(dt) > 1 else 0) * 10})'", [*ev_drv, key], subject=key,
                              details={"runtime_cuda": cuda, "driver_cuda": dcuda, "min_driver": need},
                              confidence=0.95))
        elif rt[:2] > dt[:2]:
            out.append(passed(f"{what} runs on {drv_label} through CUDA minor-version compatibility (PTX JIT of newer "
                              f"PTX would need driver {kb.cuda_min_driver(cuda)})", [*ev_drv, key], subject=key))
        else:
            out.append(passed(f"{what} is covered by {drv_label}", [*ev_drv, key], subject=key))
    return out


# --------------------------------------------------------------------------------- BWD-DRV-004


def _compat_in_use(snap: Snapshot) -> list[str]:
    why = []
    env = _env(snap)
    ld = str(env.get("LD_LIBRARY_PATH") or "")
    for part in ld.split(":"):
        if "compat" in part.lower() and ("cuda" in part.lower() or part.rstrip("/").endswith("compat")):
            why.append(f"LD_LIBRARY_PATH contains {part}")
    if str(env.get("VLLM_ENABLE_CUDA_COMPATIBILITY", "")).strip().lower() in ("1", "true", "yes"):
        why.append("VLLM_ENABLE_CUDA_COMPATIBILITY is set")
    pkgs = snap.value("packages")
    if isinstance(pkgs, dict):
        for name in pkgs:
            if name.startswith("cuda-compat"):
                why.append(f"package {name} is installed")
    return why


def check_forward_compat(snap: Snapshot) -> list[Outcome] | Outcome:
    why = _compat_in_use(snap)
    ev = [k for k in ("host.env", "config.env", "packages") if snap.has(k)]
    if not why:
        return passed("the CUDA forward-compatibility package is not in use", ev)
    gs = _judged(snap)
    if not gs:
        return skipped("forward compatibility is in use but no GPU is known to judge it: " + "; ".join(why))
    out = []
    for i, g in gs:
        spec = _spec_for(g)
        label = _gpu_label(i, g)
        ok = kb.forward_compat_supported(spec) if spec else None
        if ok is False:
            out.append(failed(f"{label} cannot use the CUDA forward-compatibility libraries ({'; '.join(why)}): only "
                              "data-centre GPUs can; CUDA fails with error 804 'forward compatibility was attempted "
                              "on non supported HW'. Remove the compat libraries and upgrade the host driver",
                              [*ev, *_ev(i)], subject=_subject(i), confidence=0.9))
        elif ok is None:
            out.append(warned(f"{label}: forward compatibility is in use ({'; '.join(why)}) and whether this GPU "
                              "supports it is not known; error 804 means it does not", [*ev, *_ev(i)],
                              subject=_subject(i), confidence=0.5))
        else:
            out.append(passed(f"{label} is a data-centre GPU: forward compatibility ({'; '.join(why)}) is supported",
                              [*ev, *_ev(i)], subject=_subject(i)))
    return out


# --------------------------------------------------------------------------------- BWD-GPU-001


def check_recognised(snap: Snapshot) -> list[Outcome] | Outcome:
    gs = _judged(snap)
    if not gs:
        return skipped("no GPU facts and no --target")
    out = []
    for i, g in gs:
        spec = _spec_for(g)
        label = _gpu_label(i, g)
        cc = _cc(g)
        if spec is None and i is None:
            out.append(passed(f"{label} names an architecture, not a GPU model: judged by compute capability "
                              f"{cc or 'unknown'}", _ev(i), subject=_subject(i)))
            continue
        if spec is None:
            out.append(warned(f"{label} (PCI {g.get('pci_device_id')}) is not in the knowledge base; it is judged by "
                              f"its compute capability {cc or 'unknown'} only", _ev(i), subject=_subject(i),
                              severity="low", root_cause=None, remedies=[]))
            continue
        link = (f"NVLink {spec.nvlink_bandwidth_gbs:g} GB/s" if spec.has_nvlink and spec.nvlink_bandwidth_gbs
                else "no NVLink")
        pcie = f"PCIe {spec.pcie_gen}.0 x{spec.pcie_lanes}" if spec.pcie_gen else spec.form_factor
        details = {"kb": spec.key, "compute_capability": spec.compute_capability, "memory_type": spec.memory_type,
                   "memory_gib": spec.memory_gib, "memory_bandwidth_gbs": spec.memory_bandwidth_gbs,
                   "nvlink": spec.nvlink, "fp8": spec.fp8, "fp4": spec.fp4}
        if cc and cc != spec.compute_capability:
            out.append(warned(f"{label}: NVML reports compute capability {cc}, the knowledge base says "
                              f"{spec.compute_capability} for {spec.name}", _ev(i), subject=_subject(i),
                              severity="low", root_cause=None, remedies=[], details=details))
            continue
        mem = " ".join(x for x in (f"{spec.memory_gib:g} GB" if spec.memory_gib else "", spec.memory_type or "",
                                   f"{spec.memory_bandwidth_gbs:g} GB/s" if spec.memory_bandwidth_gbs else "") if x)
        out.append(passed(f"{label}: {spec.name}, CC {spec.compute_capability} ({spec.arch}), {mem or 'memory ?'}, "
                          f"{link}, {pcie}, FP8 "
                          f"{'yes' if spec.fp8 else 'no'}, FP4 {'yes' if spec.fp4 else 'no'}", _ev(i),
                          subject=_subject(i), details=details))
    return out


# --------------------------------------------------------------------------------- BWD-GPU-002


def check_lost(snap: Snapshot) -> list[Outcome] | Outcome:
    gpus = snap.gpus()
    if not gpus:
        return skipped("no GPU facts")
    out = []
    for i, g in gpus:
        if g.get("lost") or g.get("error"):
            out.append(failed(f"GPU {i} does not answer: {g.get('message') or g.get('error')}. "
                              "A lost GPU (Xid 79, fell off the bus) needs a reset or a reboot",
                              [f"gpu.{i}"], subject=_subject(i), confidence=1.0))
    if not out:
        guessed = snap.meta.get("guessed") or {}
        if all(f"gpu.{i}" in guessed for i, _ in gpus):  # a GPU named in prose says nothing about its state
            return skipped("the GPU is only named in prose: whether it answers is not known")
        return passed(f"all {len(gpus)} GPU(s) answer NVML", [f"gpu.{i}" for i, _ in gpus])
    return out


# --------------------------------------------------------------------------------- BWD-GPU-003


def check_pcie(snap: Snapshot) -> list[Outcome] | Outcome:
    out = []
    for i, g in _live_gpus(snap):
        p = g.get("pcie")
        if not isinstance(p, dict):
            continue
        label = _gpu_label(i, g)
        spec = _spec_for(g)
        gc, gm, ggm = p.get("gen_current"), p.get("gen_max"), p.get("gen_gpu_max")
        wc, wm = p.get("width_current"), p.get("width_max")
        if not (isinstance(gc, int) and isinstance(gm, int) and isinstance(wc, int) and isinstance(wm, int)):
            out.append(skipped(f"{label}: PCIe link not reported", _ev(i), subject=_subject(i)))
            continue
        problems, notes = [], []
        if wc < wm:
            problems.append(f"link width x{wc} below the x{wm} the GPU and slot support")
        if spec and spec.pcie_lanes and wm < spec.pcie_lanes:
            problems.append(f"slot/system allows only x{wm} for a x{spec.pcie_lanes} GPU")
        if isinstance(ggm, int) and gm < ggm:
            problems.append(f"slot/system limits the link to Gen{gm} (the GPU supports Gen{ggm})")
        if gc < gm:
            if _idle(g):
                notes.append(f"Gen{gc} while idle (max Gen{gm}): links down-train at idle to save power; "
                             "check under load")
            else:
                problems.append(f"link at Gen{gc} below Gen{gm} while the GPU is busy")
        desc = f"PCIe Gen{gc} x{wc} (max Gen{gm} x{wm})"
        if problems:
            out.append(warned(f"{label}: {desc}: " + "; ".join(problems) + ". Reseat the card, check the slot's "
                              "wiring/bifurcation and BIOS link settings", _ev(i), subject=_subject(i),
                              details={"pcie": p}))
        else:
            out.append(passed(f"{label}: {desc}" + (f" ({'; '.join(notes)})" if notes else ""), _ev(i),
                              subject=_subject(i)))
    return out or skipped("no GPU facts")


# --------------------------------------------------------------------------------- BWD-GPU-004


def check_nvlink(snap: Snapshot) -> list[Outcome] | Outcome:
    live = _live_gpus(snap)
    count = len(live)
    out = []
    for i, g in live:
        label = _gpu_label(i, g)
        spec = _spec_for(g)
        links = g.get("nvlink")
        if spec is not None and not spec.has_nvlink:
            out.append(passed(f"{label}: {spec.name} has no NVLink; GPUs exchange data over PCIe "
                              f"{spec.pcie_gen or ''}.0 x{spec.pcie_lanes or ''}".replace(" .0 x", " "), _ev(i),
                              subject=_subject(i)))
            continue
        if links is None:
            out.append(skipped(f"{label}: the NVLink state is not in the facts (evidence without NVLink "
                               f"information)", _ev(i), subject=_subject(i)))
            continue
        if not isinstance(links, list):
            if spec is not None and spec.has_nvlink and not spec.nvlink_bridge and count > 1:
                out.append(warned(f"{label}: NVML does not report NVLink ({getattr(links, 'reason', links)}) although "
                                  f"{spec.name} has NVLink; multi-GPU traffic may fall back to PCIe", _ev(i),
                                  subject=_subject(i)))
            else:
                why = "single GPU" if count <= 1 else "no NVLink reported"
                vm = g.get("virtualization_mode")
                extra = f", virtualisation {vm}" if known(vm) and vm not in ("none",) else ""
                out.append(passed(f"{label}: NVLink not reported by NVML ({why}{extra})", _ev(i), subject=_subject(i)))
            continue
        up = [x["link"] for x in links if x.get("state") == "up"]
        down = [x["link"] for x in links if x.get("state") == "down"]
        if up and down:
            out.append(failed(f"{label}: NVLink degraded: links {down} down, {len(up)} up", _ev(i),
                              subject=_subject(i), details={"up": up, "down": down}))
        elif down and not up:
            bridge = spec.nvlink_bridge if spec else False
            if count > 1 and not bridge:
                out.append(failed(f"{label}: all {len(down)} NVLinks are down on a multi-GPU NVLink system", _ev(i),
                                  subject=_subject(i), details={"down": down}))
            else:
                why = "no NVLink bridge installed" if bridge else "single GPU visible"
                out.append(passed(f"{label}: NVLinks inactive ({why})", _ev(i), subject=_subject(i)))
        else:
            bw = f" ({spec.nvlink_bandwidth_gbs:g} GB/s per GPU)" if spec and spec.nvlink_bandwidth_gbs else ""
            out.append(passed(f"{label}: {len(up)} NVLinks up{bw}", _ev(i), subject=_subject(i)))
    if not out:
        gs = _judged(snap)
        if gs and gs[0][0] is None:
            spec = _spec_for(gs[0][1])
            if spec:
                what = (f"NVLink {spec.nvlink_bandwidth_gbs:g} GB/s" if spec.has_nvlink and spec.nvlink_bandwidth_gbs
                        else f"no NVLink (PCIe {spec.pcie_gen}.0 x{spec.pcie_lanes})")
                return passed(f"target {spec.name}: {what}", ["target"], subject="target")
        return skipped("no GPU facts")
    topo = snap.value("gpu.topology")
    if isinstance(topo, dict):
        for pair in topo.get("pairs") or []:
            anc = pair.get("common_ancestor")
            p2p = pair.get("p2p") or {}
            if p2p.get("read") not in (None, "ok") and known(p2p.get("read")):
                out.append(passed(f"GPU {pair.get('a')} <-> GPU {pair.get('b')}: P2P {p2p.get('read')} "
                                  f"(connected via {TOPOLOGY_HELP.get(str(anc), anc)}); NCCL uses host memory",
                                  ["gpu.topology"], subject=f"gpu{pair.get('a')}-gpu{pair.get('b')}"))
    return out


# --------------------------------------------------------------------------------- BWD-GPU-005


def check_clock_reasons(snap: Snapshot) -> list[Outcome] | Outcome:
    out = []
    for i, g in _live_gpus(snap):
        cer: dict[str, Any] = g["clock_event_reasons"] if isinstance(g.get("clock_event_reasons"), dict) else {}
        active = cer.get("active")
        label = _gpu_label(i, g)
        if not isinstance(active, int) or isinstance(active, bool):
            out.append(skipped(f"{label}: clock event reasons not reported", _ev(i), subject=_subject(i)))
            continue
        names = decode_clock_reasons(active)
        costly = [(b, CLOCK_EVENT_REASONS[b]) for b in sorted(CLOCK_EVENT_REASONS)
                  if active & b and CLOCK_EVENT_REASONS[b][2]]
        temp: dict[str, Any] = g["temperature"] if isinstance(g.get("temperature"), dict) else {}
        tinfo = f" at {temp.get('gpu_c')} C" if isinstance(temp.get("gpu_c"), int) else ""
        power: dict[str, Any] = g["power"] if isinstance(g.get("power"), dict) else {}
        pinfo = (f", {power.get('draw_w')} W of {power.get('enforced_limit_w')} W"
                 if isinstance(power.get("draw_w"), (int, float)) and isinstance(power.get("enforced_limit_w"),
                                                                                  (int, float)) else "")
        if not costly:
            state = "clocks not throttled (the GPU is idle)" if active & IDLE_BIT else "clocks not throttled"
            out.append(passed(f"{label}: {state}", _ev(i), subject=_subject(i),
                              details={"active": active, "active_hex": cer.get("active_hex") or hex(active)}))
            continue
        text = "; ".join(f"{n} ({meaning})" for _, (n, meaning, _c) in costly)
        msg = f"{label}: clocks limited{tinfo}{pinfo}: {text}"
        if active & SEVERE_REASON_BITS:
            out.append(failed(msg + ". Check cooling, airflow, power cables and PSU", _ev(i), subject=_subject(i),
                              details={"active": active, "names": names}))
        else:
            out.append(warned(msg, _ev(i), subject=_subject(i), details={"active": active, "names": names},
                              severity="low" if active & 0x4 and not active & ~0x5 else "medium"))
    return out or skipped("no GPU facts")


# --------------------------------------------------------------------------------- BWD-GPU-006


def check_persistence(snap: Snapshot) -> list[Outcome] | Outcome:
    out = []
    for i, g in _live_gpus(snap):
        pm = g.get("persistence_mode")
        label = _gpu_label(i, g)
        if pm is True:
            out.append(passed(f"{label}: persistence mode on", _ev(i), subject=_subject(i)))
        elif pm is False:
            out.append(warned(f"{label}: persistence mode off: the driver tears the GPU down when no process uses "
                              "it, so every start pays initialisation (seconds) and settings reset",
                              _ev(i), subject=_subject(i), severity="low"))
        else:
            out.append(skipped(f"{label}: persistence mode not reported ({getattr(pm, 'reason', pm)})", _ev(i),
                               subject=_subject(i)))
    return out or skipped("no GPU facts")


# --------------------------------------------------------------------------------- BWD-GPU-007


def check_memory_health(snap: Snapshot) -> list[Outcome] | Outcome:
    out = []
    for i, g in _live_gpus(snap):
        label = _gpu_label(i, g)
        fails, warns = [], []
        rr = g.get("remapped_rows")
        if isinstance(rr, dict):
            if rr.get("failure"):
                fails.append("row remapping failed (RMA candidate)")
            if rr.get("pending"):
                fails.append("a row remap is pending: reset the GPU to activate it")
            if isinstance(rr.get("uncorrected"), int) and rr["uncorrected"] > 0:
                warns.append(f"{rr['uncorrected']} rows remapped after uncorrectable errors")
        ecc = g.get("ecc")
        if isinstance(ecc, dict):
            vu, au = ecc.get("volatile_uncorrected"), ecc.get("aggregate_uncorrected")
            if isinstance(vu, int) and vu > 0:
                fails.append(f"{vu} uncorrectable ECC errors since the last driver load")
            elif isinstance(au, int) and au > 0:
                warns.append(f"{au} uncorrectable ECC errors over the GPU's lifetime")
        rp = g.get("retired_pages")
        if isinstance(rp, dict):
            if rp.get("pending") is True:
                fails.append("retired pages pending: reset the GPU")
            db = rp.get("double_bit")
            if isinstance(db, int) and db > 0:
                warns.append(f"{db} pages retired for double-bit errors")
        ra = g.get("recovery_action")
        if known(ra) and ra not in ("none",):
            fails.append(f"the driver asks for recovery action '{ra}'")
        ev = _ev(i)
        if fails:
            out.append(failed(f"{label}: " + "; ".join(fails + warns), ev, subject=_subject(i), confidence=1.0))
        elif warns:
            out.append(warned(f"{label}: " + "; ".join(warns), ev, subject=_subject(i)))
        elif not any(isinstance(x, dict) for x in (rr, ecc, rp)) and not known(ra):
            out.append(skipped(f"{label}: no memory-health counters reported", ev, subject=_subject(i)))
        else:
            out.append(passed(f"{label}: no uncorrectable memory errors, pending remaps or recovery actions", ev,
                              subject=_subject(i)))
    return out or skipped("no GPU facts")


# --------------------------------------------------------------------------------- BWD-GPU-008


def check_mig(snap: Snapshot) -> list[Outcome] | Outcome:
    env = _env(snap)
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    cvd_items = [x.strip() for x in str(cvd).split(",") if x.strip()] if cvd is not None else []
    mig_items = [x for x in cvd_items if x.startswith("MIG-")]
    mig_gpus = [(i, g) for i, g in _live_gpus(snap) if isinstance(g.get("mig"), dict) and g["mig"].get("current")]
    pending = [(i, g) for i, g in _live_gpus(snap) if isinstance(g.get("mig"), dict)
               and bool(g["mig"].get("pending")) != bool(g["mig"].get("current"))]
    cfg = snap.value("vllm.config")
    tp = cfg.get("tensor_parallel_size") if isinstance(cfg, dict) else None
    ev = [k for k in ("host.env", "config.env", "vllm.config") if snap.has(k)]
    out = []
    for i, g in pending:
        out.append(warned(f"{_gpu_label(i, g)}: MIG mode change pending (current "
                          f"{'on' if g['mig'].get('current') else 'off'}); it takes effect after a GPU reset",
                          _ev(i), subject=_subject(i)))
    if not mig_gpus and not mig_items:
        # "not enabled" only where a GPU's MIG mode is known (NVML, nvidia-smi); never from silence
        known_mode = [(i, g) for i, g in _live_gpus(snap) if isinstance(g.get("mig"), dict)]
        mig_settings = sorted(k for k, v in env.items() if k.upper().startswith("MIG") or "MIG-" in str(v))
        if known_mode and not mig_settings:
            out.append(passed(f"MIG is not enabled on GPU {', '.join(str(i) for i, _ in known_mode)}",
                              [*ev, *[f"gpu.{i}" for i, _ in known_mode]]))
        elif mig_settings:
            out.append(skipped(f"{', '.join(mig_settings)} set, but no GPU facts show whether MIG is on",
                               ev))
        return out or skipped("no GPU facts show the MIG mode")
    gev = [f"gpu.{i}" for i, _ in mig_gpus]
    guide = ("each process can use exactly one MIG device: set CUDA_VISIBLE_DEVICES to one MIG UUID "
             "(nvidia-smi -L) per vLLM instance; tensor parallelism across MIG slices is not supported")
    slices = []
    for _, g in mig_gpus:
        devs = g["mig"].get("devices")
        if isinstance(devs, list):
            slices += [d.get("uuid") for d in devs if isinstance(d, dict) and isinstance(d.get("uuid"), str)]
    if len(mig_items) > 1:
        out.append(failed(f"CUDA_VISIBLE_DEVICES lists {len(mig_items)} MIG devices; {guide}", [*ev, *gev],
                          details={"mig_devices": mig_items}))
    elif mig_items and len(mig_items) < len(cvd_items):
        out.append(failed(f"CUDA_VISIBLE_DEVICES mixes a MIG device with whole GPUs; {guide}", [*ev, *gev]))
    elif mig_gpus and not mig_items:
        state = "is not set" if cvd is None else f"is {cvd!r} (no MIG UUID)"
        out.append(failed(f"MIG is enabled on {len(mig_gpus)} GPU(s) ({len(slices)} instance(s)) and "
                          f"CUDA_VISIBLE_DEVICES {state}; {guide}", [*ev, *gev], details={"mig_instances": slices}))
    elif isinstance(tp, int) and tp > 1:
        out.append(failed(f"vLLM is configured with tensor_parallel_size={tp} on a MIG slice; {guide}",
                          [*ev, *gev]))
    else:
        where = mig_items[0]
        if slices and where not in slices:
            out.append(warned(f"CUDA_VISIBLE_DEVICES names {where}, which is not one of this host's MIG instances "
                              f"({', '.join(s for s in slices if s)})", [*ev, *gev]))
        else:
            out.append(passed(f"one MIG device selected ({where}); {guide}", [*ev, *gev]))
    return out


# --------------------------------------------------------------------------------- BWD-GPU-009


OTHER_MEMORY_MIB = 1024


def check_memory_contention(snap: Snapshot) -> list[Outcome] | Outcome:
    out = []
    for i, g in _live_gpus(snap):
        label = _gpu_label(i, g)
        used, total = g.get("memory_used_mib"), g.get("memory_total_mib")
        procs: list[Any] = g["processes"] if isinstance(g.get("processes"), list) else []
        if not isinstance(used, int) or not isinstance(total, int) or total <= 0:
            out.append(skipped(f"{label}: memory use not reported", _ev(i), subject=_subject(i)))
            continue
        who = ", ".join(f"{p.get('name') or 'pid'} (pid {p.get('pid')}, {p.get('used_mib')} MiB)"
                        for p in procs[:6]) or "processes not visible from here (another container?)"
        pct = 100.0 * used / total
        # NVML's "used" includes memory the driver reserves (~0.5 GiB on an idle H100); scale with the card.
        if used > max(OTHER_MEMORY_MIB, 0.02 * total):
            out.append(warned(f"{label}: {used} MiB of {total} MiB ({pct:.0f}%) already in use by {who}. vLLM sizes "
                              "its KV cache from --gpu-memory-utilization of the total and fails at start ('Free "
                              "memory on device ... is less than desired GPU memory utilization') when others hold "
                              "memory", _ev(i), subject=_subject(i), details={"used_mib": used, "total_mib": total,
                                                                              "processes": procs}))
        else:
            out.append(passed(f"{label}: {used} MiB of {total} MiB in use", _ev(i), subject=_subject(i)))
    return out or skipped("no GPU facts")


# --------------------------------------------------------------------------------- BWD-GPU-010


def check_fabric_manager(snap: Snapshot) -> list[Outcome] | Outcome:
    live = _live_gpus(snap)
    if not live:
        return skipped("no GPU facts")
    bad, unknown, ok = [], [], []
    for i, g in live:
        fab = g.get("fabric")
        if isinstance(fab, dict):
            if fab.get("state") == "not_supported":
                continue
            if fab.get("state") != "completed" or fab.get("status") not in (0, None):
                bad.append((i, g, fab))
            else:
                ok.append(i)
        else:
            spec = _spec_for(g)
            if spec and spec.has_nvlink and spec.form_factor == "sxm":
                unknown.append(i)
    if bad:
        i, g, fab = bad[0]
        return failed(f"{len(bad)} GPU(s) have not joined the NVLink fabric (GPU {i}: state {fab.get('state')}, "
                      f"status {fab.get('status')}): on NVSwitch systems the NVIDIA Fabric Manager (nvidia-fabricmanager,"
                      " same version as the driver) must run, else CUDA fails with error 802 'system not yet "
                      "initialized'", [f"gpu.{j}" for j, _, _ in bad], confidence=0.9)
    if ok:
        return passed(f"{len(ok)} GPU(s) report a completed NVLink fabric registration", [f"gpu.{j}" for j in ok])
    if unknown and len(live) >= 4:
        return skipped(f"{len(unknown)} SXM GPUs with NVLink but no fabric state reported (needs Hopper or newer "
                       "and a recent driver); check `systemctl status nvidia-fabricmanager`")
    return passed("no NVSwitch fabric to manage (single GPU, PCIe or not reported)",
                  [f"gpu.{i}" for i, _ in live])


# --------------------------------------------------------------------------------- BWD-GPU-011


def check_compute_mode(snap: Snapshot) -> list[Outcome] | Outcome:
    out = []
    for i, g in _live_gpus(snap):
        mode = g.get("compute_mode")
        label = _gpu_label(i, g)
        if mode == "prohibited":
            out.append(failed(f"{label}: compute mode is Prohibited: no process can create a CUDA context",
                              _ev(i), subject=_subject(i), confidence=1.0))
        elif mode in ("exclusive_process", "exclusive_thread"):
            out.append(warned(f"{label}: compute mode {mode}: only one process may use the GPU, so a second vLLM "
                              "instance or a profiling helper fails with 'all CUDA-capable devices are busy'",
                              _ev(i), subject=_subject(i), severity="low"))
        elif known(mode):
            out.append(passed(f"{label}: compute mode {mode}", _ev(i), subject=_subject(i)))
    return out or skipped("no GPU facts")


# --------------------------------------------------------------------------------- registration

_GPU_TARGET = ["gpu.*", "target"]


@hookimpl
def bwdoctor_checks() -> list[CheckSpec]:
    return [
        CheckSpec(
            id="BWD-DRV-001", title="NVIDIA driver answers NVML", func=check_nvml_status, needs=["nvml.status"],
            tags=["gpu", "driver"], root_cause="driver_library_mismatch", remedies=["driver.reload"], confidence=0.9,
            doc="Checks that NVML (libnvidia-ml.so.1) initialises and that its version matches the loaded kernel "
                "module (/proc/driver/nvidia/version). 'Driver/library version mismatch' means the kernel module and "
                "the user-space libraries are different driver versions, usually after a driver upgrade without a "
                "reboot or stale libraries baked into an image; every CUDA program then fails. A kernel driver that "
                "is not loaded fails the same way. Fix: reboot (or unload and reload the nvidia modules), or "
                "reinstall one consistent driver; no permission to /dev/nvidia* points at the container runtime."),
        CheckSpec(
            id="BWD-DRV-002", title="Driver is new enough for the GPU architecture", func=check_driver_for_arch,
            needs=["driver.version"], needs_any=_GPU_TARGET, tags=["gpu", "driver", "blackwell"],
            root_cause="driver_too_old_for_cuda", remedies=["driver.upgrade"], confidence=0.95,
            doc="Compares the driver with the first driver that lists each GPU (open-gpu-kernel-modules README): "
                "Blackwell needs R570+ (B200 570.86.15, RTX 50 570.86.16, RTX PRO 6000 Workstation/Max-Q "
                "570.123.07, Server Edition 575.57.08, B300/GB300 580.82.07, GB10 580.94.13) and MIG on RTX PRO "
                "Blackwell needs 575.51.03. An older driver does not see the GPU or fails at CUDA init. Older "
                "architectures are judged against the CUDA 12 floor (525.60.13). Works on the live GPUs or on "
                "--target. Fix: install a driver from the R580 (LTSB) branch or newer."),
        CheckSpec(
            id="BWD-DRV-003", title="Driver supports the CUDA runtime of torch and vLLM", func=check_driver_for_cuda,
            needs_any=["driver.cuda_version", "driver.version"], tags=["driver", "cuda"],
            root_cause="driver_too_old_for_cuda", remedies=["driver.upgrade", "torch.reinstall-cuda-variant"],
            confidence=0.95,
            doc="Compares the CUDA version the driver supports (NVML's CUDA driver version, or derived from the "
                "driver version) with the CUDA runtime that torch (torch.version.cuda), vLLM (its CUDA major) and "
                "the nvidia-cuda-runtime wheels need. A CUDA 13 runtime needs driver >= 580.65.06 and a CUDA 12 "
                "runtime >= 525.60.13 (CUDA minor-version compatibility); a newer major than the driver fails with "
                "'CUDA driver version is insufficient for CUDA runtime version' or PyTorch's 'driver on your system "
                "is too old (found version 12080)'. A newer minor within the same major passes (minor-version "
                "compatibility) with a note. Fix: upgrade the driver, or install the torch/vLLM variant built for "
                "the driver's CUDA (e.g. cu128 on an R570 driver)."),
        CheckSpec(
            id="BWD-DRV-004", title="CUDA forward compatibility only on GPUs that support it", func=check_forward_compat,
            needs_any=["host.env", "config.env", "packages"], tags=["driver", "cuda"],
            root_cause="driver_too_old_for_cuda", remedies=["driver.remove-compat", "driver.upgrade"],
            confidence=0.9,
            doc="Detects the CUDA forward-compatibility libraries (cuda-compat package, a .../compat directory on "
                "LD_LIBRARY_PATH, VLLM_ENABLE_CUDA_COMPATIBILITY=1) and checks that every GPU supports them: only "
                "data-centre GPUs (and selected NGC-Server-Ready RTX SKUs) do. On GeForce and RTX workstation cards "
                "CUDA fails with error 804 'forward compatibility was attempted on non supported HW'. Fix: remove "
                "the compat libraries and upgrade the host driver instead."),
        CheckSpec(
            id="BWD-GPU-001", title="GPU is recognised", func=check_recognised, needs_any=_GPU_TARGET,
            tags=["gpu"], root_cause=None, remedies=[], confidence=0.5,
            doc="Looks each GPU up in the knowledge base by PCI device id and NVML name and reports its verified "
                "specification (compute capability, memory type, size and bandwidth, NVLink or PCIe, FP8/FP4). An "
                "unknown SKU is a low-severity warning: the other checks still judge it by its compute capability. "
                "No automatic remedy: an unknown GPU is not a fault of the machine."),
        CheckSpec(
            id="BWD-GPU-002", title="Every GPU answers", func=check_lost, needs=["gpu.*"], tags=["gpu", "health"],
            root_cause="gpu_health", remedies=["gpu.advisory"], confidence=1.0,
            doc="Fails when NVML reports a GPU as lost (NVMLError_GpuIsLost: fell off the bus, Xid 79) or needing "
                "a reset. Such a GPU cannot run anything until it is reset or the machine rebooted; check power, "
                "cooling and seating. The other GPUs are still judged by the other checks."),
        CheckSpec(
            id="BWD-GPU-003", title="PCIe link runs at full width and speed", func=check_pcie, needs=["gpu.*"],
            tags=["gpu", "pcie", "performance"], root_cause="gpu_health", remedies=["gpu.advisory"], confidence=0.6,
            doc="Compares each GPU's current PCIe link with what the GPU and the slot support (NVML current, max "
                "and GPU-max generation and width). A narrower link than possible (x8 instead of x16), or a slot that "
                "caps the GPU's generation, warns: host<->GPU copies, weight loading and multi-GPU all-reduce over "
                "PCIe slow down in proportion. A lower generation while the GPU is idle is normal power saving "
                "(clock event reason GPU idle) and passes with a note; under load it warns. Fix: reseat the card, "
                "use a full x16 slot, check bifurcation and BIOS PCIe settings."),
        CheckSpec(
            id="BWD-GPU-004", title="NVLink state matches the GPU", func=check_nvlink, needs_any=_GPU_TARGET,
            tags=["gpu", "nvlink"], root_cause="gpu_health", remedies=["gpu.advisory"], confidence=0.7,
            doc="For SKUs with NVLink (H100/H200 SXM, A100 SXM, B200/B300/GB200/GB300) checks that the links NVML "
                "reports are up; some links down is a degraded fabric, all down on a multi-GPU NVLink board is a "
                "failure (NCCL falls back to PCIe or hangs). SKUs without NVLink (RTX PRO 6000 Blackwell, RTX 50, "
                "L40S, RTX 6000 Ada) pass with a statement that GPUs exchange data over PCIe. Bridged PCIe cards "
                "without a bridge, single GPUs and virtualised GPUs that hide NVLink pass with a note. Pairs without "
                "PCIe P2P are listed. Fix: reseat bridges/boards, check Xid 74 in dmesg, service the system."),
        CheckSpec(
            id="BWD-GPU-005", title="Clocks are not throttled", func=check_clock_reasons, needs=["gpu.*"],
            tags=["gpu", "performance", "health"], root_cause="gpu_health", remedies=["gpu.advisory"], confidence=0.7,
            doc="Decodes NVML's clock event reasons. Hardware slowdown (0x8), hardware thermal slowdown (0x40) and "
                "power-brake slowdown (0x80) cut clocks by half or more and fail; software thermal slowdown (0x20), "
                "power capping (0x4), sync boost (0x10) and application-clock limits (0x2) warn. GPU idle (0x1) "
                "passes. Fix: cooling, airflow, power cabling and PSU capacity; power limits with nvidia-smi -pl."),
        CheckSpec(
            id="BWD-GPU-006", title="Persistence mode is on", func=check_persistence, needs=["gpu.*"],
            tags=["gpu", "driver"], root_cause=None, remedies=["gpu.persistence-mode"], confidence=0.3,
            doc="With persistence mode off (the Linux default without nvidia-persistenced) the driver releases the "
                "GPU when the last client exits, so each vLLM start pays GPU initialisation and clocks/power "
                "settings are lost. A low-severity warning; no root cause of failures. Fix: enable "
                "nvidia-persistenced (or nvidia-smi -pm 1)."),
        CheckSpec(
            id="BWD-GPU-007", title="GPU memory is healthy", func=check_memory_health, needs=["gpu.*"],
            tags=["gpu", "health"], root_cause="gpu_health", remedies=["gpu.advisory"], confidence=1.0,
            doc="Reads ECC counters, row remapping (Ampere+), page retirement (older GPUs) and the driver's GPU "
                "recovery action. Uncorrectable ECC errors since driver load, a pending row remap or retired page "
                "(needs a GPU reset), a remap failure (RMA candidate) or a recovery action other than none fail; "
                "lifetime uncorrectable counts and uncorrectable-error remaps warn. Fix: drain and reset the GPU; "
                "contact the vendor when remapping fails."),
        CheckSpec(
            id="BWD-GPU-008", title="MIG is used one slice per process", func=check_mig,
            needs_any=["gpu.*", "host.env", "config.env"], tags=["gpu", "mig"], root_cause="mig",
            remedies=["gpu.mig-guidance"], confidence=0.9,
            doc="When MIG is enabled, a CUDA process can use exactly one MIG device, selected by its UUID "
                "(MIG-...) in CUDA_VISIBLE_DEVICES; several MIG UUIDs, a mix with whole GPUs, or no selection at all "
                "fail, and so does tensor parallelism across MIG slices (unsupported). A pending MIG mode change "
                "warns (it needs a GPU reset). Fix: one vLLM instance per MIG slice with CUDA_VISIBLE_DEVICES=<MIG "
                "UUID>, or disable MIG for tensor parallelism."),
        CheckSpec(
            id="BWD-GPU-009", title="No other process holds GPU memory", func=check_memory_contention,
            needs=["gpu.*"], tags=["gpu", "memory"], root_cause="gpu_memory_contention", remedies=["gpu.free-memory"],
            confidence=0.6,
            doc="Warns when more than 1 GiB (or 2 % of a large card) of a GPU's memory is already used (listing the "
                "processes NVML shows). "
                "vLLM budgets --gpu-memory-utilization of the total memory; memory held by a desktop, another "
                "server or a stale worker makes startup fail ('Free memory on device ... is less than desired GPU "
                "memory utilization') or shrinks the KV cache. Fix: stop those processes or lower "
                "--gpu-memory-utilization."),
        CheckSpec(
            id="BWD-GPU-010", title="NVSwitch fabric is initialised (Fabric Manager)", func=check_fabric_manager,
            needs=["gpu.*"], tags=["gpu", "nvlink", "fabric"], root_cause="fabric_manager_missing",
            remedies=["fabric-manager.install"], confidence=0.9,
            doc="On NVSwitch systems (HGX/DGX H100, H200, B200, B300) each GPU must be registered with the NVLink "
                "fabric by the NVIDIA Fabric Manager service; until then CUDA fails with error 802 'system not yet "
                "initialized'. Uses NVML's GPU fabric info (Hopper and newer): a state other than completed, or a "
                "failed status, fails. Systems without a fabric pass. Fix: install nvidia-fabricmanager of exactly "
                "the driver's version and enable the service."),
        CheckSpec(
            id="BWD-GPU-011", title="Compute mode allows vLLM", func=check_compute_mode, needs=["gpu.*"],
            tags=["gpu"], root_cause="gpu_health", remedies=["gpu.advisory"], confidence=0.8,
            doc="Compute mode Prohibited forbids CUDA contexts and fails; Exclusive-process lets only one process "
                "use the GPU and warns, because vLLM helpers or a second instance then fail with 'all CUDA-capable "
                "devices are busy or unavailable'. Fix: nvidia-smi -c DEFAULT."),
    ]
