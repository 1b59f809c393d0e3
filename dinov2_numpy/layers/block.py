"""A pre-norm transformer block with LayerScale."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..config import Dinov2Config
from ..ops import standardize
from .attention import Attention
from .mlp import Mlp, SwiGLUFFN


class Block:
    """``x + ls1 * attn(norm1(x))``, then ``x + ls2 * mlp(norm2(x))``. The norms' affine parts live in the
    next layer's weights and LayerScale in the output projections'."""

    def __init__(self, state: Mapping[str, np.ndarray], index: int, config: Dinov2Config) -> None:
        p = f"encoder.layer.{index}."
        self.eps = config.layer_norm_eps
        norm1 = (state[p + "norm1.weight"], state[p + "norm1.bias"])
        norm2 = (state[p + "norm2.weight"], state[p + "norm2.bias"])
        self.attn = Attention(state, p, config, input_affine=norm1, output_scale=state[p + "layer_scale1.lambda1"])
        ffn = SwiGLUFFN if config.swiglu else Mlp
        self.mlp = ffn(state, p, input_affine=norm2, output_scale=state[p + "layer_scale2.lambda1"])

    def __call__(self, x: np.ndarray, batch: int) -> np.ndarray:
        """Updates ``x`` (batch * tokens, D) in place and returns it."""
        x += self.attn(standardize(x, self.eps), batch)
        x += self.mlp(standardize(x, self.eps))
        return x
