"""Choosing a descriptor by evaluation: every candidate scored on labelled sets from one pass per image.

Each image is run once per preprocessing with the outputs of every candidate block kept, so scoring a
hundred candidates costs little more than embedding the sets once.
"""
from __future__ import annotations

import itertools
import os
import shutil
import time
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from dinov2_numpy import Dinov2
from dinov2_numpy.descriptor import (
    POOLINGS,
    PREPROCESSINGS,
    REFERENCE_SIZE,
    Descriptor,
    pool,
    prepare,
    run,
)
from dinov2_numpy.weights.npz import load_npz, save_npz

from .evaluate import per_query_metrics
from .reranking import evaluate_reranking

LabelledSet = list[tuple[str, str]]

# Input sides searched (multiples of the patch); a smaller one is chosen only where it keeps the quality.
SIZES = (168, 196, REFERENCE_SIZE)
# How far a smaller input may trail the chosen descriptor at the reference size, in P@1 and in mAP, on every set.
SIZE_TOLERANCE = 0.005


def candidates(model: Dinov2, sizes: Sequence[int] = SIZES) -> list[Descriptor]:
    """Every block from the middle of the network on, with and without the final LayerNorm, every pooling,
    both preprocessings and every input size (the reference size always among them: ``choose`` starts there)."""
    layers = model.config.num_layers
    sizes = sorted(set(sizes) | {REFERENCE_SIZE})
    return [Descriptor(block, norm, pooling, prep, size)
            for size, prep, block, norm, pooling in itertools.product(sizes, PREPROCESSINGS, range(layers // 2, layers),
                                                                      (True, False), POOLINGS)]


def input_groups(descriptors: Sequence[Descriptor]) -> list[tuple[str, int]]:
    """The distinct (preprocessing, size) inputs ``descriptors`` need: one pass of every image each."""
    return list(dict.fromkeys((d.preprocessing, d.size) for d in descriptors))


def embed_candidates(model: Dinov2, paths: Sequence[str], descriptors: Sequence[Descriptor],
                     batch_size: int = 8, progress: Callable[[int], None] | None = None) -> dict[Descriptor, np.ndarray]:
    """Unit features (len(paths), width) of every descriptor. Centre crops run in batches; whole images,
    whose shapes differ, one at a time."""
    out: dict[Descriptor, list[np.ndarray]] = {d: [] for d in descriptors}
    for prep, size in input_groups(descriptors):
        group = [d for d in descriptors if (d.preprocessing, d.size) == (prep, size)]
        step = batch_size if prep == "center-crop" else 1
        for start in range(0, len(paths), step):
            pixels = np.stack([prepare(p, group[0], model.config.patch_size) for p in paths[start:start + step]])
            output = run(model, pixels, group)
            for d in group:
                out[d].append(pool(model, output, d))
            if progress is not None:
                progress(len(pixels))
    return {d: np.concatenate(parts) for d, parts in out.items()}


@dataclass
class Evaluation:
    """What ``evaluate_candidates`` measured. ``table``: one row per descriptor with P@1, mAP and recall@10
    on each set (columns ``<set> P@1`` ...) and ``weighted mAP``, the mean over the sets weighted by their
    queries; ``features``: every set's unit features by descriptor; ``average_precision``: every set's
    per-query average precision by descriptor, for estimating the noise (``bootstrap_noise``)."""

    table: pd.DataFrame
    features: dict[str, dict[Descriptor, np.ndarray]]
    average_precision: dict[str, dict[Descriptor, np.ndarray]]


def evaluate_candidates(model: Dinov2, sets: dict[str, LabelledSet], descriptors: Sequence[Descriptor],
                        progress: Callable[[int], None] | None = None) -> Evaluation:
    """Every descriptor scored leave-one-out on every set, from one pass per image and preprocessing."""
    rows: dict[Descriptor, dict] = {d: {"descriptor": d.label()} for d in descriptors}
    features: dict[str, dict[Descriptor, np.ndarray]] = {}
    aps: dict[str, dict[Descriptor, np.ndarray]] = {}
    for name, items in sets.items():
        features[name] = embed_candidates(model, [p for p, _ in items], descriptors, progress=progress)
        labels = [label for _, label in items]
        aps[name] = {}
        for d in descriptors:
            m = per_query_metrics(features[name][d] @ features[name][d].T, labels)
            aps[name][d] = m["AP"]
            rows[d].update({f"{name} P@1": m["P@1"].mean(), f"{name} mAP": m["AP"].mean(),
                            f"{name} R@10": m["recall@10"].mean()})
    table = pd.DataFrame([rows[d] for d in descriptors], index=list(descriptors))
    queries = np.array([len(next(iter(aps[name].values()))) for name in sets], np.float64)
    table["weighted mAP"] = table[[f"{name} mAP" for name in sets]].to_numpy() @ (queries / queries.sum())
    return Evaluation(table, features, aps)


def reranking_table(sets: dict[str, LabelledSet], features: dict[str, dict[Descriptor, np.ndarray]],
                    descriptors: Sequence[Descriptor]) -> pd.DataFrame:
    """For each of ``descriptors`` (centre-crop ones), every re-ranking option's P@1 and mAP on each set;
    the two-view query pairs the crop with the same descriptor on the whole image."""
    rows = []
    for d in dict.fromkeys(descriptors):
        whole = replace(d, preprocessing="whole")
        per_set = {name: evaluate_reranking(features[name][d], features[name].get(whole), [lab for _, lab in items])
                   for name, items in sets.items()}
        for option in next(iter(per_set.values())):
            row = {"descriptor": d.label(), "re-ranking": option}
            for name, results in per_set.items():
                row.update({f"{name} P@1": results[option]["P@1"], f"{name} mAP": results[option]["mAP"]})
            rows.append(row)
    return pd.DataFrame(rows)


# Resamples of the queries behind the noise estimate; the seed keeps a run's choice reproducible.
BOOTSTRAP_DRAWS = 2000
BOOTSTRAP_SEED = 0


def bootstrap_noise(average_precision: dict[str, dict[Descriptor, np.ndarray]], top: Descriptor,
                    descriptors: Sequence[Descriptor], draws: int = BOOTSTRAP_DRAWS,
                    seed: int = BOOTSTRAP_SEED) -> dict[Descriptor, float]:
    """For each of ``descriptors``, the standard deviation of its weighted-mAP difference from ``top``
    over ``draws`` bootstrap resamples of every set's queries (the same resample for every descriptor, so
    the difference is paired: two candidates that rank alike differ by little noise)."""
    rng = np.random.default_rng(seed)
    total = sum(len(next(iter(per_d.values()))) for per_d in average_precision.values())
    diffs = np.zeros((len(descriptors), draws))
    for per_d in average_precision.values():
        n = len(per_d[top])
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=draws).T  # (n, draws): times each query is drawn
        gaps = np.stack([per_d[top] - per_d[d] for d in descriptors])  # (candidates, n)
        diffs += gaps @ counts / total  # each set's resampled mean, weighted by its share of the queries
    return dict(zip(descriptors, diffs.std(axis=1)))


def choose(evaluation: Evaluation, baseline: Descriptor, model: Dinov2) -> tuple[Descriptor, pd.DataFrame]:
    """The descriptor to use, and the table with the columns that chose it.

    Eligible: P@1 no lower than ``baseline``'s on every set (the baseline always qualifies). The top is the
    eligible candidate with the best weighted mAP; an eligible candidate is tied with it when it trails by
    no more than the noise of that difference (one bootstrap standard deviation, ``bootstrap_noise``).
    Among the tied, the narrowest vector wins, then the earliest block (the shortest forward pass), then
    the better weighted mAP. This is decided among the candidates at ``baseline``'s input size; then the
    smallest size at which the winner stays within ``SIZE_TOLERANCE`` of itself in P@1 and mAP on every set
    replaces it (``smaller_size``)."""
    table = evaluation.table.copy()
    sets = list(evaluation.average_precision)
    ok = np.ones(len(table), bool)
    for name in sets:
        ok &= table[f"{name} P@1"].to_numpy() >= table.loc[[baseline], f"{name} P@1"].iloc[0] - 1e-9
    table["P@1 ok"] = ok
    eligible = [d for d, good in zip(table.index, ok) if good and d.size == baseline.size]
    top = max(eligible, key=lambda d: table.loc[[d], "weighted mAP"].iloc[0])
    noise = bootstrap_noise(evaluation.average_precision, top, list(table.index))
    table["behind top"] = table.loc[[top], "weighted mAP"].iloc[0] - table["weighted mAP"]
    table["noise"] = [noise[d] for d in table.index]
    table["tied"] = table["P@1 ok"] & (table["behind top"] <= table["noise"] + 1e-12)
    tied = [d for d, t in zip(table.index, table["tied"]) if t and d.size == baseline.size]
    best = min(tied, key=lambda d: (d.width(model), d.block, -table.loc[[d], "weighted mAP"].iloc[0]))
    return smaller_size(table, best, sets), table


def smaller_size(table: pd.DataFrame, best: Descriptor, sets: Sequence[str]) -> Descriptor:
    """``best`` at the smallest input size in ``table`` whose P@1 and mAP are within ``SIZE_TOLERANCE`` of
    ``best``'s on every set (``best`` itself when none is)."""
    def keeps(d: Descriptor) -> bool:
        return all(table.loc[[best], f"{name} {metric}"].iloc[0] - table.loc[[d], f"{name} {metric}"].iloc[0]
                   <= SIZE_TOLERANCE + 1e-12 for name in sets for metric in ("P@1", "mAP"))
    smaller = [d for d in table.index if d.size < best.size and replace(d, size=best.size) == best and keeps(d)]
    return min(smaller, key=lambda d: d.size, default=best)


def reference_descriptor(model: Dinov2) -> Descriptor:
    """The reference choice, resolved for ``model``: last block, final LayerNorm, cls, centre crop."""
    return Descriptor().resolved(model)


def embedding_ms(model: Dinov2, descriptors: Sequence[Descriptor], batch: int = 8, repeat: int = 3) -> list[float]:
    """Per-image milliseconds of a forward pass and pooling for each descriptor, measured in turn in the
    same run (best of ``repeat``), on a batch of random pixels of the descriptor's input size (a whole
    picture has about as many). Descriptors that share a block and a size share one measurement."""
    keys = list(dict.fromkeys((d.resolved(model).block, d.size) for d in descriptors))
    pixels = {size: np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
              for size in {size for _, size in keys}}
    first = {key: next(d for d in descriptors if (d.resolved(model).block, d.size) == key) for key in keys}
    best = dict.fromkeys(keys, float("inf"))
    for _ in range(repeat):
        for key, d in first.items():
            start = time.perf_counter()
            pool(model, run(model, pixels[d.size], [d]), d)
            best[key] = min(best[key], (time.perf_counter() - start) / batch * 1e3)
    return [best[(d.resolved(model).block, d.size)] for d in descriptors]


def write_descriptor(weights: str, descriptor: Descriptor) -> str:
    """Store ``descriptor`` in the metadata of ``weights`` (a new file renamed over it); the previous file
    is kept beside it as ``<name>.before-tune.npz`` the first time. Returns the backup's path."""
    backup = os.path.splitext(weights)[0] + ".before-tune.npz"
    if not os.path.exists(backup):
        shutil.copy2(weights, backup)
    state, metadata = load_npz(weights)
    save_npz(weights, state, dict(metadata, descriptor=descriptor.to_dict()))
    return backup
