"""Reading input files and writing output files safely.

Input files (an earlier report, evidence) may be pipes, huge, or not files at all: they are read
in bounded memory and refused with a :class:`BadInput` that says why (the CLI exits 2). Output is
written through a temporary file and a rename, never partially.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bwdoctor.types import Report


class BadInput(Exception):
    """An input file that cannot be read or is not valid (the CLI exits 2 with this message)."""


def _stdin_is_terminal() -> bool:
    """True when standard input is a terminal (False when it is closed or not a descriptor)."""
    try:
        return os.isatty(0)
    except OSError:
        return False


def encodable(text: str) -> str:
    """Text that encodes as UTF-8: strings from the machine (file names with undecodable bytes,
    a report with lone surrogates) keep their odd characters as backslash escapes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def write_atomic(path: str, text: str, mode: int | None = None) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never a partial file.

    A symbolic link is followed (the file it names is replaced, the link stays). An existing
    target that is not a regular file (``/dev/stdout``, a FIFO, a device) is written to directly,
    never replaced; a FIFO nobody reads from is an error rather than a hang. An existing file
    this user may not write is not replaced."""
    data = encodable(text).encode("utf-8")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory", path)
    special = os.path.abspath(path).startswith(("/dev/", "/proc/"))  # /dev/stdout, /proc/self/fd/N
    if st is not None and (special or not stat.S_ISREG(st.st_mode)):
        _write_stream(path, data)
        return
    real = os.path.realpath(path)
    if st is not None and not os.access(real, os.W_OK):
        raise PermissionError(errno.EACCES, "the file is read-only", path)
    directory = os.path.dirname(real) or "."
    import tempfile  # (with shutil and the archive modules: only when a file is written)

    fd, tmp = tempfile.mkstemp(prefix=".bwdoctor-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode if mode is not None else 0o644)
        os.replace(tmp, real)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_stream(path: str, data: bytes) -> None:
    """Write to a FIFO, a character device or a socket-like path without replacing it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OSError(errno.ENXIO, "nothing is reading from this FIFO", path) from None
        raise
    try:
        os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    finally:
        os.close(fd)


MAX_REPORT_BYTES = 256 * 1024 * 1024
MAX_REPORT_FACTS = 200_000
FIFO_IDLE_S = 30.0


def read_input_file(path: str, limit: int, what: str) -> bytes:
    """Read a whole input file of at most ``limit`` bytes. Regular files and pipes
    (``<(cat report.json)``) are read; a FIFO without a writer reads as empty, one whose writer
    stays silent for 30 s is an error; devices, sockets and folders are refused (exit 2)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise BadInput(f"cannot read {path}: it is a directory, not {what}")
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
            raise BadInput(f"cannot read {path}: not a regular file or a pipe")
        if stat.S_ISREG(st.st_mode) and st.st_size > limit:
            raise BadInput(f"{path} is larger than {limit // (1024 * 1024)} MiB: not {what}")
        chunks: list[bytes] = []
        total = 0
        import select

        while total <= limit:
            try:  # a FIFO without a writer reads as EOF at once; one with a silent writer blocks
                chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            except BlockingIOError:
                ready, _, _ = select.select([fd], [], [], FIFO_IDLE_S)
                if not ready:
                    raise BadInput(f"cannot read {path}: nothing arrived through the pipe for {FIFO_IDLE_S:g} s") from None
                continue
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise BadInput(f"{path} is larger than {limit // (1024 * 1024)} MiB: not {what}")
        return b"".join(chunks)
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def load_report(path: str) -> Report:
    import json

    from bwdoctor.types import Report

    raw = read_input_file(path, MAX_REPORT_BYTES, "a bwdoctor report")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path} is not a JSON bwdoctor report: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path} is not a JSON bwdoctor report: {exc}") from None
    except RecursionError:
        raise BadInput(f"{path} is not a valid bwdoctor report: its JSON is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with thousands of digits
        raise BadInput(f"{path} is not a valid bwdoctor report: {exc}") from None
    facts = data.get("snapshot", {}).get("facts") if isinstance(data, dict) and isinstance(data.get("snapshot"), dict) else None
    if isinstance(data, dict) and isinstance(data.get("facts"), list) and "snapshot" not in data:
        facts = data["facts"]
    if isinstance(facts, list) and len(facts) > MAX_REPORT_FACTS:
        raise BadInput(f"{path} is not a valid bwdoctor report: {len(facts)} facts (a report has at most "
                         f"{MAX_REPORT_FACTS})")
    try:
        if isinstance(data, dict) and "snapshot" not in data and isinstance(data.get("facts"), list) \
                and "schema_version" in data and "findings" not in data:
            # what `bwdoctor snapshot` writes: the facts alone
            from bwdoctor.types import Snapshot

            return Report(mode="snapshot", snapshot=Snapshot.from_dict(data))
        return Report.from_dict(data)
    except RecursionError:
        raise BadInput(f"{path} is not a valid bwdoctor report: a value is nested too deeply") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadInput(f"{path} is not a valid bwdoctor report: {exc}") from None


STDIN_NAMES = ("-",)
_JSON_HEAD = 4096


def is_bwdoctor_json(path: str) -> bool:
    """True when ``path`` is a regular file that starts like a bwdoctor report or snapshot (a JSON
    object with a ``schema_version`` and ``facts`` or ``snapshot``)."""
    import stat as st_

    try:
        if not st_.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as fh:
            head = fh.read(_JSON_HEAD).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError:
        return False
    return head.startswith(b"{") and b'"schema_version"' in head and (b'"facts"' in head or b'"tool"' in head
                                                                       or b'"snapshot"' in head)


def check_named_inputs(paths: Sequence[str]) -> list[str]:
    """The evidence paths named on the command line, ``-`` (standard input) as ``/dev/stdin``.
    :class:`BadInput` (exit 2) names the first that cannot be used: missing or unreadable, a device
    or socket (``/dev/zero``), a folder without a file in it, a terminal as standard input."""
    import stat as st_

    out: list[str] = []
    for p in paths:
        if p in STDIN_NAMES:
            if _stdin_is_terminal():
                raise BadInput("analyze -: standard input is a terminal; pipe or redirect the evidence into it")
            out.append("/dev/stdin")
            continue
        try:
            mode = os.stat(p).st_mode
        except OSError as exc:
            raise BadInput(f"cannot read {p}: {exc.strerror or exc}") from None
        if st_.S_ISDIR(mode):
            if not any(files for _, _, files in os.walk(p)):
                raise BadInput(f"{p} is an empty folder: no evidence to analyze")
        elif not (st_.S_ISREG(mode) or st_.S_ISFIFO(mode)):
            raise BadInput(f"cannot read {p}: not a regular file or a pipe (a device, socket or the like)")
        elif not os.access(p, os.R_OK):
            raise BadInput(f"cannot read {p}: permission denied")
        out.append(p)
    return out
