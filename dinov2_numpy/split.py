"""Running one image on every core: each thread takes a share of the heads and of the output features.

Batches are split by image (``parallel.map_shards``), but a single image, what every search pays, would
leave all but one core to BLAS alone while NumPy's element-wise work runs on one. Splitting its rows instead
was measured slower: every thread then packs every weight matrix for half the rows. So the threads split
the work along features: thread i projects and attends for its heads, and computes its columns of every
other product, reading all rows; they meet at a barrier wherever a step reads columns another thread wrote.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import Dinov2Config


@dataclass(frozen=True)
class Share:
    """One thread's part of every block: attention heads, output features and MLP hidden features."""

    heads: range
    features: slice
    hidden: slice


@dataclass
class Shared:
    """The buffers the threads of one pass write their columns to and read every column from."""

    qkv: np.ndarray  # (rows, 3D)
    context: np.ndarray  # (rows, D)
    hidden: np.ndarray  # (rows, MLP width)

    @classmethod
    def allocate(cls, rows: int, config: Dinov2Config) -> "Shared":
        d = config.hidden_size
        return cls(np.empty((rows, 3 * d), np.float32), np.empty((rows, d), np.float32),
                   np.empty((rows, config.mlp_hidden), np.float32))


def shares(config: Dinov2Config, parts: int) -> list[Share]:
    """``parts`` equal shares of ``config``'s heads and features."""
    heads, d = config.num_heads // parts, config.head_dim
    hidden = config.mlp_hidden // parts
    return [Share(range(i * heads, (i + 1) * heads), slice(i * heads * d, (i + 1) * heads * d),
                  slice(i * hidden, (i + 1) * hidden)) for i in range(parts)]


def can_split(config: Dinov2Config, parts: int) -> bool:
    """Whether ``config`` divides evenly into ``parts`` shares (the GELU MLP only; SwiGLU runs whole)."""
    return (parts > 1 and not config.swiglu and config.num_heads % parts == 0
            and config.mlp_hidden % parts == 0)
