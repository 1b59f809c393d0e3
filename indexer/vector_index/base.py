"""The one interface every vector-index backend implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np


class DimensionMismatch(ValueError):
    """Vectors whose width differs from the index's."""


class VectorIndex(ABC):
    """Cosine (inner-product on unit vectors) top-K over int64 ids."""

    name = "abstract"

    def __init__(self, dim: int) -> None:
        self.dim = int(dim)

    def check(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors`` as a float32 (n, dim) matrix, or DimensionMismatch."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors[None]
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            width = vectors.shape[-1] if vectors.ndim else 0
            raise DimensionMismatch(f"vectors have {width} dimensions but this {self.name} index holds "
                                    f"{self.dim}-dimensional ones; rebuild it for the new model "
                                    "('python build_gallery.py --rebuild')")
        return vectors

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray, paths: Sequence[str] | None = None) -> None:
        """Insert (or replace) vectors under ``ids``; ``paths`` is metadata for backends that keep it."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> None:
        """Delete ``ids``; unknown ids are ignored."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """For (Q, dim) unit queries: (Q, k) ids and scores, best first, padded with id -1 and -inf."""

    @abstractmethod
    def count(self) -> int:
        """Number of vectors held."""

    def close(self) -> None:
        """Release files, connections or servers."""


def pad(ids: list[list[int]], scores: list[list[float]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of unequal length as fixed (Q, k) arrays."""
    out_ids = np.full((len(ids), k), -1, np.int64)
    out_scores = np.full((len(ids), k), -np.inf, np.float32)
    for i, (row_ids, row_scores) in enumerate(zip(ids, scores)):
        n = min(k, len(row_ids))
        out_ids[i, :n] = row_ids[:n]
        out_scores[i, :n] = row_scores[:n]
    return out_ids, out_scores
