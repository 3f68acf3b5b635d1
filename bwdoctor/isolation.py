"""Deadlines: run a function in a thread or in a child process that is killed at its deadline.

``call_with_deadline`` (thread) is for pure code: a hung call is abandoned (the daemon thread
cannot block exit) and reported as a timeout. ``call_in_child`` (process) is for work that can
hang or crash the interpreter (driver calls, importing torch/vLLM, CUDA init): the child is
killed when the deadline passes, and a crash (segfault) is reported, not inherited.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_interrupted = threading.Event()
_handler_installed = threading.Event()
_children: dict[int, bool] = {}  # pid -> whether it leads its own process group
_children_lock = threading.Lock()
# the children that run bwdoctor code (ChildCall): asked to end their own children first, since
# those may lead process groups of their own (the smoke generation's vLLM) that a kill of the
# child's group does not reach
_cleaners: set[int] = set()
CLEANUP_WAIT_S = 2.0


class Terminated(KeyboardInterrupt):
    """The run was ended by a signal (SIGTERM, SIGHUP, SIGINT); ``exit_code`` is 128 + its number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else signum)
        self.signum = signum
        self.exit_code = 128 + signum


def register_child(pid: int, group: bool = True, cleans_up: bool = False) -> None:
    """Remember a child process (and, with ``group``, the process group it leads) so that a
    signal ending bwdoctor ends it too. A child that ``cleans_up`` is sent SIGTERM first and
    given a moment to end the children it registered itself."""
    with _children_lock:
        _children[pid] = group
        if cleans_up:
            _cleaners.add(pid)


def unregister_child(pid: int) -> None:
    with _children_lock:
        _children.pop(pid, None)
        _cleaners.discard(pid)


def kill_child(pid: int, group: bool = True) -> None:
    """SIGKILL a child and, when it leads a process group, every process of that group."""
    if group:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def _gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie not yet reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False


def kill_children(locked: bool = True) -> None:
    """End every registered child with its descendants (at a signal and at exit). Children that
    clean up get SIGTERM and up to ``CLEANUP_WAIT_S`` to end theirs first. ``locked=False`` is
    for a signal handler, which must not wait for a lock the interrupted code may hold."""
    if locked:
        with _children_lock:
            items, cleaners = list(_children.items()), set(_cleaners)
            _children.clear()
            _cleaners.clear()
    else:
        items, cleaners = list(_children.items()), set(_cleaners)
        _children.clear()
        _cleaners.clear()
    waiting = []
    for pid in cleaners:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
            waiting.append(pid)
    end = time.monotonic() + CLEANUP_WAIT_S
    while waiting and time.monotonic() < end:
        waiting = [pid for pid in waiting if not _gone(pid)]
        if waiting:
            time.sleep(0.02)
    for pid, group in items:
        kill_child(pid, group)


def _end_child(signum: int, frame: Any) -> None:
    """In a ChildCall child: a signal ends what it started, then the child."""
    kill_children(locked=False)
    os._exit(128 + signum)


def install_interrupt_handler() -> None:
    """Make Ctrl-C distinguishable from a plugin raising ``KeyboardInterrupt`` itself: the
    handler records the signal before raising. SIGTERM and SIGHUP end the run the same way
    (exit 143 and 129); every child process is killed with its process group first. Only the
    main thread may install it."""

    def handler(signum: int, frame: Any) -> None:
        _interrupted.set()
        kill_children(locked=False)
        raise Terminated(signum)

    with contextlib.suppress(ValueError, OSError):  # not the main thread, or no SIGINT here
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup and background jobs keep theirs
                signal.signal(sig, handler)
        _handler_installed.set()
        atexit.register(kill_children)


def describe_exit(returncode: int | None) -> str:
    """``killed by signal 11 (SIGSEGV)`` / ``exit code 3`` / ``no exit status``."""
    if returncode is None:
        return "no exit status"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-returncode} ({name})"
    return f"exit code {returncode}"


@dataclass
class CappedRun:
    returncode: int | None
    output: str
    timed_out: bool = False
    truncated: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.error


def run_capped(argv: list[str], timeout: float = 5.0, cap: int = 1 << 20, env: dict[str, str] | None = None,
               cwd: str | None = None) -> CappedRun:
    """Run ``argv`` (no shell) in its own process group, standard output and error together,
    keeping at most ``cap`` bytes (the rest is read and dropped, so a flooding child neither
    blocks nor fills memory), decoded with ``errors="replace"``. At ``timeout`` the whole group
    (grandchildren included) is killed; it is killed after the child exits too, so that nothing
    it started outlives it."""
    import selectors
    import subprocess

    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=True)
    except (OSError, ValueError) as exc:
        return CappedRun(None, "", error=f"could not run {argv[0] if argv else '?'}: {getattr(exc, 'strerror', None) or exc}")
    register_child(proc.pid, True)
    chunks: list[bytes] = []
    kept = 0
    truncated = timed_out = False
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            if not sel.select(min(left, 0.5)):
                continue
            data = os.read(fd, 65536)
            if not data:
                break
            if kept < cap:
                part = data[: cap - kept]
                chunks.append(part)
                kept += len(part)
                truncated = truncated or len(part) < len(data)
            else:
                truncated = True
        if timed_out:
            kill_child(proc.pid, True)
        try:
            rc: int | None = proc.wait(timeout=max(0.1, deadline - time.monotonic()) if not timed_out else 5.0)
        except subprocess.TimeoutExpired:  # the output closed but the child lives on
            timed_out = True
            kill_child(proc.pid, True)
            rc = proc.wait(timeout=5.0)
    finally:
        sel.close()
        proc.stdout.close()
        kill_child(proc.pid, True)  # descendants that outlived it
        unregister_child(proc.pid)
    return CappedRun(rc, b"".join(chunks).decode("utf-8", errors="replace"), timed_out, truncated)


def user_interrupted(exc: BaseException) -> bool:
    """True when ``exc`` is the user's Ctrl-C (which must end the run), False when plugin code
    raised ``KeyboardInterrupt`` (or another ``BaseException``) on its own. Without the handler
    installed every ``KeyboardInterrupt`` counts as the user's."""
    if not isinstance(exc, KeyboardInterrupt):
        return False
    return _interrupted.is_set() or not _handler_installed.is_set()


@dataclass
class CallResult:
    ok: bool
    value: Any = None
    error: str = ""  # "TypeError: ..." / "timed out after 5.0 s" / "child died with signal 11"
    trace: str = ""
    timed_out: bool = False
    exception: BaseException | None = None
    duration_s: float = 0.0


class ThreadCall:
    """``func(*args)`` started in a daemon thread; ``result()`` waits until the deadline, then
    abandons it (a daemon thread cannot block the exit)."""

    def __init__(self, func: Callable[..., Any], args: tuple = (), timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.box: dict[str, Any] = {}
        self.start = time.perf_counter()
        self.thread = threading.Thread(target=self._target, args=(func, args), daemon=True,
                                       name=f"bwdoctor-{getattr(func, '__name__', 'call')}")
        self.thread.start()

    def _target(self, func: Callable[..., Any], args: tuple) -> None:
        try:
            self.box["value"] = func(*args)
            self.box["end"] = time.perf_counter()
        except BaseException as exc:  # noqa: BLE001 - everything becomes a result
            self.box["exc"] = exc
            self.box["trace"] = traceback.format_exc()
            self.box["end"] = time.perf_counter()

    def result(self) -> CallResult:
        self.thread.join(max(0.0, self.start + self.timeout - time.perf_counter()))
        if self.thread.is_alive():
            return CallResult(False, error=f"timed out after {self.timeout:g} s", timed_out=True,
                              duration_s=time.perf_counter() - self.start)
        dur = self.box.get("end", time.perf_counter()) - self.start
        if "exc" in self.box:
            exc = self.box["exc"]
            return CallResult(False, error=f"{type(exc).__name__}: {exc}", trace=self.box.get("trace", ""),
                              exception=exc, duration_s=dur)
        return CallResult(True, value=self.box.get("value"), duration_s=dur)


class _Job:
    __slots__ = ("func", "args", "box", "done")

    def __init__(self, func: Callable[..., Any], args: tuple) -> None:
        self.func, self.args = func, args
        self.box: dict[str, Any] = {}
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self.box["value"] = self.func(*self.args)
        except BaseException as exc:  # noqa: BLE001 - everything becomes a result
            self.box["exc"] = exc
            self.box["trace"] = traceback.format_exc()
        finally:
            self.box["end"] = time.perf_counter()
            self.done.set()


class _Worker:
    """A daemon thread that runs calls one after another, so that a run's hundreds of short
    calls (hooks, checks, parsers) do not each start a thread. A call that overruns its deadline
    keeps this worker; the next call gets a new one."""

    def __init__(self) -> None:
        import queue

        self.jobs: Any = queue.SimpleQueue()
        self.busy = False
        self.thread = threading.Thread(target=self._loop, daemon=True, name="bwdoctor-worker")
        self.thread.start()

    def _loop(self) -> None:
        while True:
            job = self.jobs.get()
            job.run()


_worker: _Worker | None = None
_worker_lock = threading.Lock()


def _forget_worker_in_child() -> None:
    """A forked child has no worker thread (only the forking thread survives a fork): it starts its own."""
    global _worker, _worker_lock
    _worker = None
    _worker_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_worker_in_child)


def _take_worker() -> _Worker | None:
    """The idle worker (started on first use), or None when it is busy with another caller's call
    or the caller is the worker itself (a call made from inside a call)."""
    global _worker
    with _worker_lock:
        if _worker is not None and (_worker.busy or threading.current_thread() is _worker.thread):
            return None
        if _worker is None:
            _worker = _Worker()
        _worker.busy = True
        return _worker


def _give_back(worker: _Worker, hung: bool) -> None:
    global _worker
    with _worker_lock:
        if hung:
            if _worker is worker:
                _worker = None  # abandoned: still inside the hung call
        else:
            worker.busy = False


def call_with_deadline(func: Callable[..., Any], args: tuple = (), timeout: float = 5.0) -> CallResult:
    """Run ``func(*args)`` on a daemon worker thread; give up at ``timeout`` seconds (the call is
    abandoned, its thread cannot block the exit). Calls made while the worker is busy (from
    another thread, or from inside a call) get a thread of their own."""
    worker = _take_worker()
    if worker is None:
        return ThreadCall(func, args, timeout).result()
    job = _Job(func, args)
    start = time.perf_counter()
    worker.jobs.put(job)
    finished = False
    try:
        finished = job.done.wait(timeout)
    finally:
        _give_back(worker, hung=not finished)
    if not finished:
        return CallResult(False, error=f"timed out after {timeout:g} s", timed_out=True,
                          duration_s=time.perf_counter() - start)
    dur = job.box.get("end", time.perf_counter()) - start
    if "exc" in job.box:
        exc = job.box["exc"]
        return CallResult(False, error=f"{type(exc).__name__}: {exc}", trace=job.box.get("trace", ""),
                          exception=exc, duration_s=dur)
    return CallResult(True, value=job.box.get("value"), duration_s=dur)


def _child_main(conn: Any, func: Callable[..., Any], args: tuple, mask: Any = None) -> None:
    """The child's side: run ``func``, send ``(kind, value, trace)`` through ``conn`` (``send``).
    ``mask``: the signal mask to restore once the child's own handlers are in place."""
    global _children, _children_lock, _cleaners
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # its own process group: at the deadline it dies with whatever it started
    # the parent's children are not this child's to end (and the lock may have been held at fork)
    _children, _children_lock, _cleaners = {}, threading.Lock(), set()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, _end_child)
    if mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    try:
        value = func(*args)
        if hasattr(value, "__iter__") and not isinstance(value, (str, bytes, dict, list, tuple)):
            value = list(value)
        conn.send(("ok", value, ""))
    except BaseException as exc:  # noqa: BLE001
        try:
            conn.send(("exc", exc, traceback.format_exc()))
        except Exception:  # the exception itself may not pickle
            conn.send(("err", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        conn.close()


class _PipeWriter:
    """The child's end of a pipe: one message, a length-prefixed pickle."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, msg: Any) -> None:
        import pickle

        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)  # may raise: nothing written then
        view = memoryview(len(data).to_bytes(8, "little") + data)
        while view:
            view = view[os.write(self.fd, view):]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _flush_std_streams() -> None:
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _context() -> Any:
    import multiprocessing as mp  # only where there is no fork: importing it costs start-up time

    return mp.get_context("spawn")


class ChildCall:
    """A started child process; ``result()`` waits until its deadline and kills it then.

    Where ``os.fork`` exists the child is forked directly and answers through a pipe (a
    length-prefixed pickle): importing :mod:`multiprocessing` for it cost a quick run more than
    the child itself. Elsewhere a ``multiprocessing`` spawn child does the same."""

    def __init__(self, func: Callable[..., Any], args: tuple = (), timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.start = time.perf_counter()
        self.proc: Any = None
        self._fd: int | None = None
        self._buf = bytearray()
        self._status: int | None = None
        self.pid: int | None = None
        if hasattr(os, "fork"):
            self._fork(func, args)
            return
        ctx = _context()
        self._recv, send = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_child_main, args=(send, func, args), daemon=True)
        self.proc.start()
        send.close()
        self.pid = self.proc.pid
        if self.pid is not None:
            with contextlib.suppress(OSError):
                os.setpgid(self.pid, self.pid)  # (also done by the child: no race either way)
            register_child(self.pid, True, cleans_up=True)

    # ------------------------------------------------------------------ forked child
    def _fork(self, func: Callable[..., Any], args: tuple) -> None:
        """Fork the child and register it before a signal may end the run: SIGINT/SIGTERM/SIGHUP are
        held back from fork to registration (the run's handler kills registered children only), and
        a child forked but not yet registered when the run is ended anyway is killed here."""
        _flush_std_streams()  # what the parent buffered must not be written twice
        r, w = os.pipe()
        held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, held)
        pid = 0
        try:
            pid = os.fork()
            if pid == 0:  # the child
                try:
                    os.close(r)
                    with contextlib.suppress(OSError):
                        fd = os.open(os.devnull, os.O_RDONLY)
                        os.dup2(fd, 0)
                    _child_main(_PipeWriter(w), func, args, old_mask)
                    _flush_std_streams()
                finally:
                    os._exit(0)
            os.close(w)
            self.pid = pid
            self._fd = r
            with contextlib.suppress(OSError):
                os.setpgid(pid, pid)  # (also done by the child: no race either way)
            register_child(pid, True, cleans_up=True)
        except BaseException:
            if pid:
                kill_child(pid, True)
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _message(self) -> Any:
        """The child's message once all of it has been read, else None."""
        if len(self._buf) < 8:
            return None
        size = int.from_bytes(self._buf[:8], "little")
        if len(self._buf) < 8 + size:
            return None
        import pickle

        return pickle.loads(bytes(self._buf[8:8 + size]))

    def _reap(self, wait_s: float) -> bool:
        """Collect the child's exit status, waiting up to ``wait_s``; True once it has exited."""
        if self._status is not None:
            return True
        end = time.monotonic() + wait_s
        while True:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)  # type: ignore[arg-type]
            except ChildProcessError:
                self._status = 0
                return True
            if pid:
                self._status = os.waitstatus_to_exitcode(status)
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.005)

    def _read_forked(self, deadline: float) -> tuple[Any, bool]:
        """(the message or None, whether the pipe reached its end)."""
        import select

        assert self._fd is not None
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return None, False
            try:
                ready, _, _ = select.select([self._fd], [], [], min(remaining, 1.0))
            except InterruptedError:
                continue
            if not ready:
                continue
            try:
                chunk = os.read(self._fd, 1 << 20)
            except OSError:
                return None, True
            if not chunk:
                return self._message(), True
            self._buf += chunk
            msg = self._message()
            if msg is not None:
                return msg, False

    def result(self) -> CallResult:
        if self.proc is not None:
            return self._result_mp()
        deadline = self.start + self.timeout
        try:
            msg, eof = self._read_forked(deadline)
        except Exception as exc:  # noqa: BLE001 - a message that does not unpickle
            msg, eof = ("err", f"the child's answer could not be read: {type(exc).__name__}: {exc}", ""), True
        dur = time.perf_counter() - self.start
        if msg is None:
            exited = self._reap(max(0.0, min(1.0, deadline - time.perf_counter())) if eof else 0.0)
            if not exited:
                self._kill()
                return CallResult(False, error=f"timed out after {self.timeout:g} s (child process killed)",
                                  timed_out=True, duration_s=dur)
            code = self._status
            self._kill()
            what = describe_exit(code).replace("killed by ", "")
            return CallResult(False, error=f"child process died with {what} before answering", duration_s=dur)
        self._reap(1.0)
        self._kill()  # also whatever it started
        return self._answer(msg, dur)

    @staticmethod
    def _answer(msg: Any, dur: float) -> CallResult:
        kind, value, trace = msg
        if kind == "ok":
            return CallResult(True, value=value, duration_s=dur)
        if kind == "exc":
            return CallResult(False, error=f"{type(value).__name__}: {value}", trace=trace, exception=value,
                              duration_s=dur)
        return CallResult(False, error=str(value), trace=trace, duration_s=dur)

    # ------------------------------------------------------------------ multiprocessing child
    def _result_mp(self) -> CallResult:
        deadline = self.start + self.timeout
        msg = None
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                if self._recv.poll(min(remaining, 0.05)):
                    msg = self._recv.recv()
                    break
            except (EOFError, OSError):
                break
            if not self.proc.is_alive() and not self._recv.poll(0):
                break
        if msg is None and self.proc.is_alive():
            # the pipe closed (EOF) or the deadline passed: give a dying child a moment to be reaped
            self.proc.join(max(0.0, min(1.0, deadline - time.perf_counter())))
        dur = time.perf_counter() - self.start
        if msg is None:
            if self.proc.is_alive():
                self._kill()
                return CallResult(False, error=f"timed out after {self.timeout:g} s (child process killed)",
                                  timed_out=True, duration_s=dur)
            self.proc.join(0.1)
            code = self.proc.exitcode
            self._kill()
            what = describe_exit(code).replace("killed by ", "")
            return CallResult(False, error=f"child process died with {what} before answering", duration_s=dur)
        self.proc.join(1.0)
        self._kill()  # also whatever it started
        return self._answer(msg, dur)

    def _kill(self) -> None:
        pid = self.pid
        if pid is not None:
            kill_child(pid, True)
            unregister_child(pid)
        if self.proc is not None:
            with contextlib.suppress(Exception):
                self.proc.kill()
                self.proc.join(1.0)
            with contextlib.suppress(Exception):
                self._recv.close()
        else:
            self._reap(1.0)  # a child stuck in the kernel (a hung driver call) stays a zombie until exit
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None


def call_in_child(func: Callable[..., Any], args: tuple = (), timeout: float = 10.0) -> CallResult:
    """Run ``func(*args)`` in a child process and wait for it (killed at ``timeout``)."""
    return ChildCall(func, args, timeout).result()

