"""`make bench`: every benchmark, one after the other (nothing else should run meanwhile), into one JSON file.

    python bench/run_all.py [--out bench/results.json] [--skip loader process_data train_step]

  loader        per method, clips/s per core of the paper's own data recipe (as the original runs it), the
                project's loader and the decode floor, interleaved in one process (bench/recipe_bench.py)
  process_data  synthetic-dataset generation time and extract_frames frames/s with 1 and 2 workers
  train_step    seconds per training iteration per method (CPU fp32; on CUDA also bf16 and channels_last)
Each benchmark runs in its own process so that one's threads and caches do not colour the next.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHES = {"loader": "recipe_bench.py", "process_data": "process_data_bench.py", "train_step": "train_step.py"}


def run_bench(name: str, tmp: str) -> dict:
    out = os.path.join(tmp, f"{name}.json")
    command = [sys.executable, os.path.join(HERE, BENCHES[name]), "--out", out]
    print(f"== {name}: {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    with open(out) as handle:
        result = json.load(handle)
    return {"wall_s": round(time.perf_counter() - start, 1), "result": result}


def machine() -> dict:
    sys.path.insert(0, os.path.dirname(HERE))
    from bench.recipe_bench import machine as describe  # CPU model, cores, load average, versions

    return describe()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(HERE, "results.json"))
    parser.add_argument("--skip", nargs="*", default=[], choices=list(BENCHES))
    args = parser.parse_args()
    report = {"machine": machine(), "benchmarks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in BENCHES:
            if name not in args.skip:
                report["benchmarks"][name] = run_bench(name, tmp)
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=1)
    print(f"all results -> {args.out}")


if __name__ == "__main__":
    main()
