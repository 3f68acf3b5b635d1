"""Checks of what tensor parallelism needs between GPUs (BWD-MGPU): peer-to-peer access and its
bandwidth, NCCL all-reduce bus bandwidth against the link's roofline, the IOMMU/ACS settings
that break P2P on PCIe machines, and a system NCCL that shadows the wheel's.

Reads: ``probe.p2p``, ``probe.allreduce``, ``host.iommu``, ``host.pci_acs``, ``nccl.libraries``,
``nccl.version``, ``gpu.<i>``, ``gpu.count``, ``gpu.topology``.
"""

from __future__ import annotations

from typing import Any

from bwdoctor import CheckSpec, Outcome, Snapshot, failed, hookimpl, kb, known, passed, skipped, warned
from bwdoctor.resolve import base_version
from bwdoctor_checks._lib.rooflines import ALLREDUCE_WARN_PCT, PEER_WARN_PCT, pcie_theoretical_gbs

# all-reduce sizes below this are latency-bound: their bus bandwidth says nothing about the link
ALLREDUCE_JUDGED_MIN_BYTES = 256 << 20


def _spec(gpu: dict[str, Any]) -> Any:
    pci, name = gpu.get("pci_device_id"), gpu.get("name")
    spec = kb.find_gpu(pci_device_id=pci) if isinstance(pci, str) and pci else None
    if spec is None and isinstance(name, str) and name:
        spec = kb.find_gpu(name=name)
    return spec


def _pair_topology(snap: Snapshot, a: int, b: int) -> dict[str, Any]:
    topo = snap.value("gpu.topology")
    for pair in (topo.get("pairs") or []) if isinstance(topo, dict) else []:
        if isinstance(pair, dict) and {pair.get("a"), pair.get("b")} == {a, b}:
            return pair
    return {}


def link_roofline(snap: Snapshot, a: int, b: int) -> tuple[float | None, str]:
    """The one-direction bandwidth (GB/s) of the link between GPUs a and b, and its name.

    NVLink when NVML reports NVLink P2P between the pair (or both are NVLink SXM parts of one
    board, where NVLink is the only path NCCL uses): half the knowledge base's bidirectional
    NVLink figure. Otherwise PCIe: the slower of the two GPUs' maximum link (generation × lanes)."""
    gpus = dict(snap.gpus())
    ga, gb = gpus.get(a) or {}, gpus.get(b) or {}
    sa, sb = _spec(ga), _spec(gb)
    pair = _pair_topology(snap, a, b)
    nvlink_ok = (pair.get("p2p") or {}).get("nvlink") == "ok"
    sxm = all(s is not None and s.has_nvlink and s.form_factor == "sxm" for s in (sa, sb))
    if (nvlink_ok or (sxm and not pair)) and sa is not None and sa.nvlink_bandwidth_gbs:
        return sa.nvlink_bandwidth_gbs / 2, f"NVLink ({sa.nvlink_bandwidth_gbs:g} GB/s bidirectional per GPU)"
    rates = []
    for g, s in ((ga, sa), (gb, sb)):
        pcie: dict[str, Any] = g["pcie"] if isinstance(g.get("pcie"), dict) else {}
        gen = pcie.get("gen_max") if known(pcie.get("gen_max")) else (s.pcie_gen if s else None)
        width = pcie.get("width_max") if known(pcie.get("width_max")) else (s.pcie_lanes if s else None)
        rate = pcie_theoretical_gbs(gen, width)
        if rate is None:
            return None, "PCIe (link width unknown)"
        rates.append((rate, gen, width))
    rate, gen, width = min(rates)
    return rate, f"PCIe gen{gen} x{width} ({rate:.1f} GB/s one way)"


def _pairs(snap: Snapshot) -> list[dict[str, Any]]:
    p2p = snap.mapping("probe.p2p")
    return [p for p in p2p.get("pairs") or [] if isinstance(p, dict)]


# ----------------------------------------------------------------------------- BWD-MGPU-001


def check_p2p(snap: Snapshot) -> list[Outcome] | Outcome:
    p2p = snap.mapping("probe.p2p")
    ev = ["probe.p2p", "gpu.topology"]
    out: list[Outcome] = []
    if p2p.get("timed_out"):
        return failed(f"The peer-to-peer probe did not finish within {p2p.get('deadline_s'):g} s (stuck at "
                      f"'{p2p.get('stage')}'): a peer copy between GPUs hangs, as it does when PCIe P2P is routed "
                      f"through an IOMMU or blocked by ACS. NCCL and vLLM's custom all-reduce hang the same way.",
                      ev, details={"stage": p2p.get("stage")})
    for pair in _pairs(snap):
        subject = f"gpu{pair.get('src')}->gpu{pair.get('dst')}"
        if pair.get("error"):
            out.append(failed(f"A peer copy from GPU {pair.get('src')} to GPU {pair.get('dst')} failed: "
                              f"{pair['error']}", ev, subject=subject))
        elif pair.get("verified") is False:
            out.append(failed(f"A peer copy from GPU {pair.get('src')} to GPU {pair.get('dst')} delivered wrong data"
                              + (" although the driver reports peer access" if pair.get("can_access") else "")
                              + ": P2P is broken on this platform (IOMMU/ACS or a board without working P2P); NCCL "
                                "results would be corrupt or hang", ev, subject=subject))
        elif not pair.get("can_access"):
            out.append(warned(f"GPU {pair.get('src')} cannot access GPU {pair.get('dst')} directly (no P2P): NCCL "
                              f"goes through host memory and vLLM turns its custom all-reduce off; slower, not "
                              f"broken. Start vLLM with --disable-custom-all-reduce if it still tries.",
                              ev, subject=subject, severity="low", confidence=0.5))
        else:
            out.append(passed(f"GPU {pair.get('src')} -> GPU {pair.get('dst')}: peer access, copy verified",
                              ev, subject=subject))
    if not out:
        return skipped("the peer-to-peer probe measured no pair of GPUs", ev)
    return out


# ----------------------------------------------------------------------------- BWD-MGPU-002


def check_peer_bandwidth(snap: Snapshot) -> list[Outcome] | Outcome:
    out: list[Outcome] = []
    for pair in _pairs(snap):
        gbs = pair.get("gbs")
        if not isinstance(gbs, (int, float)) or pair.get("verified") is False:
            continue
        a, b = int(pair.get("src", 0)), int(pair.get("dst", 0))
        roof, link = link_roofline(snap, a, b)
        subject = f"gpu{a}->gpu{b}"
        if roof is None:
            out.append(skipped(f"GPU {a} -> GPU {b}: {gbs:g} GB/s measured; the link's bandwidth is unknown "
                               f"({link}), so it cannot be judged", ["probe.p2p"], subject=subject))
            continue
        pct = 100.0 * gbs / roof
        details = {"measured_gbs": gbs, "roofline_gbs": roof, "percent": round(pct, 1), "link": link}
        msg = f"GPU {a} -> GPU {b}: peer copy {gbs:g} GB/s, {pct:.0f}% of {link}"
        if pct < PEER_WARN_PCT:
            hint = (" over PCIe: peer traffic is detoured through the root complex (ACS redirect / IOMMU), or the "
                    "link trained below its width" if link.startswith("PCIe") else
                    ": NVLink links down or degraded (check nvidia-smi nvlink -s)")
            out.append(warned(msg + hint, ["probe.p2p", "gpu.topology"], subject=subject, details=details))
        else:
            out.append(passed(msg, ["probe.p2p"], subject=subject, details=details))
    if not out:
        return skipped("no verified peer copy was measured", ["probe.p2p"])
    return out


# ----------------------------------------------------------------------------- BWD-MGPU-003


def _allreduce_roofline(snap: Snapshot, world: int) -> tuple[float | None, str]:
    """All-reduce bus bandwidth is bound by each GPU's slowest one-way link to the others."""
    worst: tuple[float | None, str] = (None, "")
    for a in range(world):
        for b in range(a + 1, world):
            roof, link = link_roofline(snap, a, b)
            if roof is None:
                return None, link
            if worst[0] is None or roof < worst[0]:
                worst = (roof, link)
    return worst


def check_allreduce(snap: Snapshot) -> list[Outcome] | Outcome:
    ar = snap.mapping("probe.allreduce")
    ev = ["probe.allreduce"]
    rows = [r for r in ar.get("sizes") or [] if isinstance(r, dict)]
    if ar.get("timed_out"):
        done = ", ".join(f"{int(r['bytes']) >> 20} MiB" for r in rows if isinstance(r.get("bytes"), int))
        return failed(f"NCCL all-reduce across {ar.get('world_size')} GPUs hung: no answer within "
                      f"{ar.get('deadline_s'):g} s at '{ar.get('stage')}'" + (f" (finished: {done})" if done else "")
                      + ". A collective that hangs is what vLLM shows as a stall after 'init engine' or a watchdog "
                        "timeout; on PCIe machines the usual cause is P2P over an IOMMU/ACS path.",
                      ev + ["probe.p2p", "host.iommu", "host.pci_acs"], details={"stage": ar.get("stage")})
    if ar.get("error") and not rows:
        return failed(f"NCCL all-reduce failed: {ar['error']}", ev)
    if any(r.get("correct") is False for r in rows):
        return failed("NCCL all-reduce returned wrong sums: data between GPUs is corrupted (broken P2P path)", ev)
    big = [r for r in rows if isinstance(r.get("bytes"), int) and r["bytes"] >= ALLREDUCE_JUDGED_MIN_BYTES
           and isinstance(r.get("busbw_gbs"), (int, float))]
    if not big:
        return skipped("the all-reduce was not measured at 256 MiB or more (smaller sizes are latency-bound)", ev)
    best = max(big, key=lambda r: r["busbw_gbs"])
    if ar.get("backend") not in (None, "nccl"):
        return skipped(f"all-reduce measured with {ar.get('backend')} on {ar.get('device') or 'cpu'}, not NCCL on "
                       f"the GPUs: nothing to judge against a GPU link ({best['busbw_gbs']:g} GB/s bus bandwidth)", ev)
    world = int(ar.get("world_size") or 2)
    roof, link = _allreduce_roofline(snap, world)
    details = {"busbw_gbs": best["busbw_gbs"], "bytes": best["bytes"], "roofline_gbs": roof, "link": link,
               "nccl": ar.get("nccl_version")}
    if roof is None:
        return skipped(f"all-reduce bus bandwidth {best['busbw_gbs']:g} GB/s; the link's bandwidth is unknown "
                       f"({link})", ev, details=details)
    pct = 100.0 * best["busbw_gbs"] / roof
    details["percent"] = round(pct, 1)
    msg = (f"NCCL {ar.get('nccl_version') or ''} all-reduce over {world} GPUs: {best['busbw_gbs']:g} GB/s bus "
           f"bandwidth at {best['bytes'] >> 20} MiB, {pct:.0f}% of {link}").replace("NCCL  ", "NCCL ")
    if pct < ALLREDUCE_WARN_PCT:
        return warned(msg + ": tensor-parallel decode will be slow; check P2P (BWD-MGPU-001/002), IOMMU/ACS "
                            "(BWD-MGPU-004) and NCCL_* settings", ev + ["gpu.topology"], details=details)
    return passed(msg, ev, details=details)


# ----------------------------------------------------------------------------- BWD-MGPU-004


def check_iommu_acs(snap: Snapshot) -> list[Outcome] | Outcome | None:
    count = snap.value("gpu.count")
    if not isinstance(count, int) or count < 2:
        return skipped("fewer than two GPUs: no peer-to-peer traffic to route", ["gpu.count"])
    nvlinked = all((_spec(g) is not None and _spec(g).has_nvlink and _spec(g).form_factor == "sxm")
                   for _, g in snap.gpus())
    iommu = snap.mapping("host.iommu")
    acs = snap.mapping("host.pci_acs")
    out: list[Outcome] = []
    redirecting = [b for b in acs.get("bridges") or [] if isinstance(b, dict) and isinstance(b.get("acs"), dict)
                   and (b["acs"].get("request_redirect") or b["acs"].get("completion_redirect"))
                   and len(set(b.get("gpus") or [])) >= 1]
    unreadable = [b for b in acs.get("bridges") or [] if isinstance(b, dict) and not b.get("readable")]
    shared = [b for b in redirecting if len(set(b.get("gpus") or [])) >= 2]
    where = "the NVLink GPUs' PCIe path (NCCL prefers NVLink)" if nvlinked else "GPU peer traffic over PCIe"
    if redirecting:
        names = ", ".join(b["bdf"] for b in (shared or redirecting)[:4])
        out.append(warned(f"ACS request/completion redirect is on for PCIe bridge(s) {names} above the GPUs: "
                          f"peer-to-peer writes are sent up to the root complex (and through the IOMMU) instead of "
                          f"across the switch, which slows or hangs {where}. Disable ACS on those bridges (BIOS, or "
                          f"setpci at boot) or run NCCL with NCCL_P2P_DISABLE=1.",
                          ["host.pci_acs", "host.iommu"], subject="acs", severity="low" if nvlinked else "medium",
                          details={"bridges": [b["bdf"] for b in redirecting]}))
    if iommu.get("enabled") and not iommu.get("passthrough"):
        mode = "translated (no iommu=pt)" if iommu.get("passthrough") is None else "translated"
        out.append(warned(f"The IOMMU is on ({iommu.get('groups')} groups), {mode}: PCIe peer-to-peer DMA between "
                          f"GPUs is remapped or blocked; NCCL over PCIe P2P can hang. Boot with iommu=pt (or turn "
                          f"the IOMMU off if nothing needs it), or set NCCL_P2P_DISABLE=1.",
                          ["host.iommu"], subject="iommu", severity="low" if nvlinked else "medium",
                          confidence=0.5))
    if out:
        return out
    if unreadable:
        return skipped(f"the ACS settings of {len(unreadable)} PCIe bridge(s) above the GPUs could not be read "
                       f"(their extended configuration space needs root); IOMMU: "
                       f"{'on, passthrough' if iommu.get('enabled') else 'off'}", ["host.pci_acs", "host.iommu"])
    if not acs and not iommu:
        return None
    return passed("No ACS redirect above the GPUs and the IOMMU does not remap peer traffic"
                  if acs.get("bridges") else "The IOMMU does not remap peer traffic", ["host.iommu", "host.pci_acs"])


# ----------------------------------------------------------------------------- BWD-MGPU-005


def check_nccl_shadowing(snap: Snapshot) -> list[Outcome] | Outcome | None:
    libs = [lib for lib in snap.mapping("nccl.libraries").get("libraries") or [] if isinstance(lib, dict)]
    wheel = snap.value("nccl.version")
    wheel_v = base_version(wheel) if isinstance(wheel, str) else None
    first = [lib for lib in libs if lib.get("origin") in ("LD_PRELOAD", "LD_LIBRARY_PATH")]
    out: list[Outcome] = []
    for lib in first:
        v = base_version(lib.get("version")) if isinstance(lib.get("version"), str) else None
        what = f"{lib.get('path')} (NCCL {lib.get('version') or 'of unknown version'}, via {lib.get('origin')})"
        if wheel_v is not None and v is not None and v < wheel_v:
            out.append(failed(f"{what} is loaded ahead of the NCCL {wheel} that torch was installed with: the older "
                              f"library is the one vLLM uses", ["nccl.libraries", "nccl.version"],
                              subject=str(lib.get("path")), details=lib))
        elif wheel_v is not None and v is not None and v != wheel_v:
            out.append(warned(f"{what} is loaded ahead of the NCCL {wheel} that torch was installed with",
                              ["nccl.libraries", "nccl.version"], subject=str(lib.get("path")), severity="low",
                              confidence=0.4, details=lib))
    if out:
        return out
    if first:
        return passed(f"The NCCL found first ({first[0].get('path')}) is the same release as torch's "
                      f"({wheel or 'unknown'})", ["nccl.libraries"])
    if not libs and wheel is None:
        return None
    return passed("No NCCL library in LD_PRELOAD or LD_LIBRARY_PATH shadows the one torch was installed with",
                  ["nccl.libraries"])


@hookimpl
def bwdoctor_checks() -> list[CheckSpec]:
    return [
        CheckSpec(
            id="BWD-MGPU-001", title="Peer-to-peer copies between GPUs work", func=check_p2p,
            needs=["probe.p2p"], level="full", tags=["multi-gpu", "p2p", "nccl", "probe"],
            root_cause="nccl_p2p", remedies=["nccl.p2p-disable"], confidence=0.9,
            doc="At --level full on two GPUs or more, a child process copies 256 MiB from every GPU to every other "
                "(torch peer copy) and compares the data. Fails when a copy raises, delivers wrong data or hangs "
                "past its deadline: PCIe P2P routed through an IOMMU or blocked by ACS, or a board whose P2P does not "
                "work. Such a machine hangs NCCL and vLLM's custom all-reduce. Warns (low) where the driver reports "
                "no peer access at all: NCCL then uses host memory, which is slower but works. Fix: "
                "NCCL_P2P_DISABLE=1 and --disable-custom-all-reduce, or set the IOMMU to passthrough / disable ACS."),
        CheckSpec(
            id="BWD-MGPU-002", title="Peer copy bandwidth against the link", func=check_peer_bandwidth,
            needs=["probe.p2p"], level="full", tags=["multi-gpu", "p2p", "performance", "probe"], can_fail=False,
            root_cause="nccl_p2p", remedies=["nccl.p2p-disable"], confidence=0.5,
            doc="The measured peer copy bandwidth of each pair against the link's one-way roofline: NVLink (half "
                "the knowledge base's bidirectional NVLink figure) where NVML reports NVLink between the pair, else "
                "the slower GPU's PCIe link (generation × lanes after encoding). Warns below 50%: over PCIe that is "
                "the detour through the root complex that ACS redirect or an IOMMU imposes, or a link trained "
                "narrow; over NVLink, links down. Remedy: NCCL_P2P_DISABLE=1 as a workaround; fix ACS/IOMMU."),
        CheckSpec(
            id="BWD-MGPU-003", title="NCCL all-reduce completes at the link's speed", func=check_allreduce,
            needs=["probe.allreduce"], level="full", tags=["multi-gpu", "nccl", "performance", "probe"],
            root_cause="nccl_p2p", remedies=["nccl.p2p-disable", "nccl.env-fix"], confidence=0.8,
            doc="One process per GPU (torch.distributed, NCCL) all-reduces float32 tensors from 1 MiB to 1 GiB; bus "
                "bandwidth is computed as nccl-tests does (bytes / time × 2(n-1)/n). Fails when the collective hangs "
                "past its deadline (the finding names the size it was at) or returns wrong sums; warns when the best "
                "bus bandwidth at 256 MiB or more is below 40% of the slowest link between the GPUs. Remedies: "
                "NCCL_P2P_DISABLE=1 for a P2P path that hangs, and removing harmful NCCL_* settings."),
        CheckSpec(
            id="BWD-MGPU-004", title="IOMMU and PCIe ACS let GPUs talk peer to peer", func=check_iommu_acs,
            needs=["gpu.count"], needs_any=["host.iommu", "host.pci_acs"], tags=["multi-gpu", "p2p", "pcie"],
            can_fail=False, root_cause="nccl_p2p", remedies=["nccl.p2p-disable"], confidence=0.5,
            doc="With two GPUs or more: reads the IOMMU state (/sys/kernel/iommu_groups, iommu= on the kernel "
                "command line) and the ACS control bits of every PCIe bridge above a GPU (extended configuration "
                "space, readable by root). ACS request/completion redirect sends peer-to-peer writes up to the root "
                "complex, and a translating IOMMU remaps them: the classic cause of NCCL hangs and slow all-reduce "
                "on PCIe servers (RTX PRO 6000, L40S, RTX 4090/5090). Warns; the P2P probe (BWD-MGPU-001) proves "
                "whether it matters. Remedy: NCCL_P2P_DISABLE=1 now; iommu=pt and ACS off at the platform level."),
        CheckSpec(
            id="BWD-MGPU-005", title="No older system NCCL shadows torch's", func=check_nccl_shadowing,
            needs_any=["nccl.libraries"], tags=["multi-gpu", "nccl", "packages"],
            root_cause="nccl_version_mismatch", remedies=["nccl.unshadow"], confidence=0.8,
            doc="Lists libnccl copies in LD_PRELOAD and LD_LIBRARY_PATH (searched before the RUNPATH that finds "
                "the nvidia-nccl wheel) with the version string compiled into each. Fails when one is older than "
                "the NCCL torch was installed with: the old library is the one loaded, and it may not know the "
                "GPU's architecture. Fix: remove it from LD_LIBRARY_PATH/LD_PRELOAD or upgrade it."),
    ]
