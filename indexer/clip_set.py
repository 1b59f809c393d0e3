"""The second vector set: each picture's CLIP image embedding (``clip_numpy``), kept beside its DINOv2
descriptor in the same rows when ``CLIP_WEIGHTS`` is set, so that words can find pictures.

``indexer.generations`` stores it per segment (``gallery_clip.npy``, ``seg-*.clip.npy``) and the manifest
records the CLIP weights' fingerprint (``"clip"``). A build embeds with CLIP only the contents no stored CLIP
vector of the same weights covers: switching CLIP on, or to other CLIP weights, costs one incremental build
that runs CLIP alone; a gallery change embeds its new rows with CLIP too while the index keeps the set.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

import numpy as np

from dinov2_numpy.config import WeightsError

from .embedding import Prepare, embed_stream
from .options import Embed, EmbedOptions
from .plan import Batches, embed_missing, to_embed

if TYPE_CHECKING:
    from clip_numpy import Clip

    from .generations import GalleryIndex

MANIFEST_KEY = "clip"  # the manifest's fingerprint of the CLIP weights that made the set
WORK_FOLDER = ".work-clip"  # an interrupted build's CLIP embeddings, beside the descriptors' ``.work``


def load_clip(path: str) -> "Clip":
    """The CLIP model of a weights file (cached per process by ``clip_numpy.load_model``)."""
    from clip_numpy import load_model
    return load_model(path)


def fingerprint(model: "Clip") -> dict:
    """What says two CLIP embeddings compare: the weights' name, source and width."""
    return {"name": model.name, "sha256": model.metadata.get("source_sha256", ""),
            "source": model.metadata.get("source", ""), "dim": model.dim}


def preparer(model: "Clip") -> Prepare:
    """A decoded picture to CLIP's input, as ``CLIPImageProcessor`` prepares it."""
    from clip_numpy import preprocess
    return functools.partial(preprocess, size=model.config.image_size)


def embedder(model: "Clip") -> Embed:
    """CLIP-preprocessed pixels (B, 3, S, S) to unit CLIP image embeddings (B, dim)."""
    from dinov2_numpy.model import normalize_rows
    return lambda pixels: normalize_rows(model.encode_images(pixels))


def stored(index: "GalleryIndex | None", model: "Clip") -> dict[str, np.ndarray]:
    """The CLIP embeddings ``index`` holds by content hash, from the segments that have them, when the same
    CLIP weights made them (else none: CLIP alone is embedded again)."""
    if index is None or index.manifest.get(MANIFEST_KEY) != fingerprint(model):
        return {}
    found: dict[str, np.ndarray] = {}
    for segment, (_, _, live) in zip(index.segments, index.blocks()):
        if segment.clip is None:
            continue
        rows = np.flatnonzero(live)
        for local, vector in zip(rows.tolist(), np.asarray(segment.clip[rows], np.float32)):
            if segment.files.has(local):
                found[segment.files.sha256(local)] = vector
    return found


def stream(model: "Clip", todo: list[tuple[str, str]], options: EmbedOptions) -> Batches:
    """Batches of CLIP embeddings of ``(key, path)`` items, decoded as the descriptors' pass decodes them."""
    return embed_stream(options.clip_embed or embedder(model), model.dim, todo, options.batch_size,
                        options.workers, options.max_pixels, other=preparer(model))


def embed_shard(weights: str, items: list[tuple[str, str | bytes]], max_pixels: int | None,
                batch_size: int) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    """On a Dask worker (``indexer.cluster``): CLIP embeddings of one shard, as ``cluster.embed_shard`` gives
    the descriptors."""
    from .cluster import undo_dask_malloc_settings
    undo_dask_malloc_settings()
    model = load_clip(weights)
    keys, parts, failures = [], [], []
    options = EmbedOptions(batch_size=batch_size, workers=1, max_pixels=max_pixels)
    for batch_keys, vectors, batch_failures in stream(model, list(items), options):
        keys += batch_keys
        parts.append(vectors)
        failures += batch_failures
    return keys, (np.concatenate(parts) if parts else np.empty((0, model.dim), np.float32)), failures


def matrix(model: "Clip", hashes: Iterable[str], vectors: Mapping[str, np.ndarray]) -> np.ndarray:
    """The CLIP rows of the contents ``hashes``, in order; zeros (similar to nothing) where CLIP failed."""
    empty = np.zeros(model.dim, np.float32)
    rows = [vectors.get(sha, empty) for sha in hashes]
    return np.stack(rows).astype(np.float32) if rows else np.empty((0, model.dim), np.float32)


def for_change(index: "GalleryIndex", images_dir: str, new: Mapping[str, str], options: EmbedOptions,
               on_batch: Callable | None = None) -> tuple["Clip", dict[str, np.ndarray]] | None:
    """The CLIP embeddings of a change's ``new`` contents (content hash -> path): kept ones for a renamed
    file, the others embedded now. None when the new segment gets none: CLIP is off, the index keeps no CLIP
    set, other CLIP weights made it, or they cannot be read now (the next ``python build_gallery.py`` brings the
    set up to date; an upload never fails for want of CLIP)."""
    if not options.clip_weights or not index.has_clip:
        return None
    try:
        model = load_clip(options.clip_weights)
    except (OSError, WeightsError):
        return None
    if index.manifest.get(MANIFEST_KEY) != fingerprint(model):
        return None
    vectors: dict[str, np.ndarray] = {}
    for sha in new:
        holder = index.path_of_sha(sha)
        if holder is not None:
            vectors[sha] = index.clip_of([index.row_of_path(holder)])[0]
    embed_missing(stream(model, to_embed(images_dir, new, vectors), options), vectors, on_batch)
    return model, vectors
