"""Exact search with NumPy: a (memory-mapped) float32 matrix, one product per batch, argpartition top-K.
The simplest thing that works, and fast enough up to about 100k images."""
from __future__ import annotations

import os
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
    name = "numpy"

    def __init__(self, dim: int, ids: np.ndarray | None = None, vectors: np.ndarray | None = None) -> None:
        super().__init__(dim)
        self.ids = np.asarray(ids if ids is not None else np.empty(0, np.int64), np.int64)
        self.vectors = vectors if vectors is not None else np.empty((0, dim), np.float32)

    def add(self, ids: np.ndarray, vectors: np.ndarray, paths: Sequence[str] | None = None) -> None:
        vectors = self.check(vectors)
        ids = np.asarray(ids, np.int64)
        keep = ~np.isin(self.ids, ids)
        self.ids = np.concatenate([self.ids[keep], ids])
        self.vectors = np.concatenate([np.asarray(self.vectors)[keep], vectors])

    def remove(self, ids: np.ndarray) -> None:
        keep = ~np.isin(self.ids, np.asarray(ids, np.int64))
        self.ids, self.vectors = self.ids[keep], np.asarray(self.vectors)[keep]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = self.check(queries)
        n = len(self.ids)
        k_eff = min(k, n)
        best_ids = np.full((len(queries), k), -1, np.int64)
        best_scores = np.full((len(queries), k), -np.inf, np.float32)
        if k_eff == 0:
            return best_ids, best_scores
        if n <= _BLOCK:
            scores = queries @ np.asarray(self.vectors).T
            rows = top_k_rows(scores, k_eff)
            best_ids[:, :k_eff] = self.ids[rows]
            best_scores[:, :k_eff] = np.take_along_axis(scores, rows, axis=1)
            return best_ids, best_scores
        cand_rows, cand_scores = [], []
        for start in range(0, n, _BLOCK):
            scores = queries @ np.asarray(self.vectors[start:start + _BLOCK]).T
            rows = top_k_rows(scores, k_eff)
            cand_rows.append(rows + start)
            cand_scores.append(np.take_along_axis(scores, rows, axis=1))
        rows, scores = np.concatenate(cand_rows, axis=1), np.concatenate(cand_scores, axis=1)
        pick = top_k_rows(scores, k_eff)
        best_ids[:, :k_eff] = self.ids[np.take_along_axis(rows, pick, axis=1)]
        best_scores[:, :k_eff] = np.take_along_axis(scores, pick, axis=1)
        return best_ids, best_scores

    def count(self) -> int:
        return len(self.ids)

    def save(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        np.save(os.path.join(folder, "vectors.npy"), np.asarray(self.vectors, np.float32))
        np.save(os.path.join(folder, "ids.npy"), self.ids)

    @classmethod
    def load(cls, folder: str) -> "NumpyIndex":
        vectors = np.load(os.path.join(folder, "vectors.npy"), mmap_mode="r")
        return cls(vectors.shape[1], np.load(os.path.join(folder, "ids.npy")), vectors)
