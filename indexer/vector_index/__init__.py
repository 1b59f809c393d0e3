"""Vector-index backends behind one interface, chosen by ``VECTOR_BACKEND`` (numpy, faiss or milvus).

The gallery's segment files stay the source of truth; a backend is built from them for each index
generation and opened by the app for that generation. NumPy searches the segments themselves. FAISS keeps a
graph of the base segment (a file in the generation folder, rebuilt by a build or a compaction) and searches
the small segments of later changes exactly beside it. Milvus holds every row in its collection, and a change
upserts or deletes only the rows it touches. Ids are stable hashes of the image paths, the same everywhere.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..config import BACKEND_DEFAULTS, backend_setting
from ..ids import image_ids
from .base import DimensionMismatch, VectorIndex
from .layered import Layered
from .numpy_exact import NumpyIndex

if TYPE_CHECKING:
    from ..generations import Change, GalleryIndex

BACKENDS = ("numpy", "faiss", "milvus")

__all__ = ["BACKENDS", "DimensionMismatch", "NumpyIndex", "VectorIndex", "apply_change", "build_for_generation",
           "open_backend", "open_for_generation"]


def backend_name(cfg: Mapping[str, Any]) -> str:
    """The configured backend's name (``VECTOR_BACKEND``, NumPy when unset), or ValueError for an unknown one."""
    name = str(cfg.get("VECTOR_BACKEND") or BACKEND_DEFAULTS["VECTOR_BACKEND"]).lower()
    if name not in BACKENDS:
        raise ValueError(f"VECTOR_BACKEND must be one of {', '.join(BACKENDS)}, not '{name}'")
    return name


def open_backend(cfg: Mapping[str, Any], dim: int, written_at: float | None = None) -> VectorIndex:
    """An empty (or, for Milvus, the configured) index of the configured backend; ``written_at`` is when the
    generation it serves was published (Milvus reads strongly while it is young)."""
    name = backend_name(cfg)
    if name == "faiss":
        from .faiss_index import FaissIndex, faiss_params
        return FaissIndex(dim, backend_setting(cfg, "FAISS_INDEX"), faiss_params(cfg))
    if name == "milvus":
        from .milvus_index import MilvusIndex, milvus_params
        return MilvusIndex(dim, cfg["MILVUS_URI"], backend_setting(cfg, "MILVUS_COLLECTION"), milvus_params(cfg),
                           written_at=written_at)
    return NumpyIndex(dim)


def build_for_generation(cfg: Mapping[str, Any], folder: str, paths: Sequence[str], vectors: np.ndarray,
                         fresh: set[str]) -> None:
    """Make the configured backend hold exactly ``paths``/``vectors``; ``fresh`` are paths whose content was
    embedded anew in this build (Milvus re-uploads only those and the ones it lacks)."""
    name = backend_name(cfg)
    if name == "numpy":
        return  # gallery_features.npy itself is the matrix
    ids = image_ids(paths)
    index = open_backend(cfg, vectors.shape[1])
    try:
        if name == "faiss":
            if len(ids):
                index.add(ids, vectors)
            index.save(folder)
        else:
            held = index.ids()
            index.remove(np.setdiff1d(held, ids))
            fresh_ids = image_ids(sorted(fresh))
            todo = ~np.isin(ids, held) | np.isin(ids, fresh_ids)
            if todo.any():
                index.add(ids[todo], vectors[todo], [p for p, t in zip(paths, todo) if t])
            index.flush()
    finally:
        index.close()


def apply_change(cfg: Mapping[str, Any], folder: str, change: "Change") -> None:
    """Bring the configured backend in line with one gallery change (``indexer.generations.append_change``):
    only Milvus keeps rows of its own; NumPy and FAISS read the new segment from the generation itself."""
    if backend_name(cfg) != "milvus":
        return
    index = open_backend(cfg, change.dim)
    try:
        gone = sorted(set(change.removed) - set(change.added))
        if gone:
            index.remove(image_ids(gone))
        if change.added:
            index.add(image_ids(change.added), change.vectors, change.added)
    finally:
        index.close()


def open_for_generation(cfg: Mapping[str, Any], index: "GalleryIndex") -> VectorIndex:
    """The configured backend for an index generation (loaded by ``indexer.generations.load_index``)."""
    name = backend_name(cfg)
    blocks = index.blocks()
    if name == "numpy":
        return NumpyIndex(index.dim, blocks=blocks)
    if name == "faiss":
        from .faiss_index import FaissIndex, faiss_params
        if not os.path.exists(os.path.join(index.location, "faiss.index")):
            raise FileNotFoundError("the index was built without FAISS; run 'python build_gallery.py' again with "
                                    "VECTOR_BACKEND=faiss")
        base_ids, _, base_live = blocks[0]
        base = FaissIndex.load(index.location, backend_setting(cfg, "FAISS_INDEX"), faiss_params(cfg),
                               also_deleted=base_ids[~base_live])
        return Layered(base, NumpyIndex(index.dim, blocks=blocks[1:])) if len(blocks) > 1 else base
    return open_backend(cfg, index.dim, written_at=os.path.getmtime(index.location))
