"""From pixels to the unit vectors the index holds: the one place a picture becomes a feature."""
from __future__ import annotations

from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from dinov2_numpy import Dinov2
from dinov2_numpy.descriptor import (
    Descriptor,
    by_shape,
    describe,
    descriptor_of,
    patch_tokens,
    pool,
    prepare,
    run,
)
from dinov2_numpy.preprocess import RESIZE

from .decode import decode


def embed_pixels(model: Dinov2, pixels: np.ndarray) -> np.ndarray:
    """Unit descriptors (B, width) for preprocessed ``pixels`` (B, 3, H, W), as the weights' descriptor says."""
    return describe(model, pixels, descriptor_of(model))


def embed_pixels_with_patches(model: Dinov2, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``embed_pixels`` and, from the same forward pass, the patch tokens (B, N, D) the descriptor pools."""
    descriptor = descriptor_of(model)
    output = run(model, pixels, [descriptor])
    return pool(model, output, descriptor), patch_tokens(model, output, descriptor)


def manifest_descriptor(manifest: dict) -> Descriptor:
    """The descriptor an index was built with; indexes from before descriptors used the reference one."""
    return Descriptor.from_dict(manifest.get("descriptor") or {})


def descriptor_mismatch(manifest: dict, model: Dinov2) -> str | None:
    """Why an index cannot be searched or extended with ``model`` (None when it can)."""
    built, wanted = manifest_descriptor(manifest).resolved(model), descriptor_of(model)
    if built == wanted:
        return None
    return (f"The index was built with the descriptor '{built.label()}' and the weights now describe images with "
            f"'{wanted.label()}'; features cannot be mixed: rebuild it with 'python build_gallery.py --rebuild'.")


# Pixels a picture is decoded to at least: twice the reference resize's shortest edge, so that the bicubic
# resize still sees enough pixels (the whole-image preprocessing needs fewer).
DECODE_SHORTEST_SIDE = 2 * RESIZE


Prepare = Callable[[Image.Image], np.ndarray]  # a decoded RGB picture to another model's input (CLIP's)


def prepare_file(source: str | bytes, descriptor: Descriptor, max_pixels: int | None,
                 other: Prepare | None = None) -> tuple[np.ndarray, str]:
    """A gallery file (its path or its bytes) decoded through the one boundary, no larger than the model
    needs, and prepared as ``descriptor`` says (or by ``other``, for another model): model input (3, H, W) and
    how it was read (``indexer.decode.Picture.source``), or ``ImageError``."""
    picture = decode(source, max_pixels, DECODE_SHORTEST_SIDE)
    return (prepare(picture.image, descriptor) if other is None else other(picture.image)), picture.source


def embed_stream(embed: Callable[[np.ndarray], np.ndarray], dim: int, items: Iterable[tuple[str, str]],
                 batch_size: int, workers: int,
                 max_pixels: int | None, descriptor: Descriptor = Descriptor(), tally: Counter | None = None,
                 other: Prepare | None = None) -> Iterator[tuple[list[str], np.ndarray, list[tuple[str, str]]]]:
    """Embed ``(key, path)`` items in batches with ``embed`` (pixels to unit ``dim``-wide descriptors, e.g.
    ``embed_pixels`` bound to a model), preprocessed as ``descriptor`` says; decoding runs ``workers``
    threads ahead of the model, at most three batches ahead (each picture decoded no larger than the model
    needs, so that memory does not grow with the files' size). ``tally`` counts how the pictures were read;
    ``other`` prepares them for another model instead (CLIP's pass, ``indexer.clip_set``).

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
            pending.append((item, pool.submit(prepare_file, item[1], descriptor, max_pixels, other)))

    try:
        keys: list[str] = []
        pixels: list[np.ndarray] = []
        failures: list[tuple[str, str]] = []
        refill()
        while pending:
            (key, path), future = pending.popleft()
            refill()
            try:
                prepared, how = future.result()
                pixels.append(prepared)
                keys.append(key)
                if tally is not None:
                    tally[how] += 1
            except Exception as e:  # noqa: BLE001  (one bad file never stops a build: it is skipped, with why)
                failures.append((key, str(e) or type(e).__name__))
            if len(keys) == batch_size or (not pending and (keys or failures)):
                features = by_shape(embed, pixels) if keys else np.empty((0, dim), np.float32)
                yield keys, features, failures
                keys, pixels, failures = [], [], []
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
