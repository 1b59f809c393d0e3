"""The text tower: token and position embeddings, a causal encoder, the final LayerNorm on the end-of-text
token's state, projection."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from dinov2_numpy.layers import Linear
from dinov2_numpy.ops import standardize

from .config import ClipConfig
from .layers import Encoder, TextEmbeddings


class TextTower:
    """(B, context) token ids to (B, projection_dim) text features, unnormalised: what
    ``CLIPModel.get_text_features`` returns for the same ids."""

    def __init__(self, state: Mapping[str, np.ndarray], config: ClipConfig) -> None:
        tower = config.text
        self.eps = tower.layer_norm_eps
        self.embeddings = TextEmbeddings(state, config)
        self.encoder = Encoder(state, tower, causal=True)
        # The final LayerNorm's affine part is folded into the projection, which has no bias of its own.
        self.projection = Linear(state["text_projection.weight"], np.zeros(config.projection_dim),
                                 input_affine=(state["text_model.final_layer_norm.weight"],
                                               state["text_model.final_layer_norm.bias"]))

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"token ids must be a (B, n) integer array, got {ids.dtype} {ids.shape}")
        batch = ids.shape[0]
        if batch == 0:
            return np.empty((0, self.projection.weight_t.shape[1]), np.float32)
        # The end-of-text token has the highest id, so its position is the argmax (as OpenAI and transformers
        # take it). The mask is causal: no token sees a later one, so the tokens after the last end-of-text
        # change nothing and are not computed.
        eot = ids.argmax(axis=1)
        n = int(eot.max()) + 1
        x = self.embeddings(ids[:, :n]).reshape(batch * n, -1)
        x = self.encoder(x, batch).reshape(batch, n, -1)
        return self.projection(standardize(x[np.arange(batch), eot], self.eps))
