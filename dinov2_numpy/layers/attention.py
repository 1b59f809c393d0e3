"""Multi-head self-attention with a fused query/key/value projection, optionally causal."""
from __future__ import annotations

import threading
from typing import Mapping

import numpy as np

from .. import ops
from .linear import Linear

# Upper bound for one block of attention scores, so that large images do not allocate N^2 x heads at once.
_SCORES_BYTES = 8 << 20
# exp(64) is 6e27 and exp(-64) 1.6e-28, so 257 or 100,000 tokens of such scores neither overflow float32's sum
# nor vanish.
_SAFE_LOGIT = 64.0
# Where DINOv2's attention keeps its tensors, below the block's prefix (Hugging Face naming).
DINOV2_NAMES = {"query": "attention.attention.query", "key": "attention.attention.key",
                "value": "attention.attention.value", "output": "attention.output.dense"}


class Attention:
    """``softmax(q k^T / sqrt(d)) v`` over all heads, then the output projection (times ``output_scale``);
    ``input_affine`` is the preceding LayerNorm's (gamma, beta). ``names`` says where the query, key, value
    and output projections live below ``prefix``; ``causal`` lets each token see only itself and earlier ones
    (a text encoder). ``config`` needs ``hidden_size``, ``num_heads`` and ``head_dim``."""

    def __init__(self, state: Mapping[str, np.ndarray], prefix: str, config,
                 input_affine: tuple[np.ndarray, np.ndarray] | None = None,
                 output_scale: np.ndarray | None = None, names: Mapping[str, str] = DINOV2_NAMES,
                 causal: bool = False) -> None:
        self.heads = config.num_heads
        self.head_dim = config.head_dim
        self.causal = causal
        parts = [prefix + names[n] for n in ("query", "key", "value")]
        # The 1/sqrt(d) temperature is folded into the query rows, saving a pass over the scores.
        temperature = np.concatenate([np.full(config.hidden_size, self.head_dim ** -0.5), np.ones(2 * config.hidden_size)])
        self.qkv = Linear(np.concatenate([state[p + ".weight"] for p in parts]),
                          np.concatenate([state[p + ".bias"] for p in parts]), temperature, input_affine)
        out = prefix + names["output"]
        self.out = Linear(state[out + ".weight"], state[out + ".bias"], output_scale)
        self._masks: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def _mask(self, n: int) -> np.ndarray | None:
        """The causal mask for ``n`` tokens (-inf above the diagonal), cached per length; None if not causal."""
        if not self.causal:
            return None
        with self._lock:
            mask = self._masks.get(n)
            if mask is None:
                mask = self._masks[n] = np.triu(np.full((n, n), -np.inf, np.float32), k=1)
        return mask

    def __call__(self, x: np.ndarray, batch: int) -> np.ndarray:
        """``x`` is (batch * tokens, D); returns the same shape."""
        rows, dim = x.shape
        n = rows // batch
        # Views, not copies: each head's q, k and v are (tokens, head_dim) slices of the fused product, and its
        # context a slice of the output's rows, all with unit inner stride, which BLAS reads and writes in place.
        qkv = self.qkv(x).reshape(batch, n, 3, self.heads, self.head_dim).transpose(0, 2, 3, 1, 4)
        context = np.empty((batch, n, self.heads, self.head_dim), np.float32)
        by_head = context.transpose(0, 2, 1, 3)
        group = max(1, min(self.heads, _SCORES_BYTES // (4 * n * n)))
        mask = self._mask(n)
        for b in range(batch):
            q, k, v = qkv[b]
            for h0 in range(0, self.heads, group):
                hs = slice(h0, h0 + group)
                _attend(q[hs], k[hs].transpose(0, 2, 1), v[hs], out=by_head[b, hs], mask=mask)
        return self.out(context.reshape(rows, dim))

def _attend(q: np.ndarray, k_t: np.ndarray, v: np.ndarray, out: np.ndarray, mask: np.ndarray | None = None) -> None:
    """``softmax(q k^T + mask) v`` into ``out``, for one head or a stack of them. The division comes after the
    value product: tokens x head_dim divisions, not tokens x tokens."""
    scores = ops.matmul(q, k_t)
    if mask is not None:
        scores += mask
    top = scores.max(axis=-1, keepdims=True)
    # Softmax does not change with a shift; the shift by the row's maximum is only needed where exp could
    # overflow or a whole row underflow, which float32 keeps clear of while every row's maximum is within
    # +-64. Skipping it saves a pass over the scores.
    if not -_SAFE_LOGIT < top.min() <= top.max() < _SAFE_LOGIT:
        scores -= top
    np.exp(scores, out=scores)
    # einsum sums rows in a third of the time of ``scores.sum(axis=-1)`` (NumPy 2.4).
    total = np.einsum("...i->...", scores)[..., None]
    ops.matmul(scores, v, out=out)
    out /= total
