"""Top-1 (and top-k) video accuracy of a CPD prediction file against a split JSON (UCF101 and HMDB51 alike).

    python evaluation/evaluate_ucf101.py --dataset ./datasets/ucf_list/ucf101_01.json --pred_results <OUT>

`--pred_results` is the test's result folder (its `val.json` is read) or the JSON itself. Every video of the
split's `validation` subset counts; a video without a prediction counts as wrong. Prints `Accuracy@1: <fraction>`
as the original (which needed pandas; this one does not).
"""

from __future__ import annotations

import json
import os

from shared_utils.cli import ArgumentParser, fail, require_file, run_cli


def load_predictions(path: str, subset_file: str = "val.json") -> dict[str, list[str]]:
    """{video stem: [predicted labels, best first]}."""
    if os.path.isdir(path):
        path = os.path.join(path, subset_file)
    require_file(path, "--pred_results")
    with open(path) as handle:
        data = json.load(handle)
    if "results" not in data:
        fail(f"'{path}' is not a CPD prediction file (no 'results')")
    return {vid: [entry["label"] for entry in entries] for vid, entries in data["results"].items()}


def load_ground_truth(path: str, subset: str = "validation") -> dict[str, str]:
    require_file(path, "--dataset")
    with open(path) as handle:
        data = json.load(handle)
    if "database" not in data:
        fail(f"'{path}' is not a split JSON (no 'database')")
    return {vid: info["annotations"]["label"] for vid, info in data["database"].items() if info.get("subset") == subset}


def hit_at_k(ground_truth: dict[str, str], predictions: dict[str, list[str]], k: int = 1) -> float:
    """Fraction of ground-truth videos whose label is among the first k predictions."""
    if not ground_truth:
        fail("the split JSON has no video in the evaluated subset")
    hits = sum(1 for vid, label in ground_truth.items() if label in predictions.get(vid, [])[:k])
    return hits / len(ground_truth)


def main(args) -> float:
    truth = load_ground_truth(args.dataset, args.subset)
    preds = load_predictions(args.pred_results)
    missing = sum(1 for vid in truth if vid not in preds)
    if missing:
        print(f"{missing} of {len(truth)} videos have no prediction (counted as wrong)")
    acc = hit_at_k(truth, preds, args.top_k)
    print(f"Accuracy@{args.top_k}: {acc}")
    return acc


def get_args_parser(add_help: bool = True) -> ArgumentParser:
    p = ArgumentParser("evaluate_ucf101.py", description=__doc__.split("\n")[0], add_help=add_help)
    p.add_argument("--dataset", required=True, help="split JSON (ucf101_0N.json / hmdb51_N.json)")
    p.add_argument("--pred_results", required=True, help="result folder holding val.json, or the JSON file")
    p.add_argument("--subset", default="validation")
    p.add_argument("--top_k", type=int, default=1)
    return p


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
