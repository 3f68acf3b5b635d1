"""NCCL library helpers shared by the stack and multi-GPU collectors."""

from __future__ import annotations

import re
from pathlib import Path

_NCCL_STRING = re.compile(rb"NCCL version (\d+\.\d+\.\d+)")


def nccl_version_from_library(path: Path) -> str | None:
    """The ``NCCL version X.Y.Z`` string compiled into libnccl.so (read through mmap, no load)."""
    import mmap

    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            pos = mm.find(b"NCCL version ")
            if pos < 0:
                return None
            m = _NCCL_STRING.match(mm[pos:pos + 40])
            return m.group(1).decode() if m else None
    except (OSError, ValueError):
        return None
