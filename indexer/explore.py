"""The whole gallery at once, from the embeddings the search uses: near-duplicate groups, clusters and a 2-D
map. Memory grows with N·k (neighbour lists), never with N² (a similarity matrix).

- ``neighbour_edges``: each picture's top-k neighbours above a floor, through the configured vector backend.
- ``duplicate_groups``: the connected groups of those edges at a threshold (union-find), cheap to redo when
  the threshold moves.
- ``minibatch_kmeans`` and ``choose_k``: clusters of the embeddings (Sculley's mini-batch k-means, k-means++
  seeds, a fixed seed for stable groups).
- ``pca_2d``: a map of the embeddings on their two main axes.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .vector_index import VectorIndex

Progress = Callable[[int, int], None]


def neighbour_edges(vectors: np.ndarray, ids: np.ndarray, backend: VectorIndex, k: int = 10, floor: float = 0.8,
                    batch: int = 512, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows a, rows b, scores)`` with a < b, for every pair where one is among the other's ``k`` nearest
    (``backend`` holds ``ids``/``vectors``) with a score of at least ``floor``."""
    row_of = {int(i): r for r, i in enumerate(ids)}
    a_parts, b_parts, s_parts = [], [], []
    for start in range(0, len(vectors), batch):
        found, scores = backend.search(np.asarray(vectors[start:start + batch], np.float32), k + 1)
        for offset, (row_ids, row_scores) in enumerate(zip(found, scores)):
            a = start + offset
            pairs = [(row_of.get(int(i)), float(s)) for i, s in zip(row_ids, row_scores) if s >= floor]
            pairs = [(b, s) for b, s in pairs if b is not None and b != a]
            if pairs:
                a_parts.append(np.full(len(pairs), a, np.int64))
                b_parts.append(np.array([b for b, _ in pairs], np.int64))
                s_parts.append(np.array([s for _, s in pairs], np.float32))
        if progress is not None:
            progress(min(start + batch, len(vectors)), len(vectors))
    if not a_parts:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    a, b, s = np.concatenate(a_parts), np.concatenate(b_parts), np.concatenate(s_parts)
    low, high = np.minimum(a, b), np.maximum(a, b)
    key = low * len(vectors) + high
    _, first = np.unique(key, return_index=True)  # a pair found from both ends counts once
    return low[first], high[first], s[first]


def duplicate_groups(n: int, a: np.ndarray, b: np.ndarray, scores: np.ndarray, threshold: float) -> list[list[int]]:
    """The connected groups (two rows or more) of the edges scoring at least ``threshold``, largest first."""
    parent = np.arange(n)

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    keep = scores >= threshold
    for x, y in zip(a[keep].tolist(), b[keep].tolist()):
        rx, ry = root(x), root(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    members: dict[int, list[int]] = {}
    for x in np.unique(np.concatenate([a[keep], b[keep]])).tolist():
        members.setdefault(root(x), []).append(x)
    return sorted((sorted(g) for g in members.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))


def choose_k(n: int) -> int:
    """The number of groups when none is asked for: about √(n/2) (the usual rule of thumb), from 2 to 60, so
    that a group of a large gallery still fits on a page of thumbnails."""
    return int(min(60, max(2, round(math.sqrt(n / 2))))) if n >= 2 else max(1, n)


def minibatch_kmeans(x: np.ndarray, k: int, seed: int = 0, batch: int = 2048, steps: int = 100,
                     progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(centres (k, D), label of every row)`` for unit rows ``x`` (cosine: centres are renormalised)."""
    rng = np.random.default_rng(seed)
    n = len(x)
    k = min(k, n)
    sample = np.asarray(x[rng.choice(n, min(n, 20 * k + 1000), replace=False)], np.float32)
    centres = _kmeans_pp(sample, k, rng)
    counts = np.zeros(k)
    for step in range(steps):
        chunk = np.asarray(x[rng.integers(0, n, min(batch, n))], np.float32)
        nearest = np.argmax(chunk @ centres.T, axis=1)
        for c in np.unique(nearest):
            members = chunk[nearest == c]
            counts[c] += len(members)
            rate = len(members) / counts[c]
            centres[c] = (1 - rate) * centres[c] + rate * members.mean(axis=0)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True) + 1e-12
        if progress is not None:
            progress(step + 1, steps + 1)
    labels = np.concatenate([np.argmax(np.asarray(x[s:s + 65536], np.float32) @ centres.T, axis=1)
                             for s in range(0, n, 65536)]) if n else np.empty(0, np.int64)
    if progress is not None:
        progress(steps + 1, steps + 1)
    return centres, labels


def _kmeans_pp(x: np.ndarray, k: int, rng) -> np.ndarray:
    """k-means++ seeds: each next centre drawn with probability growing with its distance to the chosen."""
    centres = [x[rng.integers(len(x))]]
    distance = 1 - x @ centres[0]
    for _ in range(1, k):
        weights = np.clip(distance, 0, None) ** 2
        total = weights.sum()
        pick = rng.choice(len(x), p=weights / total) if total > 0 else rng.integers(len(x))
        centres.append(x[pick])
        distance = np.minimum(distance, 1 - x @ x[pick])
    return np.array(centres, np.float32)


def pca_2d(x: np.ndarray, sample: int = 50_000, seed: int = 0) -> np.ndarray:
    """Every row's coordinates on the two main axes of the rows (axes fitted on a sample), scaled to [-1, 1]."""
    rng = np.random.default_rng(seed)
    fit = np.asarray(x[rng.choice(len(x), min(len(x), sample), replace=False)], np.float64)
    mean = fit.mean(axis=0)
    centred = fit - mean
    _, vectors = np.linalg.eigh(centred.T @ centred)  # a D x D problem: memory does not grow with the sample
    axes = vectors[:, ::-1][:, :2].T.astype(np.float32)
    points = np.concatenate([(np.asarray(x[s:s + 65536], np.float32) - mean.astype(np.float32)) @ axes.T
                             for s in range(0, len(x), 65536)])
    scale = np.abs(points).max(axis=0)
    return points / np.where(scale > 0, scale, 1)
