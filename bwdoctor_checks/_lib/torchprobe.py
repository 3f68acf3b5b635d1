"""Child-process side of the smoke test and the GPU probes, plus the parent's launcher.

This file has two lives:

* imported by ``bwdoctor_checks.smoke`` / ``bwdoctor_checks.probes`` (parent side): it gives
  :func:`run_child` (start an interpreter with a deadline, capture its log, kill its whole
  process group at the deadline), :func:`gpu_lock` (the smoke and the probes never measure the
  GPU at the same time);
* copied into a temporary folder and run as a script by an interpreter that has torch (and, for
  the smoke, vLLM): ``python bwdoctor_child.py MODE ARGS.json RESULT.json``. Only the standard
  library is imported at module level, so the same file imports cleanly on both sides; torch and
  vLLM are imported inside the child functions only.

The child writes its result as JSON to RESULT.json, rewritten at each stage, so that a child
killed at its deadline still tells how far it got. Everything it (and vLLM's engine processes)
prints goes to one log file that the parent keeps the tail of.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

LOG_TAIL_BYTES = 256 * 1024
REPEATS = 3  # timed smoke requests: TTFT and decode speed are the median
CHILD_SCRIPT = "bwdoctor_child.py"
TINYMODEL_MODULE = "bwdoctor_tinymodel"
# beside another child script (script_source), this file is importable under this name
TORCHPROBE_MODULE = "bwdoctor_torchprobe"
_HERE = os.path.dirname(os.path.abspath(__file__))


# =============================================================================== parent side


@dataclass
class ChildRun:
    """What a child run left behind."""

    returncode: int | None
    timed_out: bool
    result: dict[str, Any]
    log: str
    duration_s: float
    command: list[str] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)  # [{"stage", "seconds"}] with a StagePlan
    stuck_stage: str | None = None  # the stage that outlived its deadline
    stuck_in: list[dict[str, Any]] = field(default_factory=list)  # stagewatch.stuck_frames of that run
    stuck_deadline_s: float | None = None  # the deadline it outlived: the stage's own, or the whole run's
    stuck_scope: str | None = None  # "stage" or "run"


def run_child(python: str, mode: str, args: dict[str, Any], timeout: float, workdir: str,
              env: dict[str, str] | None = None, progress_fd: int | None = None,
              script_source: str | None = None, stages: Any = None, line_fd: int | None = None) -> ChildRun:
    """Run MODE of this file (or of ``script_source``, another child script with the same
    ``MODE ARGS.json RESULT.json`` calling convention) in ``python`` inside ``workdir``; kill its
    process group at ``timeout``.

    The child is started in a new session so that at the deadline (or after it exits) every
    process it started, such as vLLM's engine core and workers, is killed with it.

    With ``stages`` (a :class:`~bwdoctor_checks._lib.stagewatch.StagePlan`) the run is followed
    stage by stage: progress on ``progress_fd`` (a terminal: the child gets no descriptor then) or one
    line per stage on ``line_fd``, and a stage that outlives its own deadline ends the run after every
    process of the group printed its Python stacks into the log (``ChildRun.stuck_stage``/``stuck_in``).
    """
    from bwdoctor.isolation import describe_exit, register_child, unregister_child  # parent side only

    os.makedirs(workdir, exist_ok=True)
    script = os.path.join(workdir, CHILD_SCRIPT)
    shutil.copyfile(script_source or os.path.abspath(__file__), script)
    shutil.copyfile(os.path.join(_HERE, "tinymodel.py"), os.path.join(workdir, TINYMODEL_MODULE + ".py"))
    if script_source:
        shutil.copyfile(os.path.abspath(__file__), os.path.join(workdir, TORCHPROBE_MODULE + ".py"))
    args_path = os.path.join(workdir, "args.json")
    result_path = os.path.join(workdir, "result.json")
    log_path = os.path.join(workdir, "child.log")
    with open(args_path, "w", encoding="utf-8") as fh:
        json.dump(args, fh)
    cmd = [python, script, mode, args_path, result_path]
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    watch = None
    if stages is not None:
        from bwdoctor_checks._lib.stagewatch import StageWatch

        watch = StageWatch(stages, log_path, result_path, progress_fd=progress_fd, line_fd=line_fd)
        child_env["PYTHONFAULTHANDLER"] = "1"  # a stuck run's processes print their stacks on SIGABRT
        progress_fd = None  # the parent draws the progress
    pass_fds: tuple[int, ...] = ()
    if progress_fd is not None:
        child_env["BWDOCTOR_PROGRESS_FD"] = str(progress_fd)
        pass_fds = (progress_fd,)
    start = time.perf_counter()
    timed_out = False
    rc: int | None = None
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=workdir, env=child_env, start_new_session=True, pass_fds=pass_fds)
        except OSError as exc:
            return ChildRun(None, False, {"ok": False, "stage": "start",
                                          "error": f"could not start {python}: {exc.strerror or exc}"},
                            "", time.perf_counter() - start, cmd)
        register_child(proc.pid, True)
        try:
            if watch is None:
                rc = proc.wait(timeout=max(timeout, 0.1))
            else:
                rc = _follow(proc, watch, start, timeout)
                timed_out = rc is None
            if timed_out:
                raise subprocess.TimeoutExpired(cmd, timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            if watch is not None:
                from bwdoctor_checks._lib.stagewatch import dump_stacks

                dump_stacks(proc.pid)
            _kill_group(proc.pid)
            try:
                rc = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                rc = None
        finally:
            _kill_group(proc.pid)  # leftovers (engine core, workers) die with the run
            unregister_child(proc.pid)
    duration = time.perf_counter() - start
    result: dict[str, Any] = {}
    try:
        with open(result_path, encoding="utf-8") as fh:
            loaded = json.load(fh)
        if isinstance(loaded, dict):
            result = loaded
    except (OSError, ValueError):
        result = {}
    # our own child script always writes "finished" last: without it even exit code 0 (os._exit(0)
    # while importing torch) is a crash; another script is judged by its exit code alone
    if not timed_out and (rc != 0 or (script_source is None and not result.get("finished"))):
        # a crash (segfault, os._exit, the OOM killer) during a stage: the result file says how far
        # it got, never what it was about to find
        result["ok"] = False
        result["crashed"] = (f"the child process ended ({describe_exit(rc)}) during stage "
                             f"'{result.get('stage', 'start')}' without finishing")
        result.setdefault("error", result["crashed"])
    run = ChildRun(rc, timed_out, result, read_tail(log_path), duration, cmd)
    if watch is not None:
        from bwdoctor_checks._lib.stagewatch import stuck_frames

        watch.finish(time.perf_counter(), bool(result.get("ok")) and not timed_out)
        run.stages = watch.stages
        run.stuck_stage = watch.stuck
        run.stuck_deadline_s = watch.stuck_deadline
        run.stuck_scope = watch.scope if watch.stuck else None
        if timed_out:
            run.stuck_in = stuck_frames(run.log)
    return run


def _follow(proc: subprocess.Popen[bytes], watch: Any, start: float, timeout: float) -> int | None:
    """Wait for ``proc`` while ``watch`` follows its stages; None when a stage or the whole run
    outlived its deadline (the caller then dumps the stacks and kills the group)."""
    watch.start(start)
    while True:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return proc.wait(timeout=0.5)
        now = time.perf_counter()
        if watch.poll(now):
            watch.scope = "stage"
            return None
        if now - start >= timeout:
            watch.stuck, watch.scope, watch.stuck_deadline = watch.stage, "run", timeout
            return None


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        os.killpg(pid, signal.SIGKILL)


def read_tail(path: str, limit: int = LOG_TAIL_BYTES) -> str:
    """The last ``limit`` bytes of a file, decoded leniently ('' when unreadable)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    if size > limit and "\n" in text:
        text = text.split("\n", 1)[1]
    return text


def tail_lines(text: str, n: int) -> str:
    """The last ``n`` lines of ``text`` (progress-bar carriage returns folded)."""
    lines = [ln.rsplit("\r", 1)[-1] for ln in text.splitlines()]
    return "\n".join(lines[-n:])


def open_private_lock(path: str) -> Any:
    """Open (creating, mode 0600) a lock file in a shared folder such as ``$TMPDIR`` without
    following a symbolic link another user planted there, and only when the file is a regular
    file of this user: None otherwise (the caller then runs without the lock)."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink != 1:
            os.close(fd)
            return None
        return os.fdopen(fd, "r+")
    except OSError:
        with contextlib.suppress(OSError):
            os.close(fd)
        return None


class gpu_lock:
    """An advisory file lock so that the smoke generation and the GPU probes (collectors that
    run concurrently) never load the GPU at the same time and spoil each other's figures.

    ``with gpu_lock(timeout) as waited:`` gives the seconds spent waiting; when the lock cannot
    be had within ``timeout`` the block runs anyway (a figure taken under load beats none).
    """

    def __init__(self, timeout: float, path: str | None = None) -> None:
        self.timeout = timeout
        self.path = path or os.path.join(os.environ.get("TMPDIR", "/tmp"), f"bwdoctor-gpu-{os.getuid()}.lock")
        self.fh: Any = None
        self.waited = 0.0

    def __enter__(self) -> float:
        try:
            import fcntl
        except ImportError:  # not POSIX
            return 0.0
        start = time.perf_counter()
        self.fh = open_private_lock(self.path)
        if self.fh is None:
            return 0.0
        while True:
            try:
                fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.perf_counter() - start >= self.timeout:
                    break
                time.sleep(0.2)
        self.waited = time.perf_counter() - start
        return self.waited

    def __exit__(self, *exc: Any) -> None:
        if self.fh is not None:
            with contextlib.suppress(OSError):
                self.fh.close()  # closing releases the lock


def _now() -> float:
    return time.perf_counter()


class _Writer:
    """Keeps the result dict and rewrites RESULT.json (atomically) at each stage."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.data: dict[str, Any] = {"ok": False, "stage": "start", "pid": os.getpid()}

    def stage(self, name: str) -> None:
        self.data["stage"] = name
        self.data.setdefault("stage_at", {})[name] = time.time()  # wall clock: the parent places the stage
        self.flush()
        print(f"[bwdoctor] stage: {name}", flush=True)

    def flush(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.data, fh, default=str)
        os.replace(tmp, self.path)


def _progress(text: str) -> None:
    """A one-line status on the user's terminal (when the parent passed one), else the log."""
    fd = os.environ.get("BWDOCTOR_PROGRESS_FD")
    if fd and fd.isdigit():
        with contextlib.suppress(OSError):
            os.write(int(fd), f"\r\x1b[2K[bwdoctor] {text}".encode())
            return
    print(f"[bwdoctor] {text}", flush=True)


def _progress_done() -> None:
    fd = os.environ.get("BWDOCTOR_PROGRESS_FD")
    if fd and fd.isdigit():
        with contextlib.suppress(OSError):
            os.write(int(fd), b"\r\x1b[2K")


def _err(exc: BaseException, limit: int = 4000) -> str:
    return f"{type(exc).__name__}: {exc}"[:limit]


def _fail(w: _Writer, exc: BaseException, prefix: str = "") -> None:
    """Record an exception in the result and print its traceback to the log."""
    import traceback

    traceback.print_exception(type(exc), exc, exc.__traceback__)
    sys.stdout.flush()
    w.data["error"] = prefix + _err(exc)


# ------------------------------------------------------------------ kernel launch


def child_kernel(args: dict[str, Any], w: _Writer) -> None:
    """Import torch and launch one real kernel on each GPU, recording the exact error."""
    import warnings

    w.stage("import")
    t0 = _now()
    try:
        import torch
    except BaseException as exc:  # noqa: BLE001 - an import can fail in any way
        w.data["error"] = _err(exc)
        w.data["import_failed"] = True
        return
    w.data["import_s"] = round(_now() - t0, 3)
    w.data["torch"] = torch.__version__
    w.data["cuda"] = getattr(torch.version, "cuda", None)
    w.data["hip"] = getattr(torch.version, "hip", None)
    w.stage("init")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            available = bool(torch.cuda.is_available())
            count = int(torch.cuda.device_count())
        except BaseException as exc:  # noqa: BLE001
            available, count = False, 0
            w.data["init_error"] = _err(exc)
    w.data["warnings"] = [str(c.message)[:1000] for c in caught][:10]
    w.data["available"] = available
    w.data["device_count"] = count
    try:
        w.data["arch_list"] = list(torch.cuda.get_arch_list())
    except BaseException:  # noqa: BLE001
        w.data["arch_list"] = []
    if count == 0 and w.data["cuda"] and "init_error" not in w.data:
        # is_available() said no: creating a tensor on the GPU gives the exact reason.
        try:
            torch.zeros(1, device="cuda")
        except BaseException as exc:  # noqa: BLE001
            w.data["init_error"] = _err(exc)
    w.stage("launch")
    devices = []
    n = 1 << 20
    for i in range(count):
        d: dict[str, Any] = {"index": i}
        try:
            props = torch.cuda.get_device_properties(i)
            d["name"] = props.name
            d["compute_capability"] = f"{props.major}.{props.minor}"
        except BaseException as exc:  # noqa: BLE001
            d["ok"] = False
            d["error"] = _err(exc)
            devices.append(d)
            continue
        t = _now()
        try:
            x = torch.ones(n, device=f"cuda:{i}")
            y = (x * 2).sum()
            torch.cuda.synchronize(i)
            value = float(y.item())
            d["ok"] = value == 2.0 * n
            if not d["ok"]:
                d["error"] = f"wrong result: sum(ones({n}) * 2) gave {value}, expected {2.0 * n}"
        except BaseException as exc:  # noqa: BLE001
            d["ok"] = False
            d["error"] = _err(exc)
        d["seconds"] = round(_now() - t, 4)
        devices.append(d)
        w.data["devices"] = devices
        w.flush()
    w.data["devices"] = devices
    w.data["ok"] = bool(devices) and all(d.get("ok") for d in devices)


# ------------------------------------------------------------------ GPU probes


def _best_time(torch: Any, fn: Any, reps: int, trials: int, warmup: int) -> tuple[float, float]:
    """Seconds per call of ``fn``: (best, median) of ``trials`` CUDA-event timings, each over ``reps`` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(trials):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000.0 / reps)
    times.sort()
    return times[0], times[len(times) // 2]


def probe_copy(torch: Any, device: Any, nbytes: int, trials: int = 10) -> dict[str, Any]:
    """Device-to-device copy bandwidth, counting bytes read and written (2 x size per copy)."""
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    src.fill_(1)
    best, median = _best_time(torch, lambda: dst.copy_(src), reps=5, trials=trials, warmup=3)
    return {"gbs": round(2 * nbytes / best / 1e9, 1), "median_gbs": round(2 * nbytes / median / 1e9, 1),
            "bytes": nbytes, "method": "copy_ of a uint8 tensor, read+write bytes, CUDA events, best of "
                                        f"{trials} x 5 copies after 3 warm-ups"}


def probe_matmul_bf16(torch: Any, device: Any, n: int, trials: int = 5) -> dict[str, Any]:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    c = torch.empty(n, n, device=device, dtype=torch.bfloat16)
    best, median = _best_time(torch, lambda: torch.matmul(a, b, out=c), reps=10, trials=trials, warmup=5)
    flop = 2.0 * n ** 3
    return {"tflops": round(flop / best / 1e12, 1), "median_tflops": round(flop / median / 1e12, 1), "n": n,
            "method": f"torch.matmul bf16 {n}x{n}x{n} on random data, CUDA events, best of {trials} x 10 after 5 warm-ups"}


def _scaled_mm(torch: Any, a: Any, b: Any, sa: Any, sb: Any, fast: bool) -> Any:
    kwargs: dict[str, Any] = {"scale_a": sa, "scale_b": sb, "out_dtype": torch.bfloat16}
    if fast:
        kwargs["use_fast_accum"] = True
    out = torch._scaled_mm(a, b, **kwargs)
    return out[0] if isinstance(out, tuple) else out  # torch < 2.5 returned (out, amax)


def probe_matmul_fp8(torch: Any, device: Any, n: int, trials: int = 5) -> dict[str, Any]:
    a = torch.randn(n, n, device=device).to(torch.float8_e4m3fn)
    b = torch.randn(n, n, device=device).to(torch.float8_e4m3fn).t()  # column-major, as _scaled_mm wants
    sa = torch.tensor(1.0, device=device, dtype=torch.float32)
    sb = torch.tensor(1.0, device=device, dtype=torch.float32)
    _scaled_mm(torch, a, b, sa, sb, True)
    best, median = _best_time(torch, lambda: _scaled_mm(torch, a, b, sa, sb, True), reps=10, trials=trials, warmup=5)
    flop = 2.0 * n ** 3
    return {"tflops": round(flop / best / 1e12, 1), "median_tflops": round(flop / median / 1e12, 1), "n": n,
            "method": f"torch._scaled_mm float8_e4m3fn {n}x{n}x{n}, per-tensor scales, bf16 out, use_fast_accum, "
                      f"CUDA events, best of {trials} x 10 after 5 warm-ups"}


def probe_matmul_fp4(torch: Any, device: Any, n: int, trials: int = 5) -> dict[str, Any]:
    """NVFP4 (e2m1 with e4m3 block-16 scales) through torch._scaled_mm, then MXFP4 (e8m0 block-32)."""
    fp4 = torch.float4_e2m1fn_x2
    a = torch.randint(0, 255, (n, n // 2), device=device, dtype=torch.uint8).view(fp4)
    b = torch.randint(0, 255, (n, n // 2), device=device, dtype=torch.uint8).view(fp4).t()
    errors = []
    for fmt, block, sdtype in (("nvfp4", 16, "float8_e4m3fn"), ("mxfp4", 32, "float8_e8m0fnu")):
        if not hasattr(torch, sdtype):
            errors.append(f"{fmt}: torch has no {sdtype}")
            continue
        rows = -(-n // 128) * 128
        cols = -(-(n // block) // 4) * 4
        sa = torch.ones(rows * cols, device=device, dtype=torch.float32).to(getattr(torch, sdtype))
        sb = torch.ones(rows * cols, device=device, dtype=torch.float32).to(getattr(torch, sdtype))
        try:
            _scaled_mm(torch, a, b, sa, sb, False)
            torch.cuda.synchronize()
        except BaseException as exc:  # noqa: BLE001
            errors.append(f"{fmt}: {_err(exc, 300)}")
            continue
        best, median = _best_time(torch, lambda sa=sa, sb=sb: _scaled_mm(torch, a, b, sa, sb, False), reps=10,
                                  trials=trials, warmup=5)
        flop = 2.0 * n ** 3
        return {"tflops": round(flop / best / 1e12, 1), "median_tflops": round(flop / median / 1e12, 1), "n": n,
                "format": fmt, "method": f"torch._scaled_mm {fmt} {n}x{n}x{n} with block scales, CUDA events, "
                                         f"best of {trials} x 10 after 5 warm-ups"}
    raise RuntimeError("; ".join(errors) or "no FP4 format ran")


def probe_host_copy(torch: Any, device: Any, nbytes: int, trials: int = 5) -> dict[str, Any]:
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    dev = torch.empty(nbytes, dtype=torch.uint8, device=device)
    host.fill_(1)
    h2d, h2d_med = _best_time(torch, lambda: dev.copy_(host, non_blocking=True), reps=2, trials=trials, warmup=2)
    d2h, d2h_med = _best_time(torch, lambda: host.copy_(dev, non_blocking=True), reps=2, trials=trials, warmup=2)
    return {"h2d_gbs": round(nbytes / h2d / 1e9, 2), "d2h_gbs": round(nbytes / d2h / 1e9, 2),
            "h2d_median_gbs": round(nbytes / h2d_med / 1e9, 2), "d2h_median_gbs": round(nbytes / d2h_med / 1e9, 2),
            "bytes": nbytes, "method": f"pinned host tensor copy_ non_blocking, CUDA events, best of {trials} x 2"}


def child_probes(args: dict[str, Any], w: _Writer) -> None:
    """Measure each GPU: memory bandwidth, BF16/FP8/FP4 GEMM, pinned host<->device copies."""
    w.stage("import")
    try:
        import torch
    except BaseException as exc:  # noqa: BLE001
        w.data["error"] = _err(exc)
        w.data["import_failed"] = True
        return
    w.data["torch"] = torch.__version__
    w.data["cuda"] = getattr(torch.version, "cuda", None)
    if not w.data["cuda"] or not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        w.data["no_gpu"] = True
        w.data["error"] = (f"torch {torch.__version__} is a CPU-only build" if not w.data["cuda"]
                           else "torch sees no usable CUDA GPU")
        return
    count = torch.cuda.device_count()
    wanted = args.get("gpus")
    indices = [i for i in (wanted if isinstance(wanted, list) else range(count)) if 0 <= int(i) < count]
    copy_bytes = int(args.get("copy_bytes") or (1 << 30))
    host_bytes = int(args.get("host_bytes") or (512 << 20))
    n = int(args.get("matmul_n") or 8192)
    results: list[dict[str, Any]] = []
    w.data["gpus"] = results
    for i in indices:
        dev = torch.device("cuda", int(i))
        torch.cuda.set_device(dev)
        props = torch.cuda.get_device_properties(dev)
        cc = (props.major, props.minor)
        r: dict[str, Any] = {"index": int(i), "name": props.name, "compute_capability": f"{cc[0]}.{cc[1]}",
                             "multiprocessors": props.multi_processor_count}
        results.append(r)
        free, total = torch.cuda.mem_get_info(dev)
        r["memory_free_bytes"] = int(free)
        budget = max(64 << 20, int(free * 0.4))
        steps: list[tuple[str, Any]] = [
            ("memory_bandwidth", lambda dev=dev, budget=budget: probe_copy(
                torch, dev, max(64 << 20, min(copy_bytes, budget // 2)))),
            ("bf16_gemm", lambda dev=dev: probe_matmul_bf16(torch, dev, n)),
        ]
        # thresholds from the knowledge base (quantization.json), passed by the parent
        fp8_min = tuple(args.get("fp8_min_cc") or (99, 0))
        fp4_min = tuple(args.get("fp4_min_cc") or (99, 0))
        if cc >= fp8_min and hasattr(torch, "float8_e4m3fn") and hasattr(torch, "_scaled_mm"):
            steps.append(("fp8_gemm", lambda dev=dev: probe_matmul_fp8(torch, dev, n)))
        else:
            r["fp8_gemm"] = {"skipped": (f"compute capability {cc[0]}.{cc[1]} has no FP8 tensor cores (needs "
                                         f"{fp8_min[0]}.{fp8_min[1]}+)" if cc < fp8_min
                                         else f"torch {torch.__version__} has no float8/_scaled_mm")}
        if cc >= fp4_min and hasattr(torch, "float4_e2m1fn_x2"):
            steps.append(("fp4_gemm", lambda dev=dev: probe_matmul_fp4(torch, dev, n)))
        else:
            r["fp4_gemm"] = {"skipped": (f"compute capability {cc[0]}.{cc[1]} has no FP4 tensor cores (needs "
                                         f"{fp4_min[0]}.{fp4_min[1]}+)" if cc < fp4_min
                                         else f"torch {torch.__version__} has no float4_e2m1fn_x2")}
        steps.append(("host_copy", lambda dev=dev, budget=budget: probe_host_copy(
            torch, dev, max(16 << 20, min(host_bytes, budget // 2)))))
        for name, fn in steps:
            _progress(f"GPU probes: gpu{i} {props.name}: {name.replace('_', ' ')} ...")
            w.stage(f"gpu{i}:{name}")
            t = _now()
            try:
                r[name] = fn()
            except BaseException as exc:  # noqa: BLE001
                r[name] = {"error": _err(exc, 1000)}
            r[name]["seconds"] = round(_now() - t, 3)
            torch.cuda.empty_cache()
            w.flush()
    _progress_done()
    w.data["stage"] = "done"
    w.data["ok"] = True


# ------------------------------------------------------------------ vLLM smoke generation


class _MemorySampler:
    """Samples, every 0.25 s, the GPU memory in use (NVML, device-wide) and the resident memory of
    this process and all its descendants (vLLM's engine core and workers), keeping the peaks."""

    def __init__(self) -> None:
        import threading

        self.peak_rss = 0
        self.peak_gpu_used = 0
        self.gpu_baseline: int | None = None
        self._stop = threading.Event()
        self._nvml: Any = None
        self._handle: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
            if visible.startswith("GPU-") or visible.startswith("MIG-"):
                self._handle = pynvml.nvmlDeviceGetHandleByUUID(visible)
            else:
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(int(visible) if visible.isdigit() else 0)
            self._nvml = pynvml
            self.gpu_baseline = int(pynvml.nvmlDeviceGetMemoryInfo(self._handle).used)
        except BaseException:  # noqa: BLE001 - no NVML, no GPU: host memory only
            self._nvml = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree_rss(self) -> int:
        root = os.getpid()
        children: dict[int, list[int]] = {}
        rss: dict[int, int] = {}
        page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        try:
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        except OSError:
            return 0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
                    stat = fh.read()
                fields = stat[stat.rfind(")") + 2:].split()
                children.setdefault(int(fields[1]), []).append(pid)
                rss[pid] = int(fields[21]) * page
            except (OSError, ValueError, IndexError):
                continue
        total, todo = 0, [root]
        while todo:
            pid = todo.pop()
            total += rss.get(pid, 0)
            todo.extend(children.get(pid, []))
        return total

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self._tree_rss())
        if self._nvml is not None:
            with contextlib.suppress(BaseException):  # noqa: BLE001
                self.peak_gpu_used = max(self.peak_gpu_used, int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used))

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self.sample()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self.sample()
        out: dict[str, Any] = {"peak_host_rss_gib": round(self.peak_rss / 2 ** 30, 3)}
        if self._nvml is not None and self.gpu_baseline is not None:
            out["peak_gpu_used_gib"] = round(self.peak_gpu_used / 2 ** 30, 3)
            out["gpu_used_before_gib"] = round(self.gpu_baseline / 2 ** 30, 3)
            out["peak_gpu_delta_gib"] = round(max(0, self.peak_gpu_used - self.gpu_baseline) / 2 ** 30, 3)
        return out


def _weights_bytes(model: str) -> int | None:
    """Size of the checkpoint's weight files (a local folder, or the hub cache once vLLM fetched it)."""
    folder = model if os.path.isdir(model) else None
    if folder is None:
        try:
            from huggingface_hub import snapshot_download

            folder = snapshot_download(model, local_files_only=True)
        except BaseException:  # noqa: BLE001
            return None
    total = 0
    names = os.listdir(folder)
    exts = (".safetensors",) if any(n.endswith(".safetensors") for n in names) else (".bin", ".pt", ".pth")
    for name in names:
        if name.endswith(exts):
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(folder, name))
    return total or None


def _engine_config(llm: Any) -> dict[str, Any]:
    """What the engine actually configured, read from the LLM object (best effort across versions)."""
    out: dict[str, Any] = {}
    try:
        cfg = llm.llm_engine.vllm_config
    except BaseException:  # noqa: BLE001
        try:
            cfg = llm.llm_engine.get_vllm_config()
        except BaseException:  # noqa: BLE001
            return out

    def grab(name: str, fn: Any) -> None:
        try:
            value = fn()
        except BaseException:  # noqa: BLE001
            return
        if value is None or isinstance(value, (bool, int, float)):
            out[name] = value
        else:
            out[name] = str(value).replace("torch.", "")

    grab("device", lambda: getattr(cfg.device_config, "device_type", None) or cfg.device_config.device)
    grab("dtype", lambda: cfg.model_config.dtype)
    grab("quantization", lambda: cfg.model_config.quantization)
    grab("max_model_len", lambda: int(cfg.model_config.max_model_len))
    grab("kv_cache_dtype", lambda: cfg.cache_config.cache_dtype)
    grab("block_size", lambda: cfg.cache_config.block_size)
    grab("num_gpu_blocks", lambda: cfg.cache_config.num_gpu_blocks)
    grab("tensor_parallel_size", lambda: int(cfg.parallel_config.tensor_parallel_size))
    grab("enforce_eager", lambda: bool(cfg.model_config.enforce_eager))
    grab("gpu_memory_utilization", lambda: float(cfg.cache_config.gpu_memory_utilization))
    return out


class _TinyBuild:
    """Builds the tiny model in a fresh interpreter, never in this process, alongside vLLM's import.

    Building runs torch's CPU kernels, which start an OpenMP thread pool; vLLM then forks its engine
    core from this process, and a forked child of a process whose OpenMP pool has run hangs in its
    first parallel CPU operation (seen on an H200: the engine core stuck for good in the CPU
    ``torch.zeros`` of ``InputBatch.__init__``, right after the sampler was chosen). A fresh
    interpreter imports torch and transformers itself, so it starts before vLLM's import and runs
    beside it."""

    def __init__(self, out: str) -> None:
        import subprocess

        self.out = out
        self.log_path = os.path.join(os.getcwd(), "tiny-build.log")
        self.t0 = _now()
        self.seconds: float | None = None
        code = "import sys, bwdoctor_tinymodel; print(bwdoctor_tinymodel.build(sys.argv[1]))"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", code, out], cwd=os.getcwd(), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait(self) -> str:
        rc = self.proc.wait()
        self.seconds = round(_now() - self.t0, 3)
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except OSError:
            text = ""
        if text:
            print(text, end="" if text.endswith("\n") else "\n", flush=True)
        if rc != 0:
            lines = [ln for ln in text.splitlines() if ln.strip()]
            raise RuntimeError(lines[-1] if lines else f"the build exited with code {rc}")
        return self.out

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()


def child_smoke(args: dict[str, Any], w: _Writer) -> None:
    """Load a model with vLLM's LLM API and greedily generate a fixed number of tokens."""
    t_start = _now()
    timings: dict[str, Any] = {}
    w.data["timings"] = timings
    model = str(args.get("model") or "")
    builder = None
    if not model:
        try:
            builder = _TinyBuild(os.path.join(os.getcwd(), "tiny-llama"))
        except OSError as exc:
            _fail(w, exc, "could not build the tiny test model: ")
            return
    w.stage("import")
    try:
        import vllm
        from vllm import LLM, SamplingParams
    except BaseException as exc:  # noqa: BLE001
        if builder is not None:
            builder.stop()
        _fail(w, exc)
        w.data["import_failed"] = isinstance(exc, ImportError) and "vllm" in str(exc)
        return
    timings["import_s"] = round(_now() - t_start, 3)
    engine: dict[str, Any] = {"version": getattr(vllm, "__version__", None)}
    w.data["engine"] = engine
    if builder is not None:
        w.stage("build")
        t = _now()
        try:
            model = builder.wait()
        except BaseException as exc:  # noqa: BLE001
            _fail(w, exc, "could not build the tiny test model: ")
            return
        timings["build_model_s"] = builder.seconds  # alongside the import: the wait is build_wait_s
        timings["build_wait_s"] = round(_now() - t, 3)
        engine["model_source"] = "tiny"
    else:
        engine["model_source"] = "user"
        if model.startswith(("/", "./", "../", "~")) and not os.path.exists(os.path.expanduser(model)):
            w.stage("load")
            w.data["error"] = f"the model path {model} does not exist"
            print(f"[bwdoctor] ERROR: {w.data['error']}", flush=True)
            return
    engine["model"] = model
    sampler = _MemorySampler()
    w.stage("load")
    kwargs: dict[str, Any] = {"model": model, "seed": 0}
    for key in ("dtype", "quantization", "max_model_len", "enforce_eager", "gpu_memory_utilization",
                "tensor_parallel_size", "kv_cache_dtype", "trust_remote_code"):
        if args.get(key) is not None:
            kwargs[key] = args[key]
    engine["requested"] = {k: v for k, v in kwargs.items() if k not in ("model", "seed")}
    t = _now()
    try:
        llm = LLM(**kwargs)
    except BaseException as exc:  # noqa: BLE001
        _fail(w, exc)
        w.data["memory"] = sampler.stop()
        return
    timings["load_s"] = round(_now() - t, 3)
    engine.update(_engine_config(llm))
    w.flush()
    w.stage("generate")
    prompt = str(args.get("prompt") or "hello world")
    n_tokens = int(args.get("max_tokens") or 64)
    try:
        t = _now()
        llm.generate([prompt], SamplingParams(max_tokens=2, temperature=0.0, ignore_eos=True), use_tqdm=False)
        timings["first_request_s"] = round(_now() - t, 4)  # includes any lazy warm-up
        # each figure is the median of REPEATS timed requests (one request varies by a third on an H200)
        ttfts = []
        for _ in range(REPEATS):
            t = _now()
            llm.generate([prompt], SamplingParams(max_tokens=1, temperature=0.0, ignore_eos=True), use_tqdm=False)
            ttfts.append(_now() - t)
        runs = []
        for _ in range(REPEATS):
            t = _now()
            outs = llm.generate([prompt], SamplingParams(max_tokens=n_tokens, temperature=0.0, ignore_eos=True),
                                use_tqdm=False)
            runs.append((_now() - t, outs))
    except BaseException as exc:  # noqa: BLE001
        _fail(w, exc)
        w.data["memory"] = sampler.stop()
        return
    ttft = sorted(ttfts)[len(ttfts) // 2]
    total, outs = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
    completion = outs[0].outputs[0]
    produced = len(completion.token_ids)
    timings["ttft_s"] = round(ttft, 4)
    timings["generate_s"] = round(total, 4)
    timings["generate_runs_s"] = [round(r[0], 4) for r in runs]
    if produced > 1 and total > ttft:
        timings["decode_tps"] = round((produced - 1) / (total - ttft), 2)
    timings["overall_tps"] = round(produced / total, 2) if total > 0 else None
    w.data["generation"] = {"prompt": prompt, "requested_token_count": n_tokens, "generated_token_count": produced,
                            "text": completion.text[:2000], "token_ids": list(completion.token_ids)[:n_tokens],
                            "finish_reason": getattr(completion, "finish_reason", None)}
    memory = sampler.stop()
    memory["weights_file_bytes"] = _weights_bytes(model)
    w.data["memory"] = memory
    if engine.get("device") in (None, "cuda"):
        with contextlib.suppress(BaseException):  # noqa: BLE001
            import torch

            if torch.cuda.is_available():
                engine["gpu_name"] = torch.cuda.get_device_name(0)
                cap = torch.cuda.get_device_capability(0)
                engine["compute_capability"] = f"{cap[0]}.{cap[1]}"
    timings["total_s"] = round(_now() - t_start, 3)
    w.data.setdefault("stage_at", {})["done"] = time.time()
    w.data["stage"] = "done"
    w.data["ok"] = produced > 0
    if not produced:
        w.data["error"] = "the engine returned no tokens"
    w.flush()
    with contextlib.suppress(BaseException):  # noqa: BLE001
        del llm


MODES = {"kernel": child_kernel, "probes": child_probes, "smoke": child_smoke}


def child_entry(argv: list[str]) -> int:
    mode, args_path, result_path = argv[1], argv[2], argv[3]
    with open(args_path, encoding="utf-8") as fh:
        args = json.load(fh)
    w = _Writer(result_path)
    w.data["mode"] = mode
    w.data["python"] = sys.version.split()[0]
    w.flush()
    with contextlib.suppress(Exception):
        import resource

        # a stuck run is ended with SIGABRT (stack dumps): no core files from it or its engine processes
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        MODES[mode](args, w)
    except BaseException as exc:  # noqa: BLE001 - whatever happens, say it in the result
        import traceback

        w.data["ok"] = False
        w.data["error"] = _err(exc)
        traceback.print_exc()
    w.data["finished"] = True
    w.flush()
    print(f"[bwdoctor] done: ok={w.data.get('ok')}", flush=True)
    sys.stdout.flush()
    # vLLM's engine processes are ours to end: leave promptly, the parent kills the group.
    os._exit(0)


if __name__ == "__main__":
    child_entry(sys.argv)
