"""Bicubic resizing of the position-embedding grid, equal to ``torch.nn.functional.interpolate``.

Both of PyTorch's bicubic modes are written as a (out, in) weight matrix per axis, so a 2-D resize is two
small matrix products. Weights are computed in float64.
"""
from __future__ import annotations

import math

import numpy as np


def _keys_cubic(x: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with parameter ``a``."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``interpolate(mode='bicubic', align_corners=False, antialias=False)``: a = -0.75, clamped borders."""
    scale = in_size / out_size
    src = (np.arange(out_size) + 0.5) * scale - 0.5
    left = np.floor(src)
    t = src - left
    m = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    for k in range(-1, 3):
        idx = np.clip(left + k, 0, in_size - 1).astype(int)
        np.add.at(m, (rows, idx), _keys_cubic(t - k, -0.75))
    return m


def bicubic_antialias_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``interpolate(mode='bicubic', align_corners=False, antialias=True)``: PIL's filter, a = -0.5."""
    scale = in_size / out_size
    support = 2.0 * scale if scale >= 1.0 else 2.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    m = np.zeros((out_size, in_size))
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo = max(math.trunc(center - support + 0.5), 0)
        hi = min(math.trunc(center + support + 0.5), in_size)
        w = _keys_cubic((np.arange(lo, hi) - center + 0.5) * inv, -0.5)
        total = w.sum()
        m[i, lo:hi] = w / total if total != 0 else w
    return m


def resize_grid(grid: np.ndarray, out_h: int, out_w: int, antialias: bool) -> np.ndarray:
    """Resize a (H, W, C) grid to (out_h, out_w, C) in float32."""
    make = bicubic_antialias_matrix if antialias else bicubic_matrix
    mh = make(grid.shape[0], out_h)
    mw = make(grid.shape[1], out_w)
    out = np.einsum("oh,hwc,pw->opc", mh, grid.astype(np.float64), mw, optimize=True)
    return out.astype(np.float32)
