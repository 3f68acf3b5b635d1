"""Child side of the multi-GPU probes: the peer-to-peer matrix and NCCL all-reduce bandwidth.

Copied into a temporary folder and run by an interpreter that has torch:
``python bwdoctor_mgpu.py MODE ARGS.json RESULT.json`` (started by ``torchprobe.run_child`` with a
deadline that kills the whole process group). Only the standard library is imported at module level;
torch is imported inside the child functions.

* ``p2p``: for every ordered pair of devices, ``torch.cuda.can_device_access_peer`` and a peer copy
  (``dst.copy_(src)`` from device i to device j, ``copy_bytes`` bytes, best of N, CUDA events),
  verified element for element: P2P that is reported but corrupts or stalls data is the failure
  that hangs NCCL on PCIe machines with IOMMU/ACS.
* ``allreduce``: one process per device (``torch.multiprocessing`` with the spawn method),
  ``torch.distributed`` with the NCCL backend (``gloo`` on CPU for a GPU-free dry run), an
  ``all_reduce`` of float32 tensors from 1 MiB to 1 GiB. Bus bandwidth as nccl-tests defines it:
  ``bytes / time × 2 (n - 1) / n``. Rank 0 rewrites RESULT.json after every size, so a run killed at
  its deadline still says which size hung.

Fault injection for tests: ``hang_rank`` (and ``hang_at_bytes``) make that rank stop before the
collective, as a blocked peer does.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import Any

try:  # as a child script, torchprobe lies beside this file under its module name (run_child copies it)
    from bwdoctor_torchprobe import _err, _Writer  # type: ignore[import-not-found]
except ImportError:  # imported in the parent (for its path) or by the tests
    from bwdoctor_checks._lib.torchprobe import _err, _Writer

MIB = 1 << 20
DEFAULT_SIZES = [MIB << k for k in range(0, 11, 2)]  # 1, 4, 16, 64, 256, 1024 MiB


# ------------------------------------------------------------------------------ peer-to-peer


def child_p2p(args: dict[str, Any], w: _Writer) -> None:
    w.stage("import")
    import torch

    w.data["torch"] = torch.__version__
    if not torch.cuda.is_available():
        w.data["error"] = "torch sees no CUDA device"
        w.flush()
        return
    n = torch.cuda.device_count()
    w.data["device_count"] = n
    w.data["devices"] = [{"index": i, "name": torch.cuda.get_device_name(i)} for i in range(n)]
    nbytes = int(args.get("copy_bytes") or 256 * MIB)
    trials = int(args.get("trials") or 5)
    pairs = []
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            w.stage(f"p2p {i}->{j}")
            entry: dict[str, Any] = {"src": i, "dst": j,
                                     "can_access": bool(torch.cuda.can_device_access_peer(i, j))}
            try:
                src = torch.arange(nbytes // 4, dtype=torch.int32, device=f"cuda:{i}")
                dst = torch.empty_like(src, device=f"cuda:{j}")
                dst.copy_(src)
                torch.cuda.synchronize(i)
                torch.cuda.synchronize(j)
                entry["verified"] = bool(torch.equal(dst.cpu(), src.cpu()))
                best = None
                for _ in range(trials):
                    start = torch.cuda.Event(enable_timing=True)
                    end = torch.cuda.Event(enable_timing=True)
                    with torch.cuda.device(i):
                        start.record()
                        dst.copy_(src, non_blocking=True)
                        end.record()
                    end.synchronize()
                    ms = start.elapsed_time(end)
                    best = ms if best is None else min(best, ms)
                entry["gbs"] = round(nbytes / (best / 1e3) / 1e9, 2) if best else None
                entry["bytes"] = nbytes
                del src, dst
            except Exception as exc:  # noqa: BLE001 - recorded per pair
                entry["error"] = _err(exc)
            pairs.append(entry)
            w.data["pairs"] = pairs
            w.flush()
    w.data["ok"] = True


# ------------------------------------------------------------------------------ all-reduce


def _rank_main(rank: int, world: int, args: dict[str, Any], result_path: str) -> None:
    import torch
    import torch.distributed as dist

    backend = args.get("backend") or "nccl"
    device_kind = args.get("device") or "cuda"
    if device_kind == "cuda":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend=backend, init_method=f"file://{args['rendezvous']}", rank=rank, world_size=world)
    device = torch.device(f"cuda:{rank}" if device_kind == "cuda" else "cpu")
    w = _Writer(result_path) if rank == 0 else None
    rows: list[dict[str, Any]] = []
    if w is not None:
        w.data.update({"backend": backend, "device": device_kind, "world_size": world, "sizes": rows})
    trials = int(args.get("trials") or 5)
    hang_rank = args.get("hang_rank")
    for nbytes in [int(s) for s in (args.get("sizes") or DEFAULT_SIZES)]:
        if w is not None:
            w.stage(f"all_reduce {nbytes >> 20} MiB")
        if hang_rank == rank and nbytes >= int(args.get("hang_at_bytes") or 0):
            while True:  # a blocked peer: the others wait in the collective until the deadline
                time.sleep(1)
        t = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
        dist.all_reduce(t)  # warm-up (and connection set-up for this size)
        if device_kind == "cuda":
            torch.cuda.synchronize()
        best = None
        for _ in range(trials):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(t)
            if device_kind == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        ok = bool(abs(float(t[0].item()) - float(world ** (trials + 1))) < 1e-3 * world ** (trials + 1))
        if w is not None and best:
            algbw = nbytes / best / 1e9
            rows.append({"bytes": nbytes, "seconds": round(best, 6), "algbw_gbs": round(algbw, 2),
                         "busbw_gbs": round(algbw * 2 * (world - 1) / world, 2), "correct": ok})
            w.flush()
        del t
    if w is not None:
        w.data["ok"] = True
        w.data["nccl_version"] = _nccl_version(torch) if backend == "nccl" else None
        w.stage("done")
    dist.destroy_process_group()


def _nccl_version(torch: Any) -> str | None:
    try:
        v = torch.cuda.nccl.version()
        return ".".join(str(x) for x in v) if isinstance(v, tuple) else str(v)
    except Exception:  # noqa: BLE001
        return None


def child_allreduce(args: dict[str, Any], w: _Writer) -> None:
    w.stage("import")
    import torch
    import torch.multiprocessing as mp

    w.data["torch"] = torch.__version__
    device_kind = args.get("device") or "cuda"
    world = int(args.get("world_size") or (torch.cuda.device_count() if device_kind == "cuda" else 2))
    if world < 2:
        w.data["error"] = f"{world} device(s): an all-reduce needs at least two"
        w.flush()
        return
    args = dict(args)
    args["rendezvous"] = os.path.join(os.path.dirname(os.path.abspath(w.path)), "rendezvous")
    w.data.update({"world_size": world, "stage": "spawn"})
    w.flush()
    # rank 0 owns RESULT.json from here on
    mp.spawn(_rank_main, args=(world, args, w.path), nprocs=world, join=True)


MODES = {"p2p": child_p2p, "allreduce": child_allreduce}


def child_entry(argv: list[str]) -> int:
    mode, args_path, result_path = argv[1], argv[2], argv[3]
    with open(args_path, encoding="utf-8") as fh:
        args = json.load(fh)
    w = _Writer(result_path)
    w.data["mode"] = mode
    w.flush()
    try:
        MODES[mode](args, w)
    except BaseException as exc:  # noqa: BLE001 - whatever happens, say it in the result
        import traceback

        traceback.print_exc()
        with contextlib.suppress(OSError, ValueError):  # rank 0 may have written figures meanwhile: keep them
            with open(result_path, encoding="utf-8") as fh:
                w.data.update({k: v for k, v in json.load(fh).items() if k not in w.data or k == "sizes"})
        w.data["ok"] = False
        w.data["error"] = _err(exc)
        w.flush()
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    child_entry(sys.argv)
