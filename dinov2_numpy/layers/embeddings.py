"""Patch embedding, cls token, register tokens and resized position embeddings."""
from __future__ import annotations

import threading
from typing import Mapping

import numpy as np

from .. import ops
from ..config import Dinov2Config
from ..interpolate import resize_grid


class Embeddings:
    """Turns (B, 3, H, W) pixels into (B, 1 + R + N, D) tokens: [cls, registers..., patches]."""

    def __init__(self, state: Mapping[str, np.ndarray], config: Dinov2Config) -> None:
        self.config = config
        p = config.patch_size
        weight = state["embeddings.patch_embeddings.projection.weight"]
        self.proj_t = np.ascontiguousarray(weight.reshape(config.hidden_size, 3 * p * p).T, dtype=np.float32)
        self.proj_b = np.asarray(state["embeddings.patch_embeddings.projection.bias"], np.float32)
        self.cls_token = np.asarray(state["embeddings.cls_token"], np.float32).reshape(1, -1)
        pos = np.asarray(state["embeddings.position_embeddings"], np.float32).reshape(-1, config.hidden_size)
        self.cls_pos = pos[:1]
        self.patch_pos = pos[1:]
        reg = state.get("embeddings.register_tokens")
        self.registers = None if reg is None else np.asarray(reg, np.float32).reshape(-1, config.hidden_size)
        self._pos_cache: dict[tuple[int, int], np.ndarray] = {}
        self._lock = threading.Lock()

    def position_embeddings(self, rows: int, cols: int) -> np.ndarray:
        """Patch position embeddings for a rows x cols grid, (rows * cols, D); cached per grid."""
        key = (rows, cols)
        with self._lock:
            cached = self._pos_cache.get(key)
        if cached is not None:
            return cached
        g = self.config.grid_size
        if rows == cols == g:
            pos = self.patch_pos
        else:
            grid = self.patch_pos.reshape(g, g, -1)
            pos = resize_grid(grid, rows, cols, self.config.interpolate_antialias).reshape(rows * cols, -1)
        with self._lock:
            self._pos_cache[key] = pos
        return pos

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        b, c, h, w = pixels.shape
        p = self.config.patch_size
        if c != 3:
            raise ValueError(f"expected 3 colour channels, got {c}")
        if h % p or w % p or h == 0 or w == 0:
            raise ValueError(f"image sides must be positive multiples of {p}, got {h}x{w}")
        rows, cols = h // p, w // p
        tokens = ops.matmul(patchify(pixels, p), self.proj_t)
        tokens += self.proj_b
        tokens = tokens.reshape(b, rows * cols, -1)
        tokens += self.position_embeddings(rows, cols)
        r = 0 if self.registers is None else len(self.registers)
        out = np.empty((b, 1 + r + rows * cols, self.config.hidden_size), np.float32)
        out[:, 0] = self.cls_token + self.cls_pos
        if r:
            out[:, 1:1 + r] = self.registers
        out[:, 1 + r:] = tokens
        return out


def patchify(pixels: np.ndarray, patch: int) -> np.ndarray:
    """(B, C, H, W) pixels as (B * patches, C * patch * patch) rows, patches row-major over the grid and each
    row in the (channel, y, x) order of a convolution kernel, so that one matrix product is the patch embedding."""
    b, c, h, w = pixels.shape
    rows, cols = h // patch, w // patch
    return pixels.reshape(b, c, rows, patch, cols, patch).transpose(0, 2, 4, 1, 3, 5).reshape(b * rows * cols, -1)
