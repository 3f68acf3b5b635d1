"""Which GPU architectures does a CUDA binary carry? Read from the file, never by loading it.

A CUDA-enabled shared object (``libtorch_cuda.so``, ``vllm/_C.abi3.so``) embeds its device code in
*fatbin containers* inside the ELF section ``.nv_fatbin`` (or ``__nv_relfatbin`` for relocatable
device code in objects). A fatbin container is::

    container header (16 bytes): u32 magic 0xBA55ED50, u16 version, u16 header size, u64 payload size
    entries, each:  u16 kind (1 = PTX, 2 = ELF/cubin, 8 = LTO IR), u16 entry version, u32 header size,
                    u64 payload size, u32 compressed size, u32 options offset, u16 code version minor,
                    u16 code version major, u32 arch (major*10 + minor, e.g. 120), u32 name offset,
                    u32 name size, u64 flags, u64 reserved, u64 uncompressed size, [extra header bytes]

The entry header is never compressed, so the architecture of every entry, compressed or not, is read
without decompressing its payload. The entry ``flags`` carry, as observed on nvcc 13.0 output and
cross-checked against ``cuobjdump -all`` (which prints ``arch = sm_100f``, ``compressed``)::

    0x0000_0001  64-bit code           0x0000_0010  Linux host
    0x0000_2000  payload LZ4-compressed (nvcc --compress-mode=speed, older toolkits' default)
    0x0000_8000  payload ZSTD-compressed (nvcc 12.8+ default/size/balance modes, -Xfatbin -compress-all)
    0x0010_0000  architecture-specific target ("a": sm_90a, sm_120a)
    0x0020_0000  family-specific target ("f": sm_100f, sm_120f)
    0x0100_0000  extended header (carries the cubin's .nv.compat attributes)

A bare cubin (an ELF with ``e_machine == EM_CUDA``) names its SM in ``e_flags``: the low byte for
ELF ABI version < 8 (with the ``a`` flag EF_CUDA_ACCELERATORS_V1 = 0x800), bits 8..15 for ABI version
8 (CUDA 12.9+/13), where the ``a`` variant is marked by the ``.nv.compat`` attribute 0x09 = 1 (its
``e_flags`` are identical to the plain target's). ``cuobjdump --list-elf`` names an ``f`` cubin by its
base SM (``sm_100``) because the cubin itself does not record the family; for a bare cubin the ``f``
is recovered from the ptxas command line in ``.note.nv.tkinfo`` (``-arch sm_100f``).

:func:`scan` returns a :class:`ScanResult` or ``None`` for files that are not CUDA binaries; it only
maps the file (``mmap``) and reads entry headers, so a 500 MB ``libtorch_cuda.so`` costs milliseconds.
Results are cached in memory by (path, size, mtime).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bwdoctor import lazy_regex

FATBIN_MAGIC = 0xBA55ED50
FATBIN_MAGIC_BYTES = struct.pack("<I", FATBIN_MAGIC)
ELF_MAGIC = b"\x7fELF"
EM_CUDA = 190

KIND_PTX = 1
KIND_ELF = 2
KIND_LTO = 8

FLAG_64BIT = 0x1
FLAG_LINUX = 0x10
FLAG_COMPRESS_LZ4 = 0x2000
FLAG_COMPRESS_ZSTD = 0x8000
FLAG_ARCH_SPECIFIC = 0x100000
FLAG_FAMILY_SPECIFIC = 0x200000

# Sections that hold fatbin containers. ``__nv_relfatbin`` holds relocatable copies for device
# linking; it is read only when a file has no ``.nv_fatbin`` (an object file), as cuobjdump does.
FATBIN_SECTIONS = (".nv_fatbin", "__nv_relfatbin")

_CONTAINER = struct.Struct("<IHHQ")
_ENTRY = struct.Struct("<HHIQIIHHIIIQQQ")  # 64 bytes
_MAX_ENTRIES = 1_000_000

_ARCH_RE = lazy_regex(r"^(sm|compute)_(\d+)([af]?)$")


@dataclass(frozen=True)
class Entry:
    """One fatbin entry (or a bare cubin)."""

    kind: str  # "elf" | "ptx" | "lto" | "other"
    arch: int  # 120 for sm_120
    variant: str = ""  # "", "a" or "f"
    compression: str | None = None  # None | "lz4" | "zstd"
    size: int = 0
    code_version: str = ""  # PTX ISA version for PTX entries ("9.0"), ELF ABI for cubins ("1.8")

    @property
    def name(self) -> str:
        """``sm_120a`` for SASS, ``compute_100f`` for PTX, ``lto_90`` for LTO IR."""
        prefix = {"elf": "sm", "ptx": "compute", "lto": "lto"}.get(self.kind, "unknown")
        return f"{prefix}_{self.arch}{self.variant}"

    @property
    def listing_name(self) -> str:
        """The name ``cuobjdump --list-elf/--list-ptx`` prints: ELF entries are named from the cubin,
        which records ``a`` but not ``f``; PTX entries keep both suffixes and use the ``sm_`` prefix."""
        if self.kind == "elf":
            return f"sm_{self.arch}{'a' if self.variant == 'a' else ''}"
        return f"sm_{self.arch}{self.variant}"


@dataclass
class ScanResult:
    path: str
    format: str  # "elf" (host ELF with fatbins) | "cubin" | "fatbin"
    entries: list[Entry] = field(default_factory=list)

    @property
    def sass(self) -> list[str]:
        return sort_archs({e.name for e in self.entries if e.kind == "elf"})

    @property
    def ptx(self) -> list[str]:
        return sort_archs({e.name for e in self.entries if e.kind == "ptx"})

    @property
    def has_device_code(self) -> bool:
        return any(e.kind in ("elf", "ptx") for e in self.entries)

    def listing(self) -> tuple[list[str], list[str]]:
        """(ELF names, PTX names) as ``cuobjdump --list-elf --list-ptx`` prints them (sets)."""
        elf = sort_archs({e.listing_name for e in self.entries if e.kind == "elf"})
        ptx = sort_archs({e.listing_name for e in self.entries if e.kind == "ptx"})
        return elf, ptx

    def to_dict(self) -> dict:
        return {"path": self.path, "sass": self.sass, "ptx": self.ptx}


def parse_arch(name: str) -> tuple[str, int, str] | None:
    """``"sm_100f"`` -> ``("sm", 100, "f")``; None when it is not an arch name."""
    m = _ARCH_RE.match(name.strip().lower())
    if not m:
        return None
    return m.group(1), int(m.group(2)), m.group(3)


def sort_archs(names: Iterable[str]) -> list[str]:
    def key(n: str) -> tuple:
        p = parse_arch(n)
        return (0, p[1], p[2], p[0]) if p else (1, 0, n, "")

    return sorted(set(names), key=key)


# ------------------------------------------------------------------------------- fatbin parsing


def _variant(flags: int) -> str:
    if flags & FLAG_ARCH_SPECIFIC:
        return "a"
    if flags & FLAG_FAMILY_SPECIFIC:
        return "f"
    return ""


def _compression(flags: int) -> str | None:
    if flags & FLAG_COMPRESS_ZSTD:
        return "zstd"
    if flags & FLAG_COMPRESS_LZ4:
        return "lz4"
    return None


_KINDS = {KIND_PTX: "ptx", KIND_ELF: "elf", KIND_LTO: "lto"}


def iter_fatbin_entries(buf, start: int = 0, end: int | None = None) -> Iterator[Entry]:
    """Yield the entries of every fatbin container found in ``buf[start:end]``.

    ``buf`` is bytes, a memoryview or an mmap. Containers are found by their magic; a truncated or
    malformed container ends the walk of that container without raising.
    """
    end = len(buf) if end is None else min(end, len(buf))
    pos = start
    count = 0
    while pos + _CONTAINER.size <= end:
        if buf[pos:pos + 4] != FATBIN_MAGIC_BYTES:
            nxt = buf.find(FATBIN_MAGIC_BYTES, pos, end)
            if nxt < 0:
                return
            pos = nxt
            if pos + _CONTAINER.size > end:
                return
        _magic, _ver, hsize, fsize = _CONTAINER.unpack_from(buf, pos)
        if hsize < _CONTAINER.size:
            pos += 4
            continue
        p = pos + hsize
        cend = min(p + fsize, end)
        while p + _ENTRY.size <= cend:
            (kind, _ever, ehsize, psize, _csize, _opt, vminor, vmajor, arch, _no, _nl, flags, _z,
             _dsize) = _ENTRY.unpack_from(buf, p)
            if ehsize < _ENTRY.size or p + ehsize + psize > cend or kind == 0:
                break
            yield Entry(kind=_KINDS.get(kind, "other"), arch=arch, variant=_variant(flags),
                        compression=_compression(flags), size=psize, code_version=f"{vmajor}.{vminor}")
            count += 1
            if count > _MAX_ENTRIES:
                return
            p += ehsize + psize
        # containers are 8-byte aligned; the next one (if any) follows after padding
        nxt = pos + hsize + fsize
        pos = max(nxt, pos + 4)


# ------------------------------------------------------------------------------- cubin parsing


def _iter_nv_attrs(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(attribute, format, value bytes) of a ``.nv.info``/``.nv.compat`` style attribute list."""
    i = 0
    while i + 2 <= len(data):
        fmt, attr = data[i], data[i + 1]
        if fmt == 1:  # no value
            yield attr, fmt, b""
            i += 2
        elif fmt in (2, 3):  # 1- or 2-byte value padded to 2
            yield attr, fmt, bytes(data[i + 2:i + 4])
            i += 4
        elif fmt == 4:  # sized value
            if i + 4 > len(data):
                return
            (size,) = struct.unpack_from("<H", data, i + 2)
            yield attr, fmt, bytes(data[i + 4:i + 4 + size])
            i += 4 + size
        else:
            return


_TKINFO_ARCH = re.compile(rb"-arch[ =]sm_(\d+)([af]?)")


def cubin_entry(elf, buf) -> Entry | None:
    """The SASS target of a bare cubin (pyelftools ``ELFFile``), or None if it is not one."""
    if elf["e_machine"] not in ("EM_CUDA", EM_CUDA):
        return None
    flags = int(elf["e_flags"])
    abiver = int(elf["e_ident"]["EI_ABIVERSION"])
    variant = ""
    if abiver >= 8:
        sm = (flags >> 8) & 0xFF
        if flags & 0x8:
            variant = "a"
    else:
        sm = flags & 0xFF
        if flags & 0x800:
            variant = "a"
    for sec in elf.iter_sections():
        name = sec.name
        if name == ".nv.compat" and not variant:
            data = buf[sec["sh_offset"]:sec["sh_offset"] + sec["sh_size"]]
            for attr, _fmt, value in _iter_nv_attrs(bytes(data)):
                if attr == 0x09 and value[:1] == b"\x01":
                    variant = "a"
        elif name == ".note.nv.tkinfo" and not variant:
            data = bytes(buf[sec["sh_offset"]:sec["sh_offset"] + min(sec["sh_size"], 4096)])
            m = _TKINFO_ARCH.search(data)
            if m and int(m.group(1)) == sm and m.group(2) == b"f":
                variant = "f"
    return Entry(kind="elf", arch=sm, variant=variant, size=len(buf), code_version=f"{abiver}")


# ------------------------------------------------------------------------------- files


def _scan_mapped(path: str, mm) -> ScanResult | None:
    head = mm[:4]
    if head == FATBIN_MAGIC_BYTES:
        return ScanResult(path, "fatbin", list(iter_fatbin_entries(mm)))
    if head != ELF_MAGIC:
        return None
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        elf = ELFFile(_MMapStream(mm))  # type: ignore[arg-type]  # a file-like view of the mapping
        machine = elf["e_machine"]
        if machine in ("EM_CUDA", EM_CUDA):
            ent = cubin_entry(elf, mm)
            return ScanResult(path, "cubin", [ent]) if ent else None
        sections = {}
        for sec in elf.iter_sections():
            if sec.name in FATBIN_SECTIONS and sec["sh_type"] != "SHT_NOBITS":
                sections[sec.name] = (int(sec["sh_offset"]), int(sec["sh_size"]))
    except (ELFError, struct.error, ValueError, IndexError, KeyError, OSError):
        return None
    name = ".nv_fatbin" if ".nv_fatbin" in sections else ("__nv_relfatbin" if sections else None)
    if name is None:
        return None
    off, size = sections[name]
    entries = list(iter_fatbin_entries(mm, off, off + size))
    return ScanResult(path, "elf", entries)


class _MMapStream:
    """A read-only file-like view of an mmap for pyelftools (no copy of the file)."""

    def __init__(self, mm) -> None:
        self._mm = mm
        self._pos = 0

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 0:
            self._pos = pos
        elif whence == 1:
            self._pos += pos
        else:
            self._pos = len(self._mm) + pos
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = len(self._mm) - self._pos
        data = self._mm[self._pos:self._pos + n]
        self._pos += len(data)
        return data


_cache: dict[str, tuple[tuple[int, int], ScanResult | None]] = {}
_cache_lock = threading.Lock()


def _row_of(result: ScanResult | None) -> dict[str, Any]:
    if result is None:
        return {"format": None}
    return {"format": result.format, "entries": [[e.kind, e.arch, e.variant, e.compression, e.size, e.code_version]
                                                 for e in result.entries]}


def _result_of(path: str, row: Any) -> tuple[bool, ScanResult | None]:
    """(whether the stored row is usable, the result it holds)."""
    try:
        if row["format"] is None:
            return True, None
        return True, ScanResult(path, str(row["format"]), [Entry(str(k), int(a), str(v), c, int(n), str(cv))
                                                           for k, a, v, c, n, cv in row["entries"]])
    except (KeyError, TypeError, ValueError):
        return False, None


def scan(path: str | os.PathLike, use_cache: bool = True, table: Any = None) -> ScanResult | None:
    """Scan one file. None when it is not a CUDA binary (or holds no device code), cannot be read,
    or is malformed. Never raises on bad input.

    ``table``: a :class:`bwdoctor.usercache.FileTable` that keeps results between runs, keyed by
    the file's identity (path, inode, size, modification and change times)."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except OSError:
        return None
    if not os.path.isfile(p) or st.st_size < 16:
        return None
    sig = (st.st_size, st.st_mtime_ns)
    if use_cache:
        with _cache_lock:
            hit = _cache.get(p)
        if hit is not None and hit[0] == sig:
            return hit[1]
    stamp = None
    if table is not None:
        from bwdoctor.usercache import file_stamp

        stamp = file_stamp(p)
        row = table.get(stamp)
        ok, stored = _result_of(p, row) if row is not None else (False, None)
        if ok:
            if use_cache:
                with _cache_lock:
                    _cache[p] = (sig, stored)
            return stored
    result: ScanResult | None = None
    try:
        with open(p, "rb") as fh:
            head = fh.read(4)
            if head in (ELF_MAGIC, FATBIN_MAGIC_BYTES):
                with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                    result = _scan_mapped(p, mm)
    except (OSError, ValueError):
        result = None
    if result is not None and not result.entries:
        result = None
    if use_cache:
        with _cache_lock:
            _cache[p] = (sig, result)
    if table is not None:
        table.put(stamp, _row_of(result))
    return result


def _fatbin_truncated(mm, start: int, end: int) -> bool:
    """True when a fatbin container in ``mm[start:end]`` claims more bytes than there are."""
    pos = mm.find(FATBIN_MAGIC_BYTES, start, end)
    if pos < 0:
        return False
    if pos + _CONTAINER.size > end:
        return True
    _magic, _ver, hsize, fsize = _CONTAINER.unpack_from(mm, pos)
    return pos + hsize + fsize > end or hsize < _CONTAINER.size


def describe(path: str | os.PathLike) -> tuple[ScanResult | None, str | None, bool]:
    """``(result, reason, unreadable)`` for one file: its scan result, else why it has no CUDA
    device code ("not an ELF file", "no CUDA device code", "truncated fatbin", ...); ``unreadable``
    is True when the file could not be read or parsed at all (a missing file, a malformed ELF)."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}", True
    if not os.path.isfile(p):
        return None, "not a regular file", True
    result = scan(p)
    if result is not None:
        note = None
        if result.format == "fatbin":
            with contextlib.suppress(OSError, ValueError), open(p, "rb") as fh, \
                    mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                note = "truncated fatbin: only the entries before the cut" if _fatbin_truncated(mm, 0, len(mm)) \
                    else None
        return result, note, False
    try:
        with open(p, "rb") as fh:
            head = fh.read(4)
            if head == FATBIN_MAGIC_BYTES:
                with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                    return None, ("truncated fatbin" if _fatbin_truncated(mm, 0, len(mm)) else
                                  "fatbin without device code"), False
            if head != ELF_MAGIC or st.st_size < 16:
                return None, "not an ELF file", False
            from elftools.common.exceptions import ELFError
            from elftools.elf.elffile import ELFFile

            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                try:
                    elf = ELFFile(_MMapStream(mm))  # type: ignore[arg-type]
                    secs = {sec.name: (int(sec["sh_offset"]), int(sec["sh_size"])) for sec in elf.iter_sections()
                            if sec.name in FATBIN_SECTIONS and sec["sh_type"] != "SHT_NOBITS"}
                except (ELFError, struct.error, ValueError, IndexError, KeyError, OSError) as exc:
                    return None, f"malformed ELF file ({exc})", True
                for off, size in secs.values():
                    if off + size > len(mm) or _fatbin_truncated(mm, off, min(off + size, len(mm))):
                        return None, "truncated fatbin", False
                return None, ("fatbin section without device code" if secs else "no CUDA device code"), False
    except (OSError, ValueError) as exc:
        return None, f"cannot read: {getattr(exc, 'strerror', None) or exc}", True


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def is_candidate(name: str) -> bool:
    """File names worth opening when walking a tree: shared objects, cubins, fatbins, objects."""
    n = name.lower()
    return (n.endswith((".so", ".cubin", ".fatbin", ".o")) or ".so." in n)


def iter_files(paths: Iterable[str | os.PathLike], all_files: bool = False) -> Iterator[str]:
    """Files named directly, and candidate files inside named folders (walked, links not followed)."""
    for path in paths:
        p = os.fspath(path)
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for name in sorted(files):
                    full = os.path.join(root, name)
                    if (all_files or is_candidate(name)) and not os.path.islink(full):
                        yield full
        else:
            yield p


def scan_paths(paths: Iterable[str | os.PathLike], all_files: bool = False) -> list[ScanResult]:
    """Scan files and folders; non-CUDA files are skipped quietly."""
    out = []
    for f in iter_files(paths, all_files=all_files):
        r = scan(f)
        if r is not None:
            out.append(r)
    return out


# ------------------------------------------------------------------------------- ELF metadata


def needed_libraries(path: str | os.PathLike, table: Any = None) -> list[str]:
    """DT_NEEDED entries of an ELF shared object (``["libcudart.so.12", ...]``); [] when unreadable.
    ``table``: a :class:`bwdoctor.usercache.FileTable` that keeps the answer between runs."""
    if table is not None:
        from bwdoctor.usercache import file_stamp

        stamp = file_stamp(os.fspath(path))
        stored = table.get(stamp)
        if isinstance(stored, list) and all(isinstance(x, str) for x in stored):
            return stored
        found = _needed_libraries(path)
        table.put(stamp, found)
        return found
    return _needed_libraries(path)


def _needed_libraries(path: str | os.PathLike) -> list[str]:
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as fh:
            if fh.read(4) != ELF_MAGIC:
                return []
            fh.seek(0)
            elf = ELFFile(fh)
            out = []
            for sec in elf.iter_sections():
                if isinstance(sec, DynamicSection):
                    for tag in sec.iter_tags():
                        if tag.entry.d_tag == "DT_NEEDED":
                            out.append(str(getattr(tag, "needed", "")))
            return out
    except (ELFError, OSError, struct.error, ValueError, KeyError, IndexError, AttributeError):
        return []


_CUDART_RE = lazy_regex(r"^libcudart\.so\.(\d+)")


def cuda_runtime_major(needed: Iterable[str]) -> int | None:
    """12 for ``libcudart.so.12`` among DT_NEEDED entries, else None."""
    for n in needed:
        m = _CUDART_RE.match(n)
        if m:
            return int(m.group(1))
    return None
