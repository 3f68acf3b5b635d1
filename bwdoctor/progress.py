"""Live progress for long collectors (probes, the smoke generation), shown with rich.

The CLI opens a pipe and names its write end in ``BWDOCTOR_PROGRESS_FD``. Collectors, and the
child processes they start (forked collectors inherit it; subprocesses get it through
``pass_fds``), write short status lines to it; a reader thread in the CLI shows the latest one in
a rich status spinner on stderr with the time spent in the stage; when stderr is not a terminal
(``plain``), one line per stage.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from bwdoctor.redact import escape_controls, redact_text

PROGRESS_ENV = "BWDOCTOR_PROGRESS_FD"
PLAIN_AFTER_S = 2.0
"""Without a terminal, stage lines start once a step has run this long (quick steps print nothing)."""
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_NUMBERS = re.compile(r"\d+(?:\.\d+)?")


def progress_fd() -> int | None:
    """The descriptor a collector or its child should write status lines to, if any."""
    raw = os.environ.get(PROGRESS_ENV, "")
    return int(raw) if raw.isdigit() else None


def terminal_progress_fd() -> int | None:
    """Where a child should write its status lines: the CLI's progress channel when it has one,
    else the terminal on stderr, else nowhere."""
    fd = progress_fd()
    if fd is not None:
        return fd
    try:
        return 2 if os.isatty(2) else None
    except OSError:
        return None


def report(text: str) -> None:
    """Write one status line to the progress channel (no-op without one)."""
    fd = progress_fd()
    if fd is None:
        return
    with suppress(OSError):
        os.write(fd, (text.replace("\n", " ") + "\n").encode("utf-8", "replace"))


def clean(raw: bytes) -> list[str]:
    """The status texts in a chunk of bytes written by children (carriage returns and ANSI codes
    used for terminal redraws are dropped)."""
    out = []
    for part in re.split(rb"[\r\n]+", raw):
        text = escape_controls(redact_text(_ANSI.sub("", part.decode("utf-8", "replace")))).strip()
        if text.startswith("[bwdoctor]"):
            text = text[len("[bwdoctor]"):].strip()
        if text:
            out.append(text)
    return out


@contextmanager
def live_progress(enabled: bool, label: str, console: Any = None,
                  on_update: Callable[[str], None] | None = None, plain: bool = False) -> Iterator[None]:
    """Show ``label``, the latest status line from the progress channel (the stage) and the time
    spent in it while the block runs (``on_update`` also receives each status text).

    On a terminal: one rich status line on stderr, redrawn with the elapsed time. ``plain`` (stderr
    is not a terminal: a CI log, a file): once the step has run 2 s, one line per stage on stderr,
    ``bwdoctor: LABEL: STAGE (at 12.3 s)``, and a last line with the total time."""
    if not enabled:
        yield
        return
    import sys
    import time

    from rich.markup import escape

    start = time.monotonic()
    state: dict[str, Any] = {"text": "", "since": start}
    lock = threading.Lock()
    status: Any = None
    if not plain:
        from rich.console import Console

        con = console or Console(stderr=True)
        status = con.status(escape(label))
        status.start()

    def show() -> None:
        now = time.monotonic()
        with lock:
            text, since = state["text"], state["since"]
        if status is not None:
            stage = f": {text}" if text else ""
            status.update(escape(f"{label}{stage} ({now - since:.0f} s; {now - start:.0f} s in all)"))

    printed = {"any": False}

    def emit_line(text: str) -> None:
        if time.monotonic() - start < PLAIN_AFTER_S:  # a quick step stays silent
            return
        printed["any"] = True
        with suppress(OSError, ValueError):
            sys.stderr.write(f"bwdoctor: {label}: {text} (at {time.monotonic() - start:.1f} s)\n")
            sys.stderr.flush()

    read_end, write_end = os.pipe()
    old = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = str(write_end)
    done = threading.Event()

    def reader() -> None:
        pending = b""
        with os.fdopen(read_end, "rb", buffering=0) as fh:
            while True:
                try:
                    chunk = fh.read(4096)
                except OSError:
                    return
                if not chunk:
                    return
                pending += chunk
                texts = clean(pending)  # a status line may come without its end (terminal redraw style)
                if texts:
                    with lock:
                        changed = texts[-1] != state["text"]
                        # a stage is its words: "import 3 s / 240 s" is still the import stage
                        stage = _NUMBERS.sub("#", texts[-1])
                        new_stage = stage != state.get("stage")
                        if changed:
                            state["text"] = texts[-1]
                        if new_stage:
                            state["stage"], state["since"] = stage, time.monotonic()
                    if new_stage and plain:
                        emit_line(texts[-1])
                    show()
                    if on_update is not None:
                        on_update(texts[-1])
                cut = max(pending.rfind(b"\n"), pending.rfind(b"\r"))
                pending = pending[cut + 1:][-4096:]

    def ticker() -> None:
        late = False
        while not done.wait(0.5):
            show()
            if plain and not late and time.monotonic() - start >= PLAIN_AFTER_S:
                late = True  # the step turned out slow: say where it is
                with lock:
                    text = state["text"]
                if text and not printed["any"]:
                    emit_line(text)

    thread = threading.Thread(target=reader, daemon=True, name="bwdoctor-progress")
    thread.start()
    tick = threading.Thread(target=ticker, daemon=True, name="bwdoctor-progress-clock")
    tick.start()
    try:
        yield
    finally:
        done.set()
        if old is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = old
        os.close(write_end)
        thread.join(1.0)
        tick.join(1.0)
        if status is not None:
            status.stop()
        elif printed["any"]:
            emit_line("done")
