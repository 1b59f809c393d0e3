"""Re-ranking after the first search: α-query expansion, database-side augmentation (Radenović et al.,
"Fine-tuning CNN image retrieval with no human annotation", 2018) and a two-view query, each scored
leave-one-out on labelled sets so that only what helps is offered.
"""
from __future__ import annotations

import numpy as np

from dinov2_numpy import normalize_rows

from .evaluate import ranking_metrics


def alpha_query_expansion(query: np.ndarray, neighbours: np.ndarray, similarities: np.ndarray,
                          alpha: float = 3.0) -> np.ndarray:
    """``query`` (D,) plus its top ``neighbours`` (n, D) weighted by ``similarity ** alpha``, normalised."""
    weights = np.clip(similarities, 0, None) ** alpha
    return normalize_rows((query + weights @ neighbours)[None])[0]


def _top(sims: np.ndarray, n: int) -> np.ndarray:
    """Indices of each row's ``n`` largest entries, the diagonal left out, best first."""
    sims = sims.copy()
    np.fill_diagonal(sims, -np.inf)
    top = np.argpartition(-sims, n, axis=1)[:, :n]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(sims, top, 1), axis=1), 1)


def qe_scores(features: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """Leave-one-out scores with α-QE: each image's query is expanded with its ``n`` nearest others."""
    sims = features @ features.T
    top = _top(sims, n)
    # The app's own expansion, query by query, so that the table scores what RERANK=qe ships.
    expanded = np.stack([alpha_query_expansion(features[i], features[top[i]], sims[i, top[i]], alpha)
                         for i in range(len(features))])
    return expanded @ features.T


def dba_scores(features: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """Leave-one-out scores against a gallery where every picture is replaced by itself plus its ``n``
    nearest others (weighted by ``similarity ** alpha``). A query never augments the gallery it is scored
    against: where it is among a picture's neighbours, the next neighbour takes its place."""
    sims = features @ features.T
    top = _top(sims, n + 1)
    weights = np.clip(np.take_along_axis(sims, top, 1), 0, None) ** alpha
    base = features + np.einsum("jn,jnd->jd", weights[:, :n], features[top[:, :n]])
    scores = features @ normalize_rows(base).T
    for j in range(len(features)):
        for slot, i in enumerate(top[j, :n]):
            swapped = base[j] - weights[j, slot] * features[i] + weights[j, n] * features[top[j, n]]
            scores[i, j] = features[i] @ (swapped / max(np.linalg.norm(swapped), 1e-12))
    return scores


def two_view_scores(gallery: np.ndarray, second_view: np.ndarray) -> np.ndarray:
    """Leave-one-out scores when each query is the normalised sum of its gallery view and a second view
    (the whole image beside the centre crop); the gallery keeps one view."""
    return normalize_rows(gallery + second_view) @ gallery.T


def evaluate_reranking(features: np.ndarray, whole: np.ndarray | None, labels: list[str]) -> dict[str, dict]:
    """Metrics of no re-ranking and of each option, by name."""
    results = {"none": ranking_metrics(features @ features.T, labels)}
    for n in (1, 2, 3):
        results[f"qe n={n} α=3"] = ranking_metrics(qe_scores(features, n, 3.0), labels)
        results[f"dba n={n} α=3"] = ranking_metrics(dba_scores(features, n, 3.0), labels)
    if whole is not None:
        results["two views (crop + whole)"] = ranking_metrics(two_view_scores(features, whole), labels)
    return results
