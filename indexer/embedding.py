"""From pixels to the unit vectors the index holds: the one place a picture becomes a feature."""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

import numpy as np

from dinov2_numpy import Dinov2, ImageError, normalize_rows, preprocess

from . import formats  # noqa: F401  (registers the phone-format plugins, also in cluster workers)

# How every gallery picture and every query is prepared; recorded in each index manifest.
PREPROCESSING = {"mode": "center-crop", "resize": 256, "crop": 224, "mean_std": "imagenet"}


def embed_pixels(model: Dinov2, pixels: np.ndarray) -> np.ndarray:
    """Unit descriptors (B, D) for preprocessed ``pixels`` (B, 3, H, W): the final cls token, L2-normalised."""
    return normalize_rows(model(pixels).cls_token)


def embed_stream(embed: Callable[[np.ndarray], np.ndarray], dim: int, items: Iterable[tuple[str, str]],
                 batch_size: int, workers: int,
                 max_pixels: int | None) -> Iterator[tuple[list[str], np.ndarray, list[tuple[str, str]]]]:
    """Embed ``(key, path)`` items in batches with ``embed`` (pixels to unit ``dim``-wide descriptors, e.g.
    ``embed_pixels`` bound to a model); decoding runs ``workers`` threads ahead of the model.

    Yields ``(keys, unit features, [(key, reason)])`` per batch; an item is a path or the file's bytes.
    """
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode")
    pending: deque = deque()
    source = iter(items)
    exhausted = False

    def refill() -> None:
        nonlocal exhausted
        while not exhausted and len(pending) < 3 * batch_size:
            item = next(source, None)
            if item is None:
                exhausted = True
                return
            pending.append((item, pool.submit(preprocess, item[1], max_pixels=max_pixels)))

    try:
        keys: list[str] = []
        pixels: list[np.ndarray] = []
        failures: list[tuple[str, str]] = []
        refill()
        while pending:
            (key, path), future = pending.popleft()
            refill()
            try:
                pixels.append(future.result())
                keys.append(key)
            except (ImageError, OSError) as e:
                failures.append((key, str(e)))
            if len(keys) == batch_size or (not pending and (keys or failures)):
                features = embed(np.stack(pixels)) if keys else np.empty((0, dim), np.float32)
                yield keys, features, failures
                keys, pixels, failures = [], [], []
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
