"""The two feed-forward kinds: a two-layer MLP (ViT-S/B/L; CLIP with QuickGELU) and SwiGLU (ViT-g)."""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from ..ops import gelu_, silu_
from .linear import Linear


class Mlp:
    """``fc2(activation(fc1(x)))``; the activation works in place, by default (None) the erf GELU
    (``ops.gelu_``, within 3.3e-7 of it). ``input_affine`` and ``output_scale`` as in ``Linear``."""

    def __init__(self, state: Mapping[str, np.ndarray], prefix: str,
                 input_affine: tuple[np.ndarray, np.ndarray] | None = None,
                 output_scale: np.ndarray | None = None,
                 activation: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.fc1 = Linear(state[prefix + "mlp.fc1.weight"], state[prefix + "mlp.fc1.bias"], input_affine=input_affine)
        self.fc2 = Linear(state[prefix + "mlp.fc2.weight"], state[prefix + "mlp.fc2.bias"], output_scale)
        self.activation = activation

    def __call__(self, x: np.ndarray) -> np.ndarray:
        # The default is looked up at each call, so that ``bench --profile`` can time it by patching it.
        return self.fc2((self.activation or gelu_)(self.fc1(x)))


class SwiGLUFFN:
    """``w3(silu(x w1) * (x w2))``, with w1 and w2 stored stacked as ``weights_in``."""

    def __init__(self, state: Mapping[str, np.ndarray], prefix: str,
                 input_affine: tuple[np.ndarray, np.ndarray] | None = None,
                 output_scale: np.ndarray | None = None) -> None:
        w_in = state[prefix + "mlp.weights_in.weight"]
        b_in = state[prefix + "mlp.weights_in.bias"]
        hidden = w_in.shape[0] // 2
        # Two products instead of one and a split, so that both halves come out contiguous.
        self.gate = Linear(w_in[:hidden], b_in[:hidden], input_affine=input_affine)
        self.up = Linear(w_in[hidden:], b_in[hidden:], input_affine=input_affine)
        self.out = Linear(state[prefix + "mlp.weights_out.weight"], state[prefix + "mlp.weights_out.bias"], output_scale)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        gate = silu_(self.gate(x))
        gate *= self.up(x)
        return self.out(gate)
