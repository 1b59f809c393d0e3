"""A large approximate index with a small exact one on top: the graph of a generation's base segment, and the
rows later changes appended, searched exactly until a compaction folds them into the graph."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import VectorIndex
from .numpy_exact import NumpyIndex, top_k_rows


class Layered(VectorIndex):
    """Read-only: changes go to the generation's files, and a new generation opens a new ``Layered``."""

    def __init__(self, base: VectorIndex, top: NumpyIndex) -> None:
        super().__init__(base.dim)
        self.base, self.top = base, top
        self.name = f"{base.name}+segments"

    def add(self, ids: np.ndarray, vectors: np.ndarray, paths: Sequence[str] | None = None) -> None:
        raise TypeError("a layered index is read-only; append a change to the generation instead")

    remove = add

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = self.check(queries)
        # A replaced or deleted base row is among the base's deleted ids, so the layers never repeat an id.
        top_ids, top_scores = self.top.search(queries, k)
        base_ids, base_scores = self.base.search(queries, k)
        ids, scores = np.concatenate([top_ids, base_ids], axis=1), np.concatenate([top_scores, base_scores], axis=1)
        pick = top_k_rows(scores, k)
        out_ids, out_scores = np.take_along_axis(ids, pick, axis=1), np.take_along_axis(scores, pick, axis=1)
        return np.where(np.isfinite(out_scores), out_ids, -1), out_scores

    def count(self) -> int:
        return self.base.count() + self.top.count()

    def close(self) -> None:
        self.base.close()
