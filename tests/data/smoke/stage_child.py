"""A child for the stage tests, with the smoke child's calling convention (MODE ARGS.json RESULT.json):
it marks stages in RESULT.json as the smoke child does, logs the line vLLM logs after loading
weights, then spins in ``spin_forever`` (mode ``stuck``) or finishes (mode ``ok``)."""

import json
import os
import sys
import time

STAMPS = {}


def mark(path, stage, **extra):
    STAMPS[stage] = time.time()
    with open(path + ".tmp", "w") as fh:
        json.dump({"stage": stage, "ok": False, "stage_at": STAMPS, **extra}, fh)
    os.replace(path + ".tmp", path)
    print(f"[bwdoctor] stage: {stage}", flush=True)


def spin_forever():
    n = 0
    while True:
        n += 1


def main():
    mode, result = sys.argv[1], sys.argv[3]
    mark(result, "import")
    time.sleep(0.6)
    mark(result, "load")
    time.sleep(0.6)
    print("INFO 12-01 12:00:00 [gpu_model_runner.py:5132] Model loading took 0.04 GiB memory and 0.1 seconds",
          flush=True)
    time.sleep(0.6)
    if mode == "stuck":
        spin_forever()
    mark(result, "generate")
    time.sleep(0.1)  # shorter than the parent's poll: the stamps place it
    STAMPS["done"] = time.time()
    with open(result, "w") as fh:
        json.dump({"stage": "done", "ok": True, "stage_at": STAMPS}, fh)


if __name__ == "__main__":
    main()
