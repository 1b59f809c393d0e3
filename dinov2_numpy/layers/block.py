"""A pre-norm transformer block, with LayerScale where the weights have it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from ..ops import standardize
from .attention import DINOV2_NAMES, Attention
from .mlp import Mlp, SwiGLUFFN


@dataclass(frozen=True)
class BlockLayout:
    """What differs between the models that share this block: tensor names below the block's prefix, the
    LayerScale tensors (None: no LayerScale), the MLP's activation (None: the MLP's default, the erf GELU)
    and whether attention is causal. The defaults are DINOv2's."""

    norm1: str = "norm1"
    norm2: str = "norm2"
    attention: Mapping[str, str] = field(default_factory=lambda: DINOV2_NAMES)
    layer_scale: tuple[str, str] | None = ("layer_scale1.lambda1", "layer_scale2.lambda1")
    activation: Callable[[np.ndarray], np.ndarray] | None = None
    causal: bool = False


DINOV2_LAYOUT = BlockLayout()


class Block:
    """``x + ls1 * attn(norm1(x))``, then ``x + ls2 * mlp(norm2(x))``. The norms' affine parts live in the
    next layer's weights and LayerScale in the output projections'. ``config`` needs ``hidden_size``,
    ``num_heads``, ``head_dim`` and ``layer_norm_eps``; a SwiGLU feed-forward is used where the weights
    have one."""

    def __init__(self, state: Mapping[str, np.ndarray], prefix: str, config,
                 layout: BlockLayout = DINOV2_LAYOUT) -> None:
        p = prefix
        self.eps = config.layer_norm_eps
        norm1 = (state[p + layout.norm1 + ".weight"], state[p + layout.norm1 + ".bias"])
        norm2 = (state[p + layout.norm2 + ".weight"], state[p + layout.norm2 + ".bias"])
        scale1, scale2 = (state[p + name] for name in layout.layer_scale) if layout.layer_scale else (None, None)
        self.attn = Attention(state, p, config, input_affine=norm1, output_scale=scale1, names=layout.attention,
                              causal=layout.causal)
        if p + "mlp.weights_in.weight" in state:
            self.mlp = SwiGLUFFN(state, p, input_affine=norm2, output_scale=scale2)
        else:
            self.mlp = Mlp(state, p, input_affine=norm2, output_scale=scale2, activation=layout.activation)

    def __call__(self, x: np.ndarray, batch: int) -> np.ndarray:
        """Updates ``x`` (batch * tokens, D) in place and returns it."""
        x += self.attn(standardize(x, self.eps), batch)
        x += self.mlp(standardize(x, self.eps))
        return x
