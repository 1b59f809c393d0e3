"""The vision tower: embeddings, pre-LayerNorm, encoder, post-LayerNorm on the class token, projection."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from dinov2_numpy.layers import Linear
from dinov2_numpy.ops import layer_norm, standardize
from dinov2_numpy.parallel import can_shard, map_shards

from .config import ClipConfig
from .layers import Encoder, VisionEmbeddings


class VisionTower:
    """(B, 3, S, S) preprocessed pixels to (B, projection_dim) image features, unnormalised: what
    ``CLIPModel.get_image_features`` returns."""

    def __init__(self, state: Mapping[str, np.ndarray], config: ClipConfig) -> None:
        tower = config.vision
        self.eps = tower.layer_norm_eps
        self.embeddings = VisionEmbeddings(state, config)
        self.pre_norm = (np.asarray(state["vision_model.pre_layrnorm.weight"], np.float32),
                         np.asarray(state["vision_model.pre_layrnorm.bias"], np.float32))
        self.encoder = Encoder(state, tower)
        # The post-LayerNorm's affine part is folded into the projection, which has no bias of its own.
        self.projection = Linear(state["visual_projection.weight"], np.zeros(config.projection_dim),
                                 input_affine=(state["vision_model.post_layernorm.weight"],
                                               state["vision_model.post_layernorm.bias"]))

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.asarray(pixels, dtype=np.float32)
        if pixels.ndim != 4:
            raise ValueError(f"pixels must have shape (B, 3, H, W), got {pixels.shape}")
        batch = pixels.shape[0]
        if can_shard(batch):
            return np.concatenate(map_shards(lambda s: self._forward(pixels[s]), batch))
        return self._forward(pixels)

    def _forward(self, pixels: np.ndarray) -> np.ndarray:
        batch = pixels.shape[0]
        tokens = self.embeddings(pixels)
        n = tokens.shape[1]
        x = layer_norm(tokens.reshape(batch * n, -1), *self.pre_norm, self.eps)
        x = self.encoder(x, batch)
        return self.projection(standardize(x.reshape(batch, n, -1)[:, 0], self.eps))
