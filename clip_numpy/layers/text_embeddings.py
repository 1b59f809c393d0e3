"""The text tower's input: token embeddings plus learned position embeddings."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..config import ClipConfig


class TextEmbeddings:
    """Turns (B, n) token ids, n at most the context length, into (B, n, D) tokens."""

    def __init__(self, state: Mapping[str, np.ndarray], config: ClipConfig) -> None:
        self.config = config
        self.tokens = np.asarray(state["text_model.embeddings.token_embedding.weight"], np.float32)
        self.positions = np.asarray(state["text_model.embeddings.position_embedding.weight"], np.float32)

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        if ids.ndim != 2 or not 1 <= ids.shape[1] <= len(self.positions):
            raise ValueError(f"token ids must have shape (B, n) with 1 <= n <= {len(self.positions)}, got {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.tokens)):
            raise ValueError(f"token ids must lie in [0, {len(self.tokens)})")
        out = self.tokens[ids]
        out += self.positions[:ids.shape[1]]
        return out
