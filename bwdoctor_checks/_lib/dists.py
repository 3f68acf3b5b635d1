"""The installed distributions of the inspected environment, found by their metadata folders.

One walk of the environment's path serves every collector of a run (the package list, the stack
collectors, vLLM's ``envs.py``). Names and versions come from the ``NAME-VERSION.dist-info`` folder
names, which the wheel standard fixes; ``METADATA`` is read only where a collector asks for a
distribution's requirements, and a ``RECORD`` only where it asks for its files. Parsing every
``METADATA`` file (as ``importlib.metadata.distributions()`` does to learn the names) costs more
than the rest of a quick run on a large environment. ``.egg-info`` folders, whose names do not
carry the version, are read from their ``PKG-INFO``.

``site_paths(options)`` is where the inspected environment's packages are: the ``sys.path`` of the
interpreter given with ``--python`` (``RunOptions.extra["site_packages"]``), else ours.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bwdoctor.resolve import canonical_name

_DIST_INFO = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)\.dist-info$")
_MEMO_SECONDS = 5.0


def site_paths(options: Any) -> list[str]:
    """Where the inspected environment's packages are: its ``sys.path`` (``--python``), else ours."""
    import sys

    extra = getattr(options, "extra", None) or {}
    paths = extra.get("site_packages")
    if isinstance(paths, str):
        return [paths]
    return [str(p) for p in paths] if paths else list(sys.path)


@dataclass
class Dist:
    """One installed distribution: its canonical name, version and metadata folder."""

    name: str
    version: str
    path: str
    _meta: Any = field(default=None, repr=False, compare=False)

    @property
    def metadata_dist(self) -> Any:
        """The :class:`importlib.metadata.PathDistribution` of the folder (imported on first use)."""
        if self._meta is None:
            from importlib.metadata import PathDistribution

            self._meta = PathDistribution(Path(self.path))
        return self._meta

    @property
    def requires(self) -> list[str]:
        """The ``Requires-Dist`` entries (the header block of ``METADATA`` ends at its first blank line)."""
        if not self.path.endswith(".dist-info"):
            try:
                return list(self.metadata_dist.requires or [])
            except Exception:  # noqa: BLE001 - broken metadata: no requirements known
                return []
        out: list[str] = []
        try:
            with open(os.path.join(self.path, "METADATA"), encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if not line.strip():
                        break
                    if line.startswith("Requires-Dist:"):
                        out.append(line[len("Requires-Dist:"):].strip())
        except OSError:
            return []
        return out

    @property
    def files(self) -> list[str]:
        """The files its ``RECORD`` lists, as written there (paths relative to :meth:`locate_file`'s
        base). Read with :mod:`csv` as the wheel standard specifies, without making a path object
        of every row: FlashInfer's cubin wheel lists over 12 000 files."""
        if not self.path.endswith(".dist-info"):
            try:
                return [str(f) for f in self.metadata_dist.files or []]
            except Exception:  # noqa: BLE001 - broken metadata: no files known
                return []
        import csv

        try:
            with open(os.path.join(self.path, "RECORD"), encoding="utf-8", errors="replace", newline="") as fh:
                return [row[0] for row in csv.reader(fh) if row and row[0]]
        except (OSError, csv.Error):
            return []

    def locate_file(self, rel: Any) -> Path:
        """A path relative to the folder that holds the metadata folder (the site directory)."""
        return Path(self.path).parent / str(rel)


def _headers(path: str, names: tuple[str, ...]) -> dict[str, str]:
    """The first value of each named header in a metadata file's header block."""
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    break
                key, sep, value = line.partition(":")
                if sep and key in names and key not in out:
                    out[key] = value.strip()
    except OSError:
        return {}
    return out


def _egg(path: str) -> Dist | None:
    """An ``.egg-info`` folder: its name and version are in ``PKG-INFO`` (a single file of that
    name is also allowed); anything else about it is read through importlib.metadata on demand."""
    info = os.path.join(path, "PKG-INFO") if os.path.isdir(path) else path
    head = _headers(info, ("Name", "Version"))
    if not head.get("Name") or not head.get("Version"):
        return None
    return Dist(canonical_name(head["Name"]), head["Version"], path)
def scan(paths: list[str]) -> dict[str, Dist]:
    """``{canonical name: Dist}`` for the metadata folders on ``paths``; the first copy on the path
    wins, as for imports (``.dist-info`` before ``.egg-info`` within one folder)."""
    found: dict[str, Dist] = {}
    eggs: list[str] = []
    for entry in paths:
        try:
            with os.scandir(entry or ".") as it:
                names = sorted(e.name for e in it)
        except OSError:
            continue
        for name in names:
            m = _DIST_INFO.match(name)
            if m:
                cname = canonical_name(m.group("name"))
                if cname not in found:
                    found[cname] = Dist(cname, m.group("version"), os.path.join(entry, name))
            elif name.endswith(".egg-info"):
                eggs.append(os.path.join(entry, name))
    for path in eggs:
        dist = _egg(path)
        if dist is not None:
            found.setdefault(dist.name, dist)
    return found


_MEMO: dict[tuple[str, ...], tuple[float, dict[str, Dist]]] = {}


def distributions(options: Any) -> dict[str, Dist]:
    """The inspected environment's distributions, memoised for a few seconds so that the
    collectors of one run share one walk."""
    paths = site_paths(options)
    key = tuple(paths)
    hit = _MEMO.get(key)
    if hit is not None and time.monotonic() - hit[0] < _MEMO_SECONDS:
        return hit[1]
    out = scan(paths)
    _MEMO.clear()
    _MEMO[key] = (time.monotonic(), out)
    return out


__all__ = ["Dist", "distributions", "scan", "site_paths"]
