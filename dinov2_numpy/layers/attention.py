"""Multi-head self-attention with a fused query/key/value projection."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..config import Dinov2Config
from ..ops import softmax_

# Upper bound for one block of attention scores, so that large images do not allocate N^2 x heads at once.
_SCORES_BYTES = 32 << 20


class Attention:
    """``softmax(q k^T / sqrt(d)) v`` over all heads, followed by the output projection."""

    def __init__(self, state: Mapping[str, np.ndarray], prefix: str, config: Dinov2Config) -> None:
        self.heads = config.num_heads
        self.head_dim = config.head_dim
        scale = np.float32(self.head_dim ** -0.5)
        a = prefix + "attention.attention."
        # The 1/sqrt(d) score scale is folded into the query projection, saving a pass over the scores.
        weights = [state[a + n + ".weight"] for n in ("query", "key", "value")]
        biases = [state[a + n + ".bias"] for n in ("query", "key", "value")]
        self.qkv_t = np.ascontiguousarray(np.concatenate([weights[0] * scale, weights[1], weights[2]]).T, np.float32)
        self.qkv_b = np.concatenate([biases[0] * scale, biases[1], biases[2]]).astype(np.float32)
        self.out_t = np.asarray(state[prefix + "attention.output.dense.weight"], np.float32).T
        self.out_b = np.asarray(state[prefix + "attention.output.dense.bias"], np.float32)

    def __call__(self, x: np.ndarray, batch: int) -> np.ndarray:
        """``x`` is (batch * tokens, D); returns the same shape."""
        rows, dim = x.shape
        n = rows // batch
        qkv = x @ self.qkv_t
        qkv += self.qkv_b
        qkv = qkv.reshape(batch, n, 3, self.heads, self.head_dim)
        context = np.empty((batch, n, self.heads, self.head_dim), np.float32)
        group = max(1, min(self.heads, _SCORES_BYTES // (4 * n * n)))
        for b in range(batch):
            for h0 in range(0, self.heads, group):
                hs = slice(h0, h0 + group)
                q = qkv[b, :, 0, hs].transpose(1, 0, 2)
                k = qkv[b, :, 1, hs].transpose(1, 2, 0)
                v = qkv[b, :, 2, hs].transpose(1, 0, 2)
                scores = softmax_(np.matmul(q, k))
                context[b, :, hs] = np.matmul(scores, v).transpose(1, 0, 2)
        out = context.reshape(rows, dim) @ self.out_t
        out += self.out_b
        return out
