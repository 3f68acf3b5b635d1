"""The CUDA binary scanner against cuobjdump's answers on binaries compiled by tools/make_cuda_fixtures.sh."""

import json
import os
import shutil
import struct
from pathlib import Path

import pytest

from bwdoctor_checks._lib import cudabin as cb

DATA = Path(__file__).parent / "data" / "cudabin"
EXPECTED = json.loads((DATA / "expected.json").read_text())["files"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_listing_matches_cuobjdump(name):
    exp = EXPECTED[name]
    r = cb.scan(DATA / name, use_cache=False)
    if not exp["cuobjdump_elf"] and not exp["cuobjdump_ptx"]:
        assert r is None
        return
    elf, ptx = r.listing()
    assert elf == cb.sort_archs(exp["cuobjdump_elf"])
    assert ptx == cb.sort_archs(exp["cuobjdump_ptx"])
    assert r.sass == exp["sass"]
    assert r.ptx == exp["ptx"]


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if "cuobjdump_all_archs" in e))
def test_suffixes_match_fatbin_headers_as_cuobjdump_all_prints_them(name):
    exp = EXPECTED[name]
    r = cb.scan(DATA / name, use_cache=False)
    assert sorted(r.sass) == sorted(exp["cuobjdump_all_archs"]["elf"])
    assert sorted(p.replace("compute_", "sm_") for p in r.ptx) == sorted(exp["cuobjdump_all_archs"]["ptx"])


def test_variants_and_compression_are_decoded():
    fam = cb.scan(DATA / "family.fatbin", use_cache=False)
    assert fam.format == "fatbin"
    assert fam.sass == ["sm_100f", "sm_103a", "sm_110", "sm_121f"]
    assert fam.ptx == ["compute_100f", "compute_120a"]
    assert {e.compression for e in fam.entries} == {"zstd"}
    lz4 = cb.scan(DATA / "lz4.fatbin", use_cache=False)
    assert [e.compression for e in lz4.entries if e.kind == "ptx"] == ["lz4"]
    plain = cb.scan(DATA / "nocompress.fatbin", use_cache=False)
    assert {e.compression for e in plain.entries} == {None}
    ptx = [e for e in plain.entries if e.kind == "ptx"][0]
    assert ptx.code_version.startswith("9.")  # PTX ISA written by nvcc 13


def test_bare_cubins():
    assert cb.scan(DATA / "sm_90.cubin").sass == ["sm_90"]
    assert cb.scan(DATA / "sm_90a.cubin").sass == ["sm_90a"]
    assert cb.scan(DATA / "sm_100a.cubin").sass == ["sm_100a"]
    r = cb.scan(DATA / "sm_100f.cubin")
    assert r.format == "cubin" and r.sass == ["sm_100f"]
    assert r.listing() == (["sm_100"], [])  # cuobjdump names f cubins by their base SM
    assert cb.scan(DATA / "sm_121a.cubin").sass == ["sm_121a"]


def test_relocatable_copy_is_not_counted_twice():
    r = cb.scan(DATA / "rdc.so", use_cache=False)
    assert r.format == "elf" and len([e for e in r.entries if e.kind == "elf"]) == 1


def test_non_cuda_files_are_skipped(tmp_path):
    assert cb.scan(DATA / "plain_host.so") is None
    assert cb.scan(DATA / "not_elf.so") is None
    assert cb.scan(DATA / "truncated.fatbin") is None
    assert cb.scan(tmp_path / "missing.so") is None
    (tmp_path / "empty.so").write_bytes(b"")
    assert cb.scan(tmp_path / "empty.so") is None


@pytest.mark.parametrize("cut", [20, 64, 100, 500, 2000, 10000])
def test_truncated_binaries_never_raise(tmp_path, cut):
    for name in ("multi.so", "family.fatbin", "sm_100a.cubin"):
        blob = (DATA / name).read_bytes()[:cut]
        p = tmp_path / f"{cut}_{name}"
        p.write_bytes(blob)
        r = cb.scan(p, use_cache=False)
        assert r is None or isinstance(r.sass, list)


def test_garbage_after_magic_never_raises(tmp_path):
    junk = struct.pack("<IHHQ", cb.FATBIN_MAGIC, 1, 16, 1 << 40) + os.urandom(4096)
    p = tmp_path / "junk.fatbin"
    p.write_bytes(junk)
    assert cb.scan(p) is None


def test_cache_is_keyed_by_size_and_mtime(tmp_path):
    p = tmp_path / "lib.so"
    shutil.copy(DATA / "torch_cu126_like.so", p)
    first = cb.scan(p)
    assert "sm_120" not in first.sass
    shutil.copy(DATA / "torch_cu130_like.so", p)
    os.utime(p, ns=(1, 2_000_000_000))
    again = cb.scan(p)
    assert "sm_120" in again.sass


def test_walk_skips_non_cuda_quietly(tmp_path):
    (tmp_path / "a").mkdir()
    shutil.copy(DATA / "multi.so", tmp_path / "a" / "libx.so")
    shutil.copy(DATA / "plain_host.so", tmp_path / "a" / "liby.so.1")
    (tmp_path / "a" / "README.txt").write_text("hello")
    res = cb.scan_paths([tmp_path])
    assert [Path(r.path).name for r in res] == ["libx.so"]


def test_needed_libraries_give_cuda_major():
    assert cb.cuda_runtime_major(cb.needed_libraries(DATA / "ext_cu12.so")) == 12
    assert cb.cuda_runtime_major(cb.needed_libraries(DATA / "ext_cu13.so")) == 13
    assert cb.cuda_runtime_major(cb.needed_libraries(DATA / "plain_host.so")) is None
    assert cb.needed_libraries(DATA / "not_elf.so") == []


def test_results_kept_between_runs_by_file_identity(tmp_path, monkeypatch):
    """A FileTable keeps each file's scan between runs; a rewritten file is scanned again, and a
    stored row reads back as the same listing."""
    from bwdoctor.usercache import FileTable

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    lib = tmp_path / "libx.so"
    shutil.copy(DATA / "multi.so", lib)
    table = FileTable("cudabin-scan")
    first = cb.scan(lib, use_cache=False, table=table)
    assert first is not None
    table.save()
    plain = cb.scan(tmp_path / "missing.so", use_cache=False, table=table)
    assert plain is None

    calls = []
    real = cb._scan_mapped
    monkeypatch.setattr(cb, "_scan_mapped", lambda p, mm: calls.append(p) or real(p, mm))
    again = cb.scan(lib, use_cache=False, table=FileTable("cudabin-scan"))  # a new run: read back, not scanned
    assert calls == [] and again is not None
    assert (again.sass, again.ptx, again.listing(), again.format) == (first.sass, first.ptx, first.listing(), first.format)
    assert [(e.kind, e.arch, e.variant, e.compression, e.size) for e in again.entries] == \
        [(e.kind, e.arch, e.variant, e.compression, e.size) for e in first.entries]

    shutil.copy(DATA / "plain_host.so", lib)  # another file at the same path
    table = FileTable("cudabin-scan")
    assert cb.scan(lib, use_cache=False, table=table) is None and calls == [str(lib)]
    table.save()
    assert cb.scan(lib, use_cache=False, table=FileTable("cudabin-scan")) is None and calls == [str(lib)]
    assert cb.needed_libraries(DATA / "ext_cu12.so", FileTable("elf-needed")) == cb.needed_libraries(DATA / "ext_cu12.so")
