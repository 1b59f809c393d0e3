"""Convert a Hugging Face CLIP checkpoint (``model.safetensors``, or its folder) into the canonical ``.npz``,
its BPE merges included."""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from dinov2_numpy.config import WeightsError
from dinov2_numpy.weights.convert import sha256_file
from dinov2_numpy.weights.npz import save_npz
from dinov2_numpy.weights.safetensors import read_safetensors

from ..config import ClipConfig, config_from_state_dict, expected_shapes, validate_state
from .vocab import METADATA_KEY, check_vocab_json, merges_to_metadata, read_merges

FORMAT = "clip-numpy/1"
_TOWERS = ("vision", "text")
_SIZES = {768: "base", 1024: "large", 1280: "huge"}


def _locate(src: str) -> tuple[str, str]:
    """``(model.safetensors, its folder)`` for a file or a folder in Hugging Face layout."""
    if os.path.isdir(src):
        weights = os.path.join(src, "model.safetensors")
        if not os.path.isfile(weights):
            raise WeightsError(f"{src} has no model.safetensors")
        return weights, src
    if not os.path.isfile(src):
        raise WeightsError(f"weights file not found: {src}")
    return src, os.path.dirname(os.path.abspath(src))


def _hf_config(folder: str) -> dict[str, Any]:
    """Head counts, LayerNorm epsilons and activations from the ``config.json`` of a CLIP checkpoint, if any."""
    try:
        with open(os.path.join(folder, "config.json")) as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return {}
    if cfg.get("model_type") != "clip":
        return {}
    meta: dict[str, Any] = {}
    for tower in _TOWERS:
        sub = cfg.get(f"{tower}_config") or {}
        for key, name, kind in (("num_attention_heads", "num_heads", int), ("layer_norm_eps", "layer_norm_eps", float),
                                ("hidden_act", "hidden_act", str)):
            if key in sub:
                meta[f"{tower}_{name}"] = kind(sub[key])
    return meta


def _vocab_files(vocab: str | None, folder: str) -> tuple[str, str | None]:
    """``(merges file, vocab.json or None)``: ``vocab`` (a merges file, or a folder with ``merges.txt``), else
    the checkpoint's folder."""
    base = vocab or folder
    if os.path.isdir(base):
        merges = os.path.join(base, "merges.txt")
        if not os.path.isfile(merges):
            raise WeightsError(f"no tokenizer vocabulary: {base} has no merges.txt (pass --vocab, e.g. open_clip's "
                               "bpe_simple_vocab_16e6.txt.gz)")
        vocab_json = os.path.join(base, "vocab.json")
        return merges, vocab_json if os.path.isfile(vocab_json) else None
    if not os.path.isfile(base):
        raise WeightsError(f"vocabulary file not found: {base}")
    return base, None


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, vocab: str | os.PathLike | None = None,
            model: str | None = None, source: str | None = None) -> dict[str, Any]:
    """Convert ``src`` (a ``model.safetensors`` of ``CLIPModel``, or its folder) to the canonical ``.npz`` at
    ``dst``, with the BPE merges from ``vocab`` or the checkpoint's folder; returns the metadata written."""
    weights, folder = _locate(os.fspath(src))
    state, info = read_safetensors(weights)
    meta: dict[str, Any] = {"source_format": "safetensors", "source_dtype": info["dtype"],
                            "source_file": os.path.basename(weights), **_hf_config(folder)}
    config = config_from_state_dict(state, meta)
    validate_state(state, config)
    merges_file, vocab_json = _vocab_files(os.fspath(vocab) if vocab else None, folder)
    merges = read_merges(merges_file, config.vocab_size)
    if vocab_json:
        check_vocab_json(vocab_json, merges)
    kept = {k: v for k, v in state.items() if k in expected_shapes(config)}
    meta.update(metadata_of(config, merges, model=model or _default_name(config),
                            source=source or os.path.abspath(weights), vocab_source=os.path.basename(merges_file)),
                source_sha256=sha256_file(weights))
    scale = state.get("logit_scale")
    if scale is not None:
        meta["logit_scale"] = float(np.asarray(scale, np.float32).reshape(-1)[0])
    save_npz(dst, kept, meta, FORMAT)
    return meta


def metadata_of(config: ClipConfig, merges: list[tuple[str, str]], *, model: str, source: str,
                vocab_source: str) -> dict[str, Any]:
    """What a CLIP weights file records besides its tensors: the shape's hyper-parameters that the tensors do not
    hold (head counts, epsilons, activations), a summary, where it came from, and the tokenizer's merges."""
    meta: dict[str, Any] = {f"{t}_{k}": getattr(getattr(config, t), attr) for t in _TOWERS
                            for k, attr in (("num_heads", "num_heads"), ("layer_norm_eps", "layer_norm_eps"),
                                            ("hidden_act", "activation"), ("hidden_size", "hidden_size"),
                                            ("num_layers", "num_layers"))}
    meta.update(architecture="clip", patch_size=config.patch_size, image_size=config.image_size,
                projection_dim=config.projection_dim, context_length=config.context_length,
                vocab_source=vocab_source, model=model, source=source)
    meta[METADATA_KEY] = merges_to_metadata(merges)
    return meta


def _default_name(config) -> str:
    size = _SIZES.get(config.vision.hidden_size, f"w{config.vision.hidden_size}")
    return f"clip-vit-{size}-patch{config.patch_size}"
