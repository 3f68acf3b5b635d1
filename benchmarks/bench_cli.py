"""Wall time of the bwdoctor CLI against the tools people run today for the same question.

    python benchmarks/bench_cli.py [--runs N]

Prints the best and median wall time of `bwdoctor --help`, `bwdoctor run --level quick`, and, in
the same run, of `python -m torch.utils.collect_env` and `vllm collect-env` where they are installed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def timed(argv: list[str], runs: int) -> tuple[float, float, int] | None:
    times = []
    code = 0
    for _ in range(runs):
        start = time.perf_counter()
        try:
            proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        except (OSError, subprocess.TimeoutExpired):
            return None
        times.append(time.perf_counter() - start)
        code = proc.returncode
    return min(times), statistics.median(times), code


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    py = sys.executable
    cases = [("bwdoctor --help", [py, "-m", "bwdoctor.cli", "--help"]),
             ("bwdoctor run --level quick", [py, "-m", "bwdoctor.cli", "run", "--level", "quick"]),
             ("bwdoctor run --level quick --format json", [py, "-m", "bwdoctor.cli", "run", "--format", "json"])]
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        cases.append(("python -m torch.utils.collect_env", [py, "-m", "torch.utils.collect_env"]))
    if shutil.which("vllm"):
        cases.append(("vllm collect-env", ["vllm", "collect-env"]))
    print(f"{'command':45} {'best s':>8} {'median s':>9} {'exit':>5}")
    for name, argv in cases:
        runs = args.runs if "collect" not in name else max(1, min(args.runs, 2))
        res = timed(argv, runs)
        if res is None:
            print(f"{name:45} {'failed':>8}")
            continue
        best, med, code = res
        print(f"{name:45} {best:8.3f} {med:9.3f} {code:5d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
