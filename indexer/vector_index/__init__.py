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
DINOV2_SET, CLIP_SET = "dinov2", "clip"  # the vector sets of a generation: descriptors, CLIP embeddings

__all__ = ["BACKENDS", "CLIP_SET", "DINOV2_SET", "DimensionMismatch", "NumpyIndex", "VectorIndex", "apply_change", "build_for_generation",
           "open_backend", "open_for_generation"]


def backend_name(cfg: Mapping[str, Any]) -> str:
    """The configured backend's name (``VECTOR_BACKEND``, NumPy when unset), or ValueError for an unknown one."""
    name = str(cfg.get("VECTOR_BACKEND") or BACKEND_DEFAULTS["VECTOR_BACKEND"]).lower()
    if name not in BACKENDS:
        raise ValueError(f"VECTOR_BACKEND must be one of {', '.join(BACKENDS)}, not '{name}'")
    return name


def for_set(cfg: Mapping[str, Any], vector_set: str, dim: int) -> dict[str, Any]:
    """The backend settings of a vector set: the descriptors' are ``cfg``; the CLIP set has its own Milvus
    collection (named by its width, so another CLIP model never meets a collection of the wrong width)."""
    if vector_set == DINOV2_SET:
        return dict(cfg)
    return {**cfg, "MILVUS_COLLECTION": f"{backend_setting(cfg, 'MILVUS_COLLECTION')}_{vector_set}{dim}"}


def _faiss_stem(vector_set: str) -> str:
    from .faiss_index import STEM
    return STEM if vector_set == DINOV2_SET else f"{STEM}-{vector_set}"


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
                         fresh: set[str], vector_set: str = DINOV2_SET) -> None:
    """Make the configured backend hold exactly ``paths``/``vectors`` of ``vector_set``; ``fresh`` are paths
    whose vectors were made anew in this build (Milvus re-uploads only those and the ones it lacks)."""
    name = backend_name(cfg)
    if name == "numpy":
        return  # gallery_features.npy (gallery_clip.npy) itself is the matrix
    ids = image_ids(paths)
    index = open_backend(for_set(cfg, vector_set, vectors.shape[1]), vectors.shape[1])
    try:
        if name == "faiss":
            if len(ids):
                index.add(ids, vectors)
            index.save(folder, _faiss_stem(vector_set))
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
    gone = sorted(set(change.removed) - set(change.added))
    sets = [(cfg, change.dim, change.vectors)]
    if change.clip_dim:  # the CLIP collection follows: it holds the index's rows, or fewer
        sets.append((for_set(cfg, CLIP_SET, change.clip_dim), change.clip_dim, change.clip))
    for settings, dim, vectors in sets:
        index = open_backend(settings, dim)
        try:
            if gone:
                index.remove(image_ids(gone))
            if change.added and vectors is not None:
                index.add(image_ids(change.added), vectors, change.added)
        finally:
            index.close()


def open_for_generation(cfg: Mapping[str, Any], index: "GalleryIndex", vector_set: str = DINOV2_SET) -> VectorIndex:
    """The configured backend for an index generation (loaded by ``indexer.generations.load_index``), searching
    its descriptors or (``vector_set`` CLIP_SET) its CLIP embeddings."""
    name = backend_name(cfg)
    dim = index.dim if vector_set == DINOV2_SET else index.clip_dim
    blocks = index.blocks() if vector_set == DINOV2_SET else index.clip_blocks()
    if name == "numpy":
        return NumpyIndex(dim, blocks=blocks)
    if name == "faiss":
        from .faiss_index import FaissIndex, faiss_params
        stem = _faiss_stem(vector_set)
        if not os.path.exists(os.path.join(index.location, stem + ".index")):
            raise FileNotFoundError("the index was built without FAISS; run 'python build_gallery.py' again with "
                                    "VECTOR_BACKEND=faiss")
        base_ids, _, base_live = blocks[0]
        base = FaissIndex.load(index.location, backend_setting(cfg, "FAISS_INDEX"), faiss_params(cfg),
                               also_deleted=base_ids[~base_live], stem=stem)
        return Layered(base, NumpyIndex(dim, blocks=blocks[1:])) if len(blocks) > 1 else base
    return open_backend(for_set(cfg, vector_set, dim), dim, written_at=os.path.getmtime(index.location))
