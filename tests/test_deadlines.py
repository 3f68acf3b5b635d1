"""call_with_deadline: one reusable worker thread, a deadline per call, and a fresh worker after a
call that hangs."""

import threading
import time

from bwdoctor import isolation


def test_results_errors_and_reuse_of_one_worker():
    names = set()

    def where():
        names.add(threading.current_thread().ident)
        return 42

    for _ in range(20):
        res = isolation.call_with_deadline(where, (), 5.0)
        assert res.ok and res.value == 42
    assert len(names) == 1  # one thread served every call

    res = isolation.call_with_deadline(lambda: 1 / 0, (), 5.0)
    assert not res.ok and res.error.startswith("ZeroDivisionError") and "Traceback" in res.trace
    assert isinstance(res.exception, ZeroDivisionError)

    def leaves():
        raise SystemExit(3)

    res = isolation.call_with_deadline(leaves, (), 5.0)
    assert not res.ok and isinstance(res.exception, SystemExit)


def test_a_hung_call_times_out_and_the_next_call_runs_on_a_new_worker():
    release = threading.Event()
    t0 = time.perf_counter()
    res = isolation.call_with_deadline(release.wait, (30.0,), 0.2)
    assert res.timed_out and not res.ok and "timed out after 0.2 s" in res.error
    assert time.perf_counter() - t0 < 5.0
    t1 = time.perf_counter()
    res = isolation.call_with_deadline(lambda: "next", (), 5.0)
    assert res.ok and res.value == "next" and time.perf_counter() - t1 < 1.0
    release.set()


def test_a_call_from_inside_a_call_and_calls_from_two_threads():
    inner = isolation.call_with_deadline(lambda: isolation.call_with_deadline(lambda: "inner", (), 5.0).value, (), 5.0)
    assert inner.ok and inner.value == "inner"

    gate = threading.Event()
    out = {}

    def slow():
        gate.wait(5.0)
        return "slow"

    t = threading.Thread(target=lambda: out.setdefault("a", isolation.call_with_deadline(slow, (), 10.0)))
    t.start()
    time.sleep(0.05)
    # the worker is busy with the other thread's call: this one is not queued behind it
    quick = isolation.call_with_deadline(lambda: "quick", (), 2.0)
    gate.set()
    t.join(10.0)
    assert quick.ok and quick.value == "quick"
    assert out["a"].ok and out["a"].value == "slow"


def test_a_forked_child_runs_calls_on_a_worker_of_its_own(tmp_path):
    """The worker thread does not survive a fork: a call in the child must not wait for it."""
    import os

    assert isolation.call_with_deadline(lambda: 1, (), 5.0).ok  # the parent's worker exists
    pid = os.fork()
    if pid == 0:  # the child
        res = isolation.call_with_deadline(lambda: "child", (), 2.0)
        os._exit(0 if res.ok and res.value == "child" else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _big():
    return "x" * (5 << 20)


def _hang():
    time.sleep(60)


def _quits():
    import os

    os._exit(0)


class _Unpicklable(Exception):
    def __init__(self, a, b):
        super().__init__(a)
        self.b = b


def _raises_unpicklable():
    raise _Unpicklable("first", "second")


def _crashes():
    import os
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)


def test_child_calls_answer_fail_and_die_with_a_reason():
    res = isolation.call_in_child(_big, (), 30.0)
    assert res.ok and len(res.value) == 5 << 20  # more than a pipe holds: read while the child writes
    res = isolation.call_in_child(lambda: 1 / 0, (), 30.0)
    assert not res.ok and res.error.startswith("ZeroDivisionError") and isinstance(res.exception, ZeroDivisionError)
    res = isolation.call_in_child(_raises_unpicklable, (), 30.0)
    assert not res.ok and "_Unpicklable" in res.error
    t0 = time.perf_counter()
    res = isolation.call_in_child(_hang, (), 0.5)
    assert res.timed_out and "child process killed" in res.error and time.perf_counter() - t0 < 5
    res = isolation.call_in_child(_quits, (), 10.0)
    assert not res.ok and res.error == "child process died with exit code 0 before answering"
    res = isolation.call_in_child(_crashes, (), 10.0)
    assert not res.ok and "signal 11 (SIGSEGV)" in res.error


def test_a_run_ended_between_fork_and_registration_kills_the_child(monkeypatch):
    """The run's signal handler kills registered children only: a child forked but not yet
    registered when the run ends is killed by ChildCall itself."""
    import os

    import pytest

    forked = []
    real_fork = os.fork

    def fork():
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    def ended(pid, group=True, cleans_up=False):
        raise KeyboardInterrupt  # as the handler raises when SIGINT arrives right here

    monkeypatch.setattr(os, "fork", fork)
    monkeypatch.setattr(isolation, "register_child", ended)
    with pytest.raises(KeyboardInterrupt):
        isolation.ChildCall(_hang, (), 30.0)
    assert forked
    _, status = os.waitpid(forked[0], 0)  # reaped at once: it was killed, not left to sleep 60 s
    assert os.WIFSIGNALED(status)
