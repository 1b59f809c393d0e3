"""The two feed-forward kinds: GELU MLP (ViT-S/B/L) and SwiGLU (ViT-g)."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..ops import gelu_, silu_


class Mlp:
    """``fc2(gelu(fc1(x)))`` with exact (erf) GELU."""

    def __init__(self, state: Mapping[str, np.ndarray], prefix: str) -> None:
        self.fc1_t = np.asarray(state[prefix + "mlp.fc1.weight"], np.float32).T
        self.fc1_b = np.asarray(state[prefix + "mlp.fc1.bias"], np.float32)
        self.fc2_t = np.asarray(state[prefix + "mlp.fc2.weight"], np.float32).T
        self.fc2_b = np.asarray(state[prefix + "mlp.fc2.bias"], np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = x @ self.fc1_t
        h += self.fc1_b
        gelu_(h)
        out = h @ self.fc2_t
        out += self.fc2_b
        return out


class SwiGLUFFN:
    """``w3(silu(x w1) * (x w2))``, with w1 and w2 stored stacked as ``weights_in``."""

    def __init__(self, state: Mapping[str, np.ndarray], prefix: str) -> None:
        w_in = np.asarray(state[prefix + "mlp.weights_in.weight"], np.float32)
        b_in = np.asarray(state[prefix + "mlp.weights_in.bias"], np.float32)
        hidden = w_in.shape[0] // 2
        # Two products instead of one and a split, so that both halves come out contiguous.
        self.gate_t, self.up_t = w_in[:hidden].T, w_in[hidden:].T
        self.gate_b, self.up_b = b_in[:hidden], b_in[hidden:]
        self.out_t = np.asarray(state[prefix + "mlp.weights_out.weight"], np.float32).T
        self.out_b = np.asarray(state[prefix + "mlp.weights_out.bias"], np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        gate = x @ self.gate_t
        gate += self.gate_b
        up = x @ self.up_t
        up += self.up_b
        silu_(gate)
        gate *= up
        out = gate @ self.out_t
        out += self.out_b
        return out
