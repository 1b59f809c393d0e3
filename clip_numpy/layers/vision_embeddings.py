"""The vision tower's input: patch embedding (a convolution without bias), class token, positions."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from dinov2_numpy import ops
from dinov2_numpy.layers import patchify

from ..config import ClipConfig


class VisionEmbeddings:
    """Turns (B, 3, S, S) pixels, S the trained image size, into (B, 1 + N, D) tokens: [class, patches...]."""

    def __init__(self, state: Mapping[str, np.ndarray], config: ClipConfig) -> None:
        self.config = config
        d, p = config.vision.hidden_size, config.patch_size
        weight = state["vision_model.embeddings.patch_embedding.weight"]
        self.proj_t = np.ascontiguousarray(weight.reshape(d, 3 * p * p).T, dtype=np.float32)
        pos = np.asarray(state["vision_model.embeddings.position_embedding.weight"], np.float32)
        self.class_token = np.asarray(state["vision_model.embeddings.class_embedding"], np.float32) + pos[0]
        self.patch_pos = pos[1:]

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        b, c, h, w = pixels.shape
        size = self.config.image_size
        if c != 3 or h != size or w != size:
            raise ValueError(f"expected pixels of shape (B, 3, {size}, {size}), got {pixels.shape}")
        patches = ops.matmul(patchify(pixels, self.config.patch_size), self.proj_t).reshape(b, len(self.patch_pos), -1)
        patches += self.patch_pos
        out = np.empty((b, 1 + len(self.patch_pos), self.config.vision.hidden_size), np.float32)
        out[:, 0] = self.class_token
        out[:, 1:] = patches
        return out
