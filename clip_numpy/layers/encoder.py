"""A tower's stack of pre-norm blocks: DINOv2's block with CLIP's tensor names, no LayerScale, QuickGELU."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from dinov2_numpy.layers import Block, BlockLayout
from dinov2_numpy.ops import gelu_, quick_gelu_

from ..config import TowerConfig

_ATTENTION = {"query": "self_attn.q_proj", "key": "self_attn.k_proj", "value": "self_attn.v_proj",
              "output": "self_attn.out_proj"}
_ACTIVATIONS = {"quick_gelu": quick_gelu_, "gelu": gelu_}


def clip_layout(activation: str = "quick_gelu", causal: bool = False) -> BlockLayout:
    """Where a CLIP encoder layer keeps its tensors (Hugging Face naming), and how it differs from DINOv2's."""
    return BlockLayout(norm1="layer_norm1", norm2="layer_norm2", attention=_ATTENTION, layer_scale=None,
                       activation=_ACTIVATIONS[activation], causal=causal)


class Encoder:
    """``tower.num_layers`` blocks; ``causal`` for the text tower, whose tokens see only earlier ones."""

    def __init__(self, state: Mapping[str, np.ndarray], tower: TowerConfig, causal: bool = False) -> None:
        layout = clip_layout(tower.activation, causal)
        self.blocks = [Block(state, f"{tower.prefix}encoder.layers.{i}.", tower, layout)
                       for i in range(tower.num_layers)]

    def __call__(self, x: np.ndarray, batch: int) -> np.ndarray:
        """Runs every block on ``x`` (batch * tokens, D), in place; returns it."""
        for block in self.blocks:
            x = block(x, batch)
        return x
