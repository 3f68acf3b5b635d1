"""Stages of a long child run (the vLLM smoke generation): progress, a deadline per stage, and the
Python stacks of a run that is stuck.

The parent of a child started by :func:`bwdoctor_checks._lib.torchprobe.run_child` polls it twice a
second. The stage comes from two places: the child's own marks (``RESULT.json``'s ``stage``,
rewritten at each step) and lines of the engine's log that end one step inside vLLM's ``LLM(...)``
constructor (``Model loading took`` ends the weight load; what follows, up to the first request, is
the profile run, torch.compile, CUDA-graph capture and kernel JIT: stage ``compile``). A stage never
goes back.

Progress: on a terminal (a progress descriptor), one line redrawn every second with the stage, its
elapsed time and its deadline; otherwise one plain line on stderr when a stage starts, and one when
the run ends.

When a stage outlives its deadline, every process of the child's group (the child, vLLM's engine
core and workers) is sent ``SIGABRT`` one after the other. The child runs with
``PYTHONFAULTHANDLER=1`` (inherited by the engine processes, forked or spawned), so each Python
process prints the stack of every thread into the log before it dies; :func:`stuck_frames` reads
those dumps back, and the finding names the stage and the frame it was stuck in.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from dataclasses import dataclass, field
from typing import Any

DUMP_WAIT_S = 1.0  # between two processes' dumps, so that their lines do not interleave
DUMP_MAX_PROCESSES = 8


@dataclass
class StagePlan:
    """The stages of a child run, in order, with a deadline (seconds) for each."""

    label: str
    order: tuple[str, ...]
    deadlines: dict[str, float]
    # (text in the log, stage it starts): the first occurrence moves the run to that stage
    log_marks: tuple[tuple[str, str], ...] = ()

    def rank(self, stage: str) -> int:
        return self.order.index(stage) if stage in self.order else -1

    def deadline(self, stage: str) -> float | None:
        value = self.deadlines.get(stage)
        return float(value) if value else None


def parse_deadlines(text: str | None) -> dict[str, float]:
    """``"load=900,compile=600"`` -> ``{"load": 900.0, "compile": 600.0}``; bad items are ignored."""
    out: dict[str, float] = {}
    for item in (text or "").replace(";", ",").split(","):
        name, _, value = item.partition("=")
        try:
            seconds = float(value)
        except ValueError:
            continue
        if name.strip() and seconds > 0:
            out[name.strip()] = seconds
    return out


@dataclass
class StageWatch:
    """Follows one child run: which stage it is in, since when, and whether it is stuck."""

    plan: StagePlan
    log_path: str
    result_path: str
    progress_fd: int | None = None  # a terminal (or the CLI's progress channel): redrawn status
    line_fd: int | None = None  # no terminal: one line per stage (stderr)
    stage: str = "start"
    stages: list[dict[str, Any]] = field(default_factory=list)
    stuck: str | None = None
    stuck_deadline: float | None = None
    scope: str | None = None  # "stage": the stage's own deadline; "run": the whole run's
    _t0: float = 0.0
    _stage_t0: float = 0.0
    _log_pos: int = 0
    _log_carry: str = ""
    _last_draw: float = 0.0
    _wall: float = 0.0
    _stuck_at: float | None = None

    def start(self, now: float) -> None:
        self._t0 = self._stage_t0 = now
        self._wall = time.time() - now  # the child stamps its stages with time.time()

    # ------------------------------------------------------------------ polling

    def poll(self, now: float) -> bool:
        """Update the stage; True when the current stage has outlived its deadline."""
        self._catch_up(now)
        elapsed = now - self._stage_t0
        deadline = self.plan.deadline(self.stage)
        self._draw(now, elapsed, deadline)
        if deadline is not None and elapsed > deadline:
            self.stuck, self.stuck_deadline, self._stuck_at = self.stage, deadline, now
            return True
        return False

    def _catch_up(self, now: float) -> None:
        """Enter every stage the child or the log reached since the last poll, in order, each at the
        time the child stamped it (else now)."""
        reached: dict[str, float] = {}
        stage, stamps = _read_stage(self.result_path)
        for name, wall in stamps.items():
            reached[name] = min(now, max(self._stage_t0, wall - self._wall))
        if stage and stage not in reached:
            reached[stage] = now
        for mark_stage in self._log_stages():
            reached.setdefault(mark_stage, now)
        for name, when in sorted(reached.items(), key=lambda kv: (self.plan.rank(kv[0]), kv[1])):
            if self.plan.rank(name) > self.plan.rank(self.stage):
                self._enter(name, max(when, self._stage_t0))

    def _log_stages(self) -> list[str]:
        if not self.plan.log_marks:
            return []
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._log_pos)
                data = fh.read(4 << 20)
        except OSError:
            return []
        self._log_pos += len(data)
        text = self._log_carry + data.decode("utf-8", "replace")
        self._log_carry = text[-256:]
        return [stage for mark, stage in self.plan.log_marks if mark in text]

    def _enter(self, stage: str, now: float) -> None:
        if self.stage != "start" or self.stages:
            self.stages.append({"stage": self.stage, "seconds": round(now - self._stage_t0, 2)})
        previous = self.stage
        self.stage = stage
        self._stage_t0 = now
        if self.line_fd is not None and stage not in ("done", "start"):
            deadline = self.plan.deadline(stage)
            after = f", {previous} took {self.stages[-1]['seconds']:g} s" if self.stages else ""
            limit = f" (deadline {deadline:g} s)" if deadline else ""
            self._write(self.line_fd, f"[bwdoctor] {self.plan.label}: stage {stage} started at "
                                      f"{now - self._t0:.0f} s{limit}{after}\n")

    def _draw(self, now: float, elapsed: float, deadline: float | None) -> None:
        if self.progress_fd is None or now - self._last_draw < 1.0:
            return
        self._last_draw = now
        limit = f" / {deadline:g} s" if deadline else ""
        self._write(self.progress_fd, f"\r\x1b[2K[bwdoctor] {self.plan.label}: {self.stage} {elapsed:.0f} s{limit} "
                                      f"(total {now - self._t0:.0f} s)")

    def finish(self, now: float, ok: bool | None = None) -> None:
        """Close the current stage and say how the run ended."""
        if self._stuck_at is not None:
            now = self._stuck_at  # the stuck stage ends where it was called stuck, not after the dumps
        else:
            self._catch_up(now)
        if self.stage not in ("done", "start") or not self.stages:
            self.stages.append({"stage": self.stage, "seconds": round(now - self._stage_t0, 2)})
        if self.progress_fd is not None:
            self._write(self.progress_fd, "\r\x1b[2K")
        if self.line_fd is not None:
            how = ("stuck in stage " + self.stuck) if self.stuck else ("finished" if ok else "ended")
            timeline = ", ".join(f"{s['stage']} {s['seconds']:g} s" for s in self.stages if s["stage"] != "start")
            self._write(self.line_fd, f"[bwdoctor] {self.plan.label}: {how} after {now - self._t0:.0f} s"
                                      + (f" ({timeline})" if timeline else "") + "\n")

    @staticmethod
    def _write(fd: int, text: str) -> None:
        with contextlib.suppress(OSError):
            os.write(fd, text.encode("utf-8", "replace"))


def _read_stage(path: str) -> tuple[str | None, dict[str, float]]:
    """The child's current stage and the wall-clock time it entered each (``stage_at``)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None, {}
    if not isinstance(data, dict):
        return None, {}
    stage = data.get("stage")
    raw = data.get("stage_at")
    stamps = {str(k): float(v) for k, v in raw.items() if isinstance(v, (int, float))} if isinstance(raw, dict) else {}
    return (stage if isinstance(stage, str) else None), stamps


# ------------------------------------------------------------------------------ stacks


def group_pids(pgid: int) -> list[int]:
    """The processes of a process group, newest first (engine workers before the engine core
    before the child)."""
    out = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return [pgid]
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="utf-8", errors="replace") as fh:
                stat = fh.read()
            fields = stat[stat.rfind(")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    return sorted(out, reverse=True) or [pgid]


def dump_stacks(pgid: int) -> int:
    """SIGABRT each process of the group in turn (each Python process with faulthandler on prints
    its threads' stacks into the log and dies); the number of processes signalled."""
    pids = group_pids(pgid)[:DUMP_MAX_PROCESSES]
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGABRT)
        time.sleep(DUMP_WAIT_S)
    return len(pids)


_FRAME_RE = re.compile(r'^\s+File "([^"]+)", line (\d+) in (\S+)')
_THREAD_RE = re.compile(r"^(Current thread|Thread) 0x[0-9a-f]+ .*most recent call first")
_FATAL = "Fatal Python error: Aborted"
# innermost frames that only say the thread waits for another one
_WAITING = re.compile(r"(^|/)(threading|selectors|queue|subprocess|multiprocessing/\w+|zmq/\S+|asyncio/\S+|"
                      r"concurrent/futures/\S+)\.py$")
_WAIT_FUNCS = {"wait", "poll", "select", "_poll", "recv", "recv_bytes", "_recv", "acquire", "join", "sleep",
               "wait_for_engine_startup", "get", "_wait_for_tstate_lock", "result", "run_forever", "_run_once"}


def short_path(path: str) -> str:
    """``/venv/lib/python3.12/site-packages/vllm/x.py`` -> ``vllm/x.py``."""
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            return path.rsplit(marker, 1)[1]
    m = re.search(r"/lib/python3\.\d+/(.+)$", path)
    return m.group(1) if m else path.rsplit("/", 2)[-1] if path.count("/") > 2 else path


def stuck_frames(log: str, limit: int = 3) -> list[dict[str, Any]]:
    """From the faulthandler dumps in ``log``: for each process that was aborted, the frames of the
    thread that was running, innermost first, and whether it was only waiting on another process.
    Working processes come first."""
    blocks: list[list[str]] = []
    lines = log.splitlines()
    i = 0
    while i < len(lines):
        if _FATAL in lines[i]:
            block: list[str] = []
            i += 1
            while i < len(lines) and _FATAL not in lines[i]:
                block.append(lines[i])
                i += 1
            blocks.append(block)
        else:
            i += 1
    out: list[dict[str, Any]] = []
    for block in blocks:
        threads: list[tuple[bool, list[dict[str, Any]]]] = []
        for line in block:
            if _THREAD_RE.match(line):
                threads.append((line.startswith("Current thread"), []))
                continue
            m = _FRAME_RE.match(line)
            if m and threads:
                threads[-1][1].append({"file": short_path(m.group(1)), "line": int(m.group(2)),
                                       "function": m.group(3), "stdlib": _stdlib(m.group(1))})
        # the thread that took the signal (the main thread, as a rule), else the oldest one listed
        chosen = [f for cur, f in threads if cur and f] or [f for _, f in threads if f][-1:]
        frames = chosen[0] if chosen else []
        if not frames:
            continue
        top = frames[0]
        waiting = bool(_WAITING.search(top["file"])) or top["function"] in _WAIT_FUNCS
        out.append({"frames": frames[:12], "waiting": waiting, "where": describe(frames)})
    out.sort(key=lambda b: bool(b["waiting"]))
    return out[:limit]


def _stdlib(path: str) -> bool:
    return path.startswith("<frozen") or (bool(re.search(r"/lib/python3\.\d+/", path))
                                          and "-packages/" not in path)


def describe(frames: list[dict[str, Any]], depth: int = 3) -> str:
    """The innermost frame, then the callers that are not the standard library (where the
    program itself was): ``vllm/a.py:133 in f ← vllm/b.py:650 in g ← ...``"""
    if not frames:
        return ""
    chosen = [frames[0]] + [f for f in frames[1:] if not f.get("stdlib")][:depth - 1]
    return " ← ".join(f"{f['file']}:{f['line']} in {f['function']}" for f in chosen)
