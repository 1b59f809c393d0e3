"""The whole gallery at once, from the embeddings the search uses: near-duplicate groups, clusters and a 2-D
map. Memory grows with N·k (neighbour lists), never with N² (a similarity matrix).

- ``similar_pairs``: each picture's top-k neighbours above a floor, straight from the embeddings: exact
  (blocked products) for a small gallery, an inverted file beyond ``EXACT_BELOW`` rows (k-means cells; each
  picture compared only with the members of its ``PROBES`` nearest cells), which keeps a million pictures
  to minutes instead of hours of all-pairs products.
- ``neighbour_edges``: the same through a vector backend's own search.
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

EXACT_BELOW = 50_000  # rows up to which similar_pairs compares all pairs (a small gallery's answer is exact)
PROBES = 16  # cells each picture is compared with beyond EXACT_BELOW (measured: docs/benchmarks.md)
BLOCK = 1 << 22  # scores computed at once (16 MB): the product and its top-k stay small whatever N is


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


def similar_pairs(x: np.ndarray, k: int = 10, floor: float = 0.8, exact_below: int = EXACT_BELOW,
                  probes: int = PROBES, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows a, rows b, scores)`` with a < b, for every pair where one is among the other's ``k`` nearest
    rows of the unit rows ``x`` with a score of at least ``floor``. Exact up to ``exact_below`` rows; beyond,
    a pair is found when one row's cell is among the other's ``probes`` nearest cells. ``progress`` counts
    scores computed (a vector with a vector or a centre), which is what the time goes into."""
    n = len(x)
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    k = min(k, n - 1)
    if n <= exact_below:
        rows, scores = _exact_top_k(x, k, progress)
    else:
        rows, scores = _inverted_file_top_k(x, k, probes, progress)
    a = np.repeat(np.arange(n, dtype=np.int64), k)
    b, s = rows.ravel().astype(np.int64), scores.ravel()
    keep = (s >= floor) & (b >= 0)
    return _unique_pairs(a[keep], b[keep], s[keep], n)


def _unique_pairs(a: np.ndarray, b: np.ndarray, s: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs as (low, high, score), a pair found from both ends once."""
    low, high = np.minimum(a, b), np.maximum(a, b)
    _, first = np.unique(low * n + high, return_index=True)
    return low[first], high[first], s[first].astype(np.float32)


def _merge_top_k(best_rows: np.ndarray, best_scores: np.ndarray, rows: np.ndarray, scores: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of two candidate lists per row (the lists hold distinct rows: cells never repeat)."""
    all_rows = np.concatenate([best_rows, rows], axis=1)
    all_scores = np.concatenate([best_scores, scores], axis=1)
    if all_rows.shape[1] > k:
        pick = np.argpartition(-all_scores, k - 1, axis=1)[:, :k]
        all_rows, all_scores = np.take_along_axis(all_rows, pick, axis=1), np.take_along_axis(all_scores, pick, axis=1)
    return all_rows, all_scores


def _block_top_k(queries: np.ndarray, query_rows: np.ndarray, members: np.ndarray, member_rows: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each query's ``k`` best members (itself excluded), padded with row -1 and score -inf."""
    scores = queries @ members.T
    scores[query_rows[:, None] == member_rows[None, :]] = -np.inf
    if scores.shape[1] > k:
        pick = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        return member_rows[pick], np.take_along_axis(scores, pick, axis=1)
    pad = k - scores.shape[1]
    rows = np.broadcast_to(member_rows, scores.shape)
    return (np.pad(rows, ((0, 0), (0, pad)), constant_values=-1),
            np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf))


def _exact_top_k(x: np.ndarray, k: int, progress: Progress | None) -> tuple[np.ndarray, np.ndarray]:
    """Every row's ``k`` nearest other rows: row blocks against the whole matrix, ``BLOCK`` scores at a time."""
    n = len(x)
    everything = np.asarray(x, np.float32)
    all_rows = np.arange(n, dtype=np.int32)
    step = max(1, BLOCK // n)
    best_rows, best_scores = np.empty((n, k), np.int32), np.empty((n, k), np.float32)
    for start in range(0, n, step):
        block = slice(start, min(n, start + step))
        best_rows[block], best_scores[block] = _block_top_k(everything[block], all_rows[block], everything, all_rows, k)
        if progress is not None:
            progress(block.stop * n, n * n)
    return best_rows, best_scores


def _inverted_file_top_k(x: np.ndarray, k: int, probes: int, progress: Progress | None) -> tuple[np.ndarray, np.ndarray]:
    """Every row's ``k`` nearest among the members of its ``probes`` nearest k-means cells (each row a member
    of its nearest cell only): about N·probes·N/cells scores instead of N²."""
    n, d = x.shape
    cells = int(round(2 * math.sqrt(n)))
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(n, min(n, 64 * cells), replace=False))
    train_steps = 100
    fit_work = (train_steps * 4096 + 2 * len(sample)) * cells
    centres, labels = minibatch_kmeans(np.asarray(x[sample], np.float32), cells, seed=0, batch=4096, steps=train_steps)
    cells = len(centres)
    probes = min(probes, cells)
    sampled = np.bincount(labels, minlength=cells) * (n / len(sample))  # the cells' sizes, from the sample
    guess = fit_work + n * cells + int(probes * (sampled ** 2).sum())  # until every row is assigned
    report = progress or (lambda done, total: None)
    report(fit_work, guess)
    probe = np.empty((n, probes), np.int32)
    step = max(1, BLOCK // cells)
    for start in range(0, n, step):
        scores = np.asarray(x[start:start + step], np.float32) @ centres.T
        near = np.argpartition(-scores, probes - 1, axis=1)[:, :probes]
        order = np.argsort(-np.take_along_axis(scores, near, axis=1), axis=1)
        probe[start:start + step] = np.take_along_axis(near, order, axis=1)  # nearest first: the home cell
        report(fit_work + min(n, start + step) * cells, guess)
    members = _rows_by_cell(probe[:, 0], cells)
    queries = _rows_by_cell(probe.ravel(), cells, per_row=probes)
    sizes = np.array([len(m) for m in members], np.int64)
    asked = np.array([len(q) for q in queries], np.int64)
    done = fit_work + n * cells
    total = done + int((sizes * asked).sum())
    best_rows, best_scores = np.full((n, k), -1, np.int32), np.full((n, k), -np.inf, np.float32)
    for c in np.flatnonzero(sizes).tolist():  # cells of every size mixed: a rate measured early holds later
        member_rows = members[c]
        member_vectors = np.asarray(x[member_rows], np.float32)
        step = max(1, BLOCK // len(member_rows))
        for start in range(0, len(queries[c]), step):
            rows = queries[c][start:start + step]
            found = _block_top_k(np.asarray(x[rows], np.float32), rows, member_vectors, member_rows, k)
            best_rows[rows], best_scores[rows] = _merge_top_k(best_rows[rows], best_scores[rows], *found, k)
            done += len(rows) * len(member_rows)
            report(done, total)
    return best_rows, best_scores


def _rows_by_cell(cell_of: np.ndarray, cells: int, per_row: int = 1) -> list[np.ndarray]:
    """The rows in each cell, ascending (``cell_of`` holds ``per_row`` cells for each row, row by row)."""
    order = np.argsort(cell_of, kind="stable")
    bounds = np.searchsorted(cell_of[order], np.arange(cells + 1))
    rows = (order // per_row).astype(np.int32)
    return [rows[bounds[c]:bounds[c + 1]] for c in range(cells)]


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
