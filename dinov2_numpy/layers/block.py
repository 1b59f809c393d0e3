"""A pre-norm transformer block with LayerScale."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..config import Dinov2Config
from ..ops import layer_norm
from .attention import Attention
from .mlp import Mlp, SwiGLUFFN


class Block:
    """``x + ls1 * attn(norm1(x))``, then ``x + ls2 * mlp(norm2(x))``."""

    def __init__(self, state: Mapping[str, np.ndarray], index: int, config: Dinov2Config) -> None:
        p = f"encoder.layer.{index}."
        self.eps = config.layer_norm_eps
        self.norm1 = (np.asarray(state[p + "norm1.weight"], np.float32), np.asarray(state[p + "norm1.bias"], np.float32))
        self.norm2 = (np.asarray(state[p + "norm2.weight"], np.float32), np.asarray(state[p + "norm2.bias"], np.float32))
        self.attn = Attention(state, p, config)
        self.ls1 = np.asarray(state[p + "layer_scale1.lambda1"], np.float32)
        self.ls2 = np.asarray(state[p + "layer_scale2.lambda1"], np.float32)
        self.mlp = SwiGLUFFN(state, p) if config.swiglu else Mlp(state, p)

    def __call__(self, x: np.ndarray, batch: int) -> np.ndarray:
        """Updates ``x`` (batch * tokens, D) in place and returns it."""
        h = self.attn(layer_norm(x, *self.norm1, self.eps), batch)
        h *= self.ls1
        x += h
        h = self.mlp(layer_norm(x, *self.norm2, self.eps))
        h *= self.ls2
        x += h
        return x
