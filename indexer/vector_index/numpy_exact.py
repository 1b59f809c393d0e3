"""Exact search with NumPy: a (memory-mapped) float32 matrix, one product per batch, argpartition top-K.
The simplest thing that works, and fast enough up to about 100k images."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import VectorIndex

_BLOCK = 1 << 16  # rows scored at a time, bounding the score matrix for batched queries


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest scores of each row, best first (ties by index)."""
    n = scores.shape[1]
    k = min(k, n)
    if k == 0:
        return np.empty((scores.shape[0], 0), np.int64)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (scores.shape[0], 1))
    picked = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -picked), axis=1)
    return np.take_along_axis(part, order, axis=1)


class NumpyIndex(VectorIndex):
    """Blocks of rows (a generation's segments, memory-mapped) with a live mask each: removing a row only
    clears its flag, adding appends a block, so neither copies the matrix."""

    name = "numpy"

    def __init__(self, dim: int, ids: np.ndarray | None = None, vectors: np.ndarray | None = None,
                 blocks: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]] = ()) -> None:
        super().__init__(dim)
        self.blocks = [(np.asarray(i, np.int64), v, np.array(live, bool)) for i, v, live in blocks]
        if ids is not None and len(ids):
            self.blocks.append((np.asarray(ids, np.int64), vectors, np.ones(len(ids), bool)))

    @property
    def ids(self) -> np.ndarray:
        """The live ids, block by block."""
        return np.concatenate([i[live] for i, _, live in self.blocks]) if self.blocks else np.empty(0, np.int64)

    @property
    def vectors(self) -> np.ndarray:
        """The live vectors as one matrix (a copy when there are several blocks)."""
        if len(self.blocks) == 1 and self.blocks[0][2].all():
            return self.blocks[0][1]
        if not self.blocks:
            return np.empty((0, self.dim), np.float32)
        return np.concatenate([np.asarray(v)[live] for _, v, live in self.blocks])

    def add(self, ids: np.ndarray, vectors: np.ndarray, paths: Sequence[str] | None = None) -> None:
        vectors = self.check(vectors)
        ids = np.asarray(ids, np.int64)
        self.remove(ids)
        self.blocks.append((ids, vectors, np.ones(len(ids), bool)))

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, np.int64)
        for block_ids, _, live in self.blocks:
            live &= ~np.isin(block_ids, ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = self.check(queries)
        cand_ids, cand_scores = [], []
        for ids, vectors, live in self.blocks:
            all_live = live.all()
            for start in range(0, len(ids), _BLOCK):
                scores = queries @ np.asarray(vectors[start:start + _BLOCK]).T
                if not all_live:
                    scores[:, ~live[start:start + _BLOCK]] = -np.inf
                rows = top_k_rows(scores, k)
                cand_ids.append(ids[start:start + _BLOCK][rows])
                cand_scores.append(np.take_along_axis(scores, rows, axis=1))
        best_ids = np.full((len(queries), k), -1, np.int64)
        best_scores = np.full((len(queries), k), -np.inf, np.float32)
        if not cand_ids:
            return best_ids, best_scores
        ids, scores = np.concatenate(cand_ids, axis=1), np.concatenate(cand_scores, axis=1)
        pick = top_k_rows(scores, k)
        picked_ids, picked_scores = np.take_along_axis(ids, pick, axis=1), np.take_along_axis(scores, pick, axis=1)
        found = np.isfinite(picked_scores)  # a removed row scored -inf only fills a short result
        best_ids[:, :pick.shape[1]] = np.where(found, picked_ids, -1)
        best_scores[:, :pick.shape[1]] = picked_scores
        return best_ids, best_scores

    def count(self) -> int:
        return int(sum(live.sum() for _, _, live in self.blocks))
