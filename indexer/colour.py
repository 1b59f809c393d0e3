"""A picture's colours, beside its DINOv2 embedding: an HSV histogram of the same 224-pixel crop the model
sees, stored as the square roots of its frequencies, so that the dot product of two is their Bhattacharyya
coefficient (1 for the same colours, 0 for none in common). DINOv2 largely ignores colour (a red and a blue car
are the same car to it); a search may blend this in (``color_weight``) when colour matters to the user."""
from __future__ import annotations

from typing import Callable

import numpy as np

HUE, SATURATION, VALUE = 12, 3, 3
GREY_LEVELS = 4  # pixels with too little saturation or light for a hue go to a few grey bins instead
DIM = HUE * SATURATION * VALUE + GREY_LEVELS
VERSION = f"hsv-{HUE}x{SATURATION}x{VALUE}+{GREY_LEVELS}-sqrt"  # in manifests and the work cache

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
_STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]


def colour_histograms(pixels: np.ndarray) -> np.ndarray:
    """(B, DIM) unit rows for preprocessed ``pixels`` (B, 3, H, W), ImageNet-normalised as the model takes them."""
    rgb = np.clip(pixels * _STD + _MEAN, 0, 1)
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    top, bottom = rgb.max(axis=1), rgb.min(axis=1)
    span = top - bottom
    safe = np.where(span > 0, span, 1)
    hue = np.where(top == r, (g - b) / safe % 6, np.where(top == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    saturation = np.where(top > 0, span / np.where(top > 0, top, 1), 0)
    chromatic = (saturation >= 0.15) & (top >= 0.15)
    h = np.minimum((hue * HUE).astype(np.int64), HUE - 1)
    s = np.minimum(((saturation - 0.15) / 0.85 * SATURATION).astype(np.int64), SATURATION - 1).clip(0)
    v = np.minimum(((top - 0.15) / 0.85 * VALUE).astype(np.int64), VALUE - 1).clip(0)
    grey = HUE * SATURATION * VALUE + np.minimum((top * GREY_LEVELS).astype(np.int64), GREY_LEVELS - 1)
    bins = np.where(chromatic, (h * SATURATION + s) * VALUE + v, grey).reshape(len(pixels), -1)
    counts = np.stack([np.bincount(row, minlength=DIM) for row in bins]).astype(np.float32)
    return np.sqrt(counts / counts.sum(axis=1, keepdims=True))


def with_colour(embed: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """``embed`` (pixels to embeddings) followed by the colour histogram of the same pixels, as one row:
    the builder carries both through its batches, caches and shards, and splits them when it stores them."""
    def both(pixels: np.ndarray) -> np.ndarray:
        return np.concatenate([embed(pixels), colour_histograms(pixels)], axis=1)
    return both


def split(rows: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and colours of rows made by ``with_colour`` (``dim``: the embeddings' width)."""
    return np.ascontiguousarray(rows[:, :dim], np.float32), np.ascontiguousarray(rows[:, dim:], np.float32)
