"""Fetch OpenAI's CLIP weights and tokenizer from the Hugging Face hub, with DINOv2's download code."""
from __future__ import annotations

import os
import shutil
from typing import Any

from dinov2_numpy.config import WeightsError
from dinov2_numpy.weights.hub import download_from_hub

from .convert import convert

MODELS = {"b32": "openai/clip-vit-base-patch32", "b16": "openai/clip-vit-base-patch16",
          "l14": "openai/clip-vit-large-patch14"}
DEFAULT_MODEL = "b32"
# The checkpoint, the head counts and epsilons, and the tokenizer's vocabulary.
FILES = ("model.safetensors", "config.json", "vocab.json", "merges.txt")


def repo_name(model: str) -> str:
    """``openai/clip-vit-...`` for ``b32``, ``b16`` or ``l14``."""
    if model not in MODELS:
        raise WeightsError(f"unknown CLIP model '{model}' (choose from {', '.join(MODELS)})")
    return MODELS[model]


def default_output(model: str) -> str:
    """Where ``fetch`` writes by default: ``weights/<name>.npz``."""
    return os.path.join("weights", repo_name(model).split("/")[1] + ".npz")


def fetch(model: str, output: str, *, hub_url: str | None = None, timeout: float = 30.0,
          quiet: bool = False) -> dict[str, Any]:
    """Download the checkpoint's files and convert them, the vocabulary included, to ``output``."""
    repo = repo_name(model)
    # The downloads sit in a folder beside the output, in the hub's layout, so that an interrupted fetch
    # resumes from its '.part' files and the folder converts as it is.
    folder = os.path.join(os.path.dirname(os.path.abspath(output)), f".{repo.split('/')[1]}")
    urls = {name: download_from_hub(repo, name, os.path.join(folder, name), hub_url=hub_url, timeout=timeout,
                                    quiet=quiet) for name in FILES}
    meta = convert(folder, output, model=repo, source=urls["model.safetensors"])
    shutil.rmtree(folder)
    return meta
