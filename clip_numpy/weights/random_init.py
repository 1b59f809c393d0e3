"""Random CLIP weights in a given shape: stand-ins where the real weights cannot be fetched, for timing the
model and for running the pipeline around it. Their embeddings mean nothing."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from dinov2_numpy.weights.npz import save_npz

from ..config import ClipConfig, expected_shapes
from .convert import FORMAT, metadata_of
from .vocab import read_merges


def random_state(config: ClipConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Every tensor of ``config``: weights and embeddings normal (std 0.02), LayerNorm weights near one, biases
    small."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in expected_shapes(config).items():
        values = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
        if "norm" in name and name.endswith(".weight"):
            values += np.float32(1.0)
        state[name] = values
    return state


def write_random(path: str | os.PathLike, config: ClipConfig, vocab: str | os.PathLike, *, seed: int = 0,
                 model: str = "random-clip") -> dict[str, Any]:
    """Write random weights of ``config`` with the BPE merges of ``vocab`` to ``path``; returns the metadata."""
    merges = read_merges(vocab, config.vocab_size)
    meta = metadata_of(config, merges, model=model, source=f"random (seed {seed})",
                       vocab_source=os.path.basename(os.fspath(vocab)))
    save_npz(path, random_state(config, seed), meta, FORMAT)
    return meta
