"""Deadlines: run a function in a thread or in a child process that is killed at its deadline.

``call_with_deadline`` (thread) is for pure code: a hung call is abandoned (the daemon thread
cannot block exit) and reported as a timeout. ``call_in_child`` (process) is for work that can
hang or crash the interpreter (driver calls, importing torch/vLLM, CUDA init): the child is
killed when the deadline passes, and a crash (segfault) is reported, not inherited.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_interrupted = threading.Event()
_handler_installed = threading.Event()


def install_interrupt_handler() -> None:
    """Make Ctrl-C distinguishable from a plugin raising ``KeyboardInterrupt`` itself: the
    handler records the signal before raising. Only the main thread may install it."""

    def handler(signum: int, frame: Any) -> None:
        _interrupted.set()
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError, OSError):  # not the main thread, or no SIGINT here
        signal.signal(signal.SIGINT, handler)
        _handler_installed.set()


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


def call_with_deadline(func: Callable[..., Any], args: tuple = (), timeout: float = 5.0) -> CallResult:
    """Run ``func(*args)`` in a daemon thread; give up at ``timeout`` seconds."""
    return ThreadCall(func, args, timeout).result()


def _child_main(conn: Any, func: Callable[..., Any], args: tuple) -> None:
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


def _context() -> Any:
    import multiprocessing as mp  # only when a child is started: importing it costs start-up time

    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


class ChildCall:
    """A started child process; ``result()`` waits until its deadline and kills it then."""

    def __init__(self, func: Callable[..., Any], args: tuple = (), timeout: float = 10.0) -> None:
        ctx = _context()
        self.timeout = timeout
        self.start = time.perf_counter()
        self._recv, send = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_child_main, args=(send, func, args), daemon=True)
        self.proc.start()
        send.close()

    def result(self) -> CallResult:
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
            what = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            return CallResult(False, error=f"child process died with {what} before answering", duration_s=dur)
        self.proc.join(1.0)
        if self.proc.is_alive():
            self._kill()
        kind, value, trace = msg
        if kind == "ok":
            return CallResult(True, value=value, duration_s=dur)
        if kind == "exc":
            return CallResult(False, error=f"{type(value).__name__}: {value}", trace=trace, exception=value,
                              duration_s=dur)
        return CallResult(False, error=str(value), trace=trace, duration_s=dur)

    def _kill(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.kill()
            self.proc.join(1.0)
        with contextlib.suppress(Exception):
            self._recv.close()


def call_in_child(func: Callable[..., Any], args: tuple = (), timeout: float = 10.0) -> CallResult:
    """Run ``func(*args)`` in a child process and wait for it (killed at ``timeout``)."""
    return ChildCall(func, args, timeout).result()

