"""Start-up and wall time of the bwdoctor CLI, as ratios to a bare click + rich program.

    python benchmarks/bench_cli.py [--runs 7] [--tools]

Every command runs ``--runs`` times, interleaved (one run of each command, then the next round),
so that load on the machine hits every command alike. The table gives the median and best wall
time and the median as a ratio to the floor, ``python -c "import click, rich.console"``, measured
in the same rounds. Targets: ``--help`` and ``--version`` at most 2x the floor; a GPU-less
``run --level quick`` and a one-file ``analyze`` at most 3x. The CPU columns (user + system time of
the command and its children, median and ratio to the floor's) are steadier than wall time on a
machine shared with other work. Byte code is cached as in an installed copy (a warm-up round writes
it, even where ``PYTHONDONTWRITEBYTECODE`` is set).

``--tools`` adds, where installed, ``python -m torch.utils.collect_env`` and ``vllm collect-env``
(the tools people run today for the same question), a few rounds only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVIDENCE = ROOT / "tests" / "data" / "evidence" / "h100-collect_env.txt"
# as installed: byte code cached (pip compiles it at install time), no plugin folders from the caller
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("BWDOCTOR_")}
TARGETS = {"--help": 2.0, "--version": 2.0, "list": None, "run --level quick": 3.0, "analyze (one file)": 3.0}


def once(argv: list[str], cwd: Path = ROOT) -> tuple[float, float, int]:
    """Wall time, CPU time (user + system, the child's and its children's) and exit code.

    The child is reaped with a blocking ``os.wait4``: ``subprocess.run(timeout=...)`` polls with
    sleeps of up to 50 ms, which rounds every wall time up to the next 50 ms step. A timer kills a
    child that runs past 300 s."""
    import signal
    import threading

    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(cwd), env=ENV)
    timer = threading.Timer(300.0, lambda: os.kill(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    return wall, usage.ru_utime + usage.ru_stime, proc.returncode


def cases(py: str, tools: bool, other: Path | None = None) -> list[tuple[str, list[str], Path]]:
    out = [(name, argv, ROOT) for name, argv in _cases(py, tools)]
    if other is not None:  # the same commands run from another checkout (python -m imports from the cwd first)
        out += [(f"{name} [{other.name}]", argv, other) for name, argv in _cases(py, False)[1:]]
    return out


def _cases(py: str, tools: bool) -> list[tuple[str, list[str]]]:
    bw = [py, "-m", "bwdoctor.cli"]
    out = [("floor: import click, rich.console", [py, "-c", "import click, rich.console"]),
           ("--help", [*bw, "--help"]),
           ("--version", [*bw, "--version"]),
           ("list", [*bw, "list"]),
           ("run --level quick", [*bw, "run", "--level", "quick", "--fail-on", "never"]),
           ("analyze (one file)", [*bw, "analyze", str(EVIDENCE), "--fail-on", "never"])]
    if tools:
        import importlib.util

        if importlib.util.find_spec("torch") is not None:
            out.append(("python -m torch.utils.collect_env", [py, "-m", "torch.utils.collect_env"]))
        if shutil.which("vllm"):
            out.append(("vllm collect-env", ["vllm", "collect-env"]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7, help="interleaved rounds (default 7)")
    ap.add_argument("--tools", action="store_true", help="also time torch's and vLLM's collect-env (3 rounds)")
    ap.add_argument("--other", type=Path, default=None, metavar="DIR",
                    help="also run the bwdoctor commands from another checkout (an earlier commit), interleaved")
    args = ap.parse_args()
    todo = cases(sys.executable, args.tools, args.other.resolve() if args.other else None)
    times: dict[str, list[float]] = {name: [] for name, _, _ in todo}
    cpus: dict[str, list[float]] = {name: [] for name, _, _ in todo}
    codes: dict[str, int] = {}
    for _, argv, cwd in todo:  # a warm-up round, not counted: byte code written, files in the page cache
        once(argv, cwd)
    for _ in range(max(1, args.runs)):
        for name, argv, cwd in todo:
            if "collect" in name and len(times[name]) >= 3:
                continue
            try:
                took, cpu, code = once(argv, cwd)
            except (OSError, subprocess.TimeoutExpired):
                continue
            times[name].append(took)
            cpus[name].append(cpu)
            codes[name] = code
    floor = statistics.median(times[todo[0][0]])
    cpu_floor = statistics.median(cpus[todo[0][0]]) or 1e-9
    print(f"{'command':36} {'median s':>9} {'best s':>8} {'x floor':>8} {'target':>7} {'cpu s':>7} {'cpu x':>6} "
          f"{'exit':>5}")
    worst = 0
    for name, _, _ in todo:
        if not times[name]:
            print(f"{name:36} {'failed':>9}")
            continue
        med = statistics.median(times[name])
        ratio = med / floor
        target = TARGETS.get(name.split(" [")[0])
        mark = "" if target is None else (f"<={target:g}" + ("" if ratio <= target else " !"))
        if target is not None and ratio > target:
            worst = 1
        cpu = statistics.median(cpus[name])
        print(f"{name:36} {med:9.3f} {min(times[name]):8.3f} {ratio:8.2f} {mark:>7} {cpu:7.3f} {cpu / cpu_floor:6.2f} "
              f"{codes.get(name, -1):5d}")
    return worst


if __name__ == "__main__":
    sys.exit(main())
