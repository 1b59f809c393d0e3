"""Multi-head self-attention with a fused query/key/value projection."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .. import ops
from ..config import Dinov2Config
from .linear import Linear

# Upper bound for one block of attention scores, so that large images do not allocate N^2 x heads at once.
_SCORES_BYTES = 8 << 20


class Attention:
    """``softmax(q k^T / sqrt(d)) v`` over all heads, then the output projection (times ``output_scale``);
    ``input_affine`` is the preceding LayerNorm's (gamma, beta)."""

    def __init__(self, state: Mapping[str, np.ndarray], prefix: str, config: Dinov2Config,
                 input_affine: tuple[np.ndarray, np.ndarray] | None = None,
                 output_scale: np.ndarray | None = None) -> None:
        self.heads = config.num_heads
        self.head_dim = config.head_dim
        a = prefix + "attention.attention."
        names = ("query", "key", "value")
        # The 1/sqrt(d) temperature is folded into the query rows, saving a pass over the scores.
        temperature = np.concatenate([np.full(config.hidden_size, self.head_dim ** -0.5), np.ones(2 * config.hidden_size)])
        self.qkv = Linear(np.concatenate([state[a + n + ".weight"] for n in names]),
                          np.concatenate([state[a + n + ".bias"] for n in names]), temperature, input_affine)
        self.out = Linear(state[prefix + "attention.output.dense.weight"], state[prefix + "attention.output.dense.bias"],
                          output_scale)

    def __call__(self, x: np.ndarray, batch: int) -> np.ndarray:
        """``x`` is (batch * tokens, D); returns the same shape."""
        rows, dim = x.shape
        n = rows // batch
        # One copy to (3, batch, heads, tokens, head_dim) gives every head contiguous q, k and v.
        qkv = np.ascontiguousarray(self.qkv(x).reshape(batch, n, 3, self.heads, self.head_dim).transpose(2, 0, 3, 1, 4))
        q, k, v = qkv
        context = np.empty((batch, self.heads, n, self.head_dim), np.float32)
        group = max(1, min(self.heads, _SCORES_BYTES // (4 * n * n)))
        for b in range(batch):
            for h0 in range(0, self.heads, group):
                hs = slice(h0, h0 + group)
                _attend(q[b, hs], k[b, hs].transpose(0, 2, 1), v[b, hs], out=context[b, hs])
        return self.out(context.transpose(0, 2, 1, 3).reshape(rows, dim))


def _attend(q: np.ndarray, k_t: np.ndarray, v: np.ndarray, out: np.ndarray) -> None:
    """``softmax(q k^T) v`` into ``out``, for one head or a stack of them. The division comes after the
    value product: tokens x head_dim divisions, not tokens x tokens."""
    scores = ops.matmul(q, k_t)
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    total = scores.sum(axis=-1, keepdims=True)
    ops.matmul(scores, v, out=out)
    out /= total
