"""process_data throughput on the default synthetic dataset: synth generation time and extract_frames
frames/s with 1 and 2 workers (native size and --short_side 128), without and with Farneback flow."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time

from process_data.extract_frames import extract
from process_data.synth import generate


def run(frames: int = 48, classes: int = 8, per_class: tuple[int, int] = (12, 4), with_flow: bool = True) -> dict:
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        made = generate(f"{tmp}/raw", classes, per_class[0], per_class[1], frames, verbose=False)
        results["synth_seconds"] = round(time.perf_counter() - start, 2)
        total_frames = made["videos"] * frames
        results["videos"], results["frames"] = made["videos"], total_frames
        configs = [("native", 0, False), ("short128", 128, False)]
        if with_flow:
            configs.append(("native+flow", 0, True))
        for name, short_side, flow in configs:
            for workers in (1, 2):
                out = f"{tmp}/frames_{name}_{workers}"
                start = time.perf_counter()
                extract(
                    f"{tmp}/raw/UCF-101",
                    out,
                    short_side=short_side,
                    flow=flow,
                    flow_root=out + "_flow",
                    workers=workers,
                    verbose=False,
                )
                seconds = time.perf_counter() - start
                results[f"extract_{name}_j{workers}_frames_per_s"] = round(total_frames / seconds, 1)
                shutil.rmtree(out, ignore_errors=True)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no_flow", action="store_true")
    parser.add_argument("--out", default="", help="also write the results to this JSON file")
    args = parser.parse_args()
    results = run(with_flow=not args.no_flow)
    print(json.dumps(results, indent=2))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=1)
