"""The user's cache folder for what bwdoctor derives from installed files and can derive again.

``$XDG_CACHE_HOME/bwdoctor`` (``~/.cache/bwdoctor`` by default). Every entry is named by a key
computed from the files it was derived from, so a changed file gets a new entry, never a stale one.
Nothing here is needed for a correct answer: an entry that cannot be read or written is derived
again, and a write is atomic (a temporary file renamed into place), so a reader never sees half.
"""

from __future__ import annotations

import contextlib
import json
import os
import zlib
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bwdoctor"


def key_of(*parts: bytes | str) -> str:
    """A short key for the given contents or file stamps (two 32-bit checksums)."""
    data = b"\0".join(p.encode("utf-8", "surrogateescape") if isinstance(p, str) else p for p in parts)
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def read_json(name: str) -> Any:
    """The cached value ``name``, or None when there is none (or it cannot be read)."""
    with contextlib.suppress(OSError, ValueError):
        return json.loads((cache_dir() / name).read_text(encoding="utf-8"))
    return None


def write_json(name: str, value: Any) -> None:
    """Store ``value`` as ``name``; a folder that cannot be written is left alone."""
    path = cache_dir() / name
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(value), encoding="utf-8")
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()


def file_stamp(path: str) -> str | None:
    """What identifies one version of a file: its path, device, inode, size and modification and
    change times in nanoseconds (any write changes the change time). None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{os.path.realpath(path)}:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


class FileTable:
    """Values derived from files (the architectures a binary carries), one JSON table per kind,
    each value stored under its file's :func:`file_stamp`: a changed or replaced file is derived
    again. Load it once, ``get``/``put`` per file, ``save`` once."""

    def __init__(self, kind: str, version: int = 1) -> None:
        self.name = f"{kind}-v{version}.json"
        loaded = read_json(self.name)
        self.rows: dict[str, Any] = loaded if isinstance(loaded, dict) else {}
        self.changed = False

    def get(self, stamp: str | None) -> Any:
        return self.rows.get(stamp) if stamp else None

    def put(self, stamp: str | None, value: Any) -> None:
        if stamp and self.rows.get(stamp) != value:
            self.rows[stamp] = value
            self.changed = True

    def save(self, limit: int = 4096) -> None:
        """Write the table when it changed, keeping the ``limit`` newest rows."""
        if self.changed:
            if len(self.rows) > limit:
                self.rows = dict(list(self.rows.items())[-limit:])
            write_json(self.name, self.rows)
            self.changed = False


__all__ = ["FileTable", "cache_dir", "file_stamp", "key_of", "read_json", "write_json"]
