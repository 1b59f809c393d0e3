"""Which parts of two pictures correspond: mutual nearest neighbours between their DINOv2 patch grids.

Patches of the same object part in two pictures are each other's most similar patch (cosine similarity of
their tokens), which is what the DINOv2 paper's dense-correspondence figures show. Raw tokens of a middle
block also carry where a patch sits: every token keeps a share of its position embedding through the residual
stream, so that without care a patch matches the patch at the same place in the other picture, whatever it
shows (a mirrored copy matches at the same x, not the mirrored one). That share is removed first: the tokens
are projected off the leading directions of the grid's position embeddings, a property of the weights alone.

Plain NumPy on tokens and boxes: the caller runs the model and says where each grid lies in its picture.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dinov2_numpy import normalize_rows

POSITION_DIRECTIONS = 16  # leading directions of the position embeddings taken out of every token
MIN_SIMILARITY = 0.5  # a kept pair's cosine similarity at least (an unrelated patch's best is about 0.4)
# A kept pair's similarity must stand out from the next best candidate beyond the partner's own neighbours:
# (1 - best) / (1 - next) at most this (Lowe's ratio test, on cosine distances). Plain walls and skies, which
# match everywhere about as well and so land where the position bias puts them, drop out here.
MAX_RATIO = 0.9
# A kept pair must keep its neighbourhood: of its NEIGHBOURS nearest pairs in the query, at least MIN_SHARED
# (a fraction) must also be among its nearest in the result. A mirror, a crop, a change of scale or a bent
# object keeps neighbourhoods; a wrong match, landed where a repeated texture or a symmetric part looks the
# same, is alone among strangers. Locality-preserving matching (Ma et al., 2019), repeated until stable.
NEIGHBOURS = 12
MIN_SHARED = 0.5


@dataclass
class Grid:
    """One picture's patch grid: ``rows`` x ``cols`` patches covering ``box`` (x, y, w, h) of the picture, in
    the picture's own pixels (the part its preprocessing shows the model, ``descriptor.prepared_box``)."""

    rows: int
    cols: int
    box: tuple[float, float, float, float]

    def centres(self, patches: np.ndarray) -> np.ndarray:
        """(len(patches), 2) x, y centres in the picture's pixels of row-major patch indices."""
        x, y, w, h = self.box
        r, c = np.divmod(np.asarray(patches), self.cols)
        return np.stack([x + (c + 0.5) * w / self.cols, y + (r + 0.5) * h / self.rows], axis=1)

    @property
    def patch_size(self) -> float:
        """A patch's side in the picture's pixels (the mean of its width and height)."""
        return (self.box[2] / self.cols + self.box[3] / self.rows) / 2


@dataclass
class Correspondences:
    """Mutual nearest neighbours, strongest first: ``query[i]`` and ``result[i]`` are patch indices of the two
    grids with cosine similarity ``similarities[i]`` and strength ``scores[i]`` = 1 - the ratio test's ratio
    (1: unmistakable; 0.1 the weakest kept). A heat map holds, per patch of one grid, its best similarity to
    any patch of the other: how well that part is found there."""

    query: np.ndarray
    result: np.ndarray
    scores: np.ndarray
    similarities: np.ndarray
    query_heat: np.ndarray  # (rows, cols) of the query's grid
    result_heat: np.ndarray


def position_basis(position_embeddings: np.ndarray, k: int = POSITION_DIRECTIONS) -> np.ndarray:
    """(k, D) orthonormal leading directions of a grid's position embeddings (N, D) about their mean."""
    centred = (position_embeddings - position_embeddings.mean(axis=0)).astype(np.float64)
    _, vectors = np.linalg.eigh(centred.T @ centred)  # ascending: the leading directions are the last columns
    return np.ascontiguousarray(vectors[:, ::-1][:, :k].T, np.float32)


def without_position(tokens: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """``tokens`` (N, D) projected off ``basis`` (k, D) and scaled to unit length."""
    tokens = np.asarray(tokens, np.float32)
    return normalize_rows(tokens - (tokens @ basis.T) @ basis)


def match(query: np.ndarray, result: np.ndarray, query_grid: Grid, result_grid: Grid,
          min_similarity: float = MIN_SIMILARITY, max_ratio: float = MAX_RATIO) -> Correspondences:
    """Mutual nearest neighbours between unit patch tokens ``query`` (N, D) and ``result`` (M, D) laid out as
    the grids say, kept when similar enough and distinct enough (``MAX_RATIO``), strongest first."""
    similarity = query @ result.T
    best_result = similarity.argmax(axis=1)
    best_query = similarity.argmax(axis=0)
    mutual = np.nonzero(best_query[best_result] == np.arange(len(query)))[0]
    partner = best_result[mutual]
    best = similarity[mutual, partner]
    runner_up = np.maximum(_next_best(similarity[mutual], partner, result_grid),
                           _next_best(similarity[:, partner].T, mutual, query_grid))
    ratio = (1.0 - best) / np.maximum(1.0 - runner_up, 1e-6)
    kept = np.nonzero((best >= min_similarity) & (ratio <= max_ratio))[0]
    kept = kept[locally_consistent(query_grid.centres(mutual[kept]) / query_grid.patch_size,
                                   result_grid.centres(partner[kept]) / result_grid.patch_size)]
    order = np.argsort(ratio[kept], kind="stable")
    mutual, partner, best, ratio = (a[kept][order] for a in (mutual, partner, best, ratio))
    return Correspondences(mutual, partner, 1.0 - ratio, best,
                           similarity.max(axis=1).reshape(query_grid.rows, query_grid.cols),
                           similarity.max(axis=0).reshape(result_grid.rows, result_grid.cols))


def locally_consistent(query: np.ndarray, result: np.ndarray, neighbours: int = NEIGHBOURS,
                       min_shared: float = MIN_SHARED) -> np.ndarray:
    """Indices of the pairs (``query[i]``, ``result[i]``: (n, 2) positions) whose nearest pairs in the query
    are mostly their nearest in the result too (``NEIGHBOURS``, ``MIN_SHARED``), dropping the others until none
    is left to drop. Distances count ties alike, so that a perfect mirror keeps every pair."""
    kept = np.arange(len(query))
    while len(kept) > 2:
        k = min(neighbours, len(kept) - 1)
        near_q, near_r = _nearest(query[kept], k), _nearest(result[kept], k)
        shared = (near_q & near_r).sum(axis=1) / np.minimum(near_q.sum(axis=1), near_r.sum(axis=1))
        if shared.min() >= min_shared:
            break
        kept = kept[shared >= min_shared]
    return kept


def _nearest(points: np.ndarray, k: int) -> np.ndarray:
    """(n, n) booleans: j is among i's ``k`` nearest other points (with every point as far as the k-th)."""
    distance = np.linalg.norm(points[:, None] - points[None], axis=2)
    np.fill_diagonal(distance, np.inf)
    radius = np.partition(distance, k - 1, axis=1)[:, k - 1:k]
    return distance <= radius


def _next_best(similarity: np.ndarray, best: np.ndarray, grid: Grid) -> np.ndarray:
    """Per row of ``similarity`` (K, rows x cols of ``grid``), the highest value outside the 3 x 3 patches
    around that row's ``best`` (its neighbours share part of what it shows)."""
    r, c = np.divmod(np.arange(grid.rows * grid.cols), grid.cols)
    br, bc = np.divmod(best, grid.cols)
    near = (np.abs(r[None] - br[:, None]) <= 1) & (np.abs(c[None] - bc[:, None]) <= 1)
    return np.where(near, -np.inf, similarity).max(axis=1)
