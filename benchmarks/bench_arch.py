#!/usr/bin/env python3
"""Compare bwdoctor's CUDA binary scanner with ``cuobjdump --list-elf --list-ptx``: same lists? how fast?

    python benchmarks/bench_arch.py [--cuobjdump PATH] [--json OUT.json] PATH...

PATHs are files or folders (walked; every *.so*, *.cubin, *.fatbin). For each file the scanner runs
with a cold in-memory cache and cuobjdump runs once; their architecture sets are compared with
cuobjdump's naming (``sm_XY[a]`` for ELF, ``sm_XY[a|f]`` for PTX: cuobjdump names an ``f`` cubin by
its base SM). Exit status 0 when every file agrees, 1 otherwise, 2 when cuobjdump is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
try:
    from bwdoctor_checks import _cudabin as cb
except ImportError:  # running from a checkout that is not installed
    import importlib.util

    spec = importlib.util.spec_from_file_location("_cudabin", Path(__file__).resolve().parent.parent / "checks" /
                                                  "_cudabin.py")
    cb = importlib.util.module_from_spec(spec)  # type: ignore[assignment]
    assert spec and spec.loader
    spec.loader.exec_module(cb)  # type: ignore[union-attr]

_ELF = re.compile(r"ELF file\s+\d+:\s+\S*?\.(sm_\w+?)\.cubin\s*$", re.M)
_PTX = re.compile(r"PTX file\s+\d+:\s+\S*?\.(sm_\w+?)\.ptx\s*$", re.M)


def find_cuobjdump(given: str | None) -> str | None:
    if given:
        return given
    found = shutil.which("cuobjdump")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if home and Path(home, "bin", "cuobjdump").is_file():
            return str(Path(home, "bin", "cuobjdump"))
    return None


def run_cuobjdump(tool: str, path: str, timeout: float) -> tuple[list[str], list[str], float, str]:
    t0 = time.perf_counter()
    try:
        res = subprocess.run([tool, "--list-elf", "--list-ptx", path], capture_output=True, text=True,
                             timeout=timeout, check=False)
        out, err = res.stdout, res.stderr
    except subprocess.TimeoutExpired:
        return [], [], time.perf_counter() - t0, "timeout"
    dt = time.perf_counter() - t0
    return cb.sort_archs(_ELF.findall(out)), cb.sort_archs(_PTX.findall(out)), dt, err.strip()[:300]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--cuobjdump", default=None)
    ap.add_argument("--json", dest="json_out", default=None, help="write the full per-file comparison here")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per cuobjdump call")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    tool = find_cuobjdump(args.cuobjdump)
    if tool is None:
        print("cuobjdump not found (give --cuobjdump PATH or put it on PATH)", file=sys.stderr)
        return 2
    rows = []
    t_scan = t_tool = 0.0
    for f in cb.iter_files(args.paths):
        cb.clear_cache()
        t0 = time.perf_counter()
        r = cb.scan(f, use_cache=False)
        ds = time.perf_counter() - t0
        elf, ptx = r.listing() if r else ([], [])
        celf, cptx, dt, err = run_cuobjdump(tool, f, args.timeout)
        same = elf == celf and ptx == cptx
        t_scan += ds
        t_tool += dt
        row = {"path": f, "size": os.path.getsize(f), "identical": same, "scanner_s": round(ds, 6),
               "cuobjdump_s": round(dt, 6), "scanner": {"elf": elf, "ptx": ptx},
               "cuobjdump": {"elf": celf, "ptx": cptx}, "sass": r.sass if r else [], "ptx": r.ptx if r else []}
        if err and not (celf or cptx):
            row["cuobjdump_stderr"] = err
        rows.append(row)
        if not args.quiet and (elf or ptx or celf or cptx or not same):
            mark = "same" if same else "DIFFERENT"
            print(f"{mark:9} {ds * 1000:9.1f} ms {dt * 1000:10.1f} ms  {f}  SASS {' '.join(row['sass']) or '-'}"
                  f"  PTX {' '.join(row['ptx']) or '-'}")
            if not same:
                print(f"          scanner {elf} {ptx}\n          cuobjdump {celf} {cptx}")
    cuda_files = sum(1 for r in rows if r["scanner"]["elf"] or r["scanner"]["ptx"] or r["cuobjdump"]["elf"]
                     or r["cuobjdump"]["ptx"])
    bad = [r["path"] for r in rows if not r["identical"]]
    speed = (t_tool / t_scan) if t_scan > 0 else float("inf")
    summary = {"files": len(rows), "cuda_files": cuda_files, "identical": len(rows) - len(bad), "different": bad,
               "scanner_total_s": round(t_scan, 4), "cuobjdump_total_s": round(t_tool, 4),
               "speedup": round(speed, 1), "cuobjdump": tool}
    print(f"\n{len(rows)} files ({cuda_files} with device code): {len(rows) - len(bad)} identical, {len(bad)} "
          f"different")
    print(f"scanner {t_scan:.3f} s, cuobjdump {t_tool:.3f} s, speedup {speed:.1f}x")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"summary": summary, "files": rows}, indent=1))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
