"""Vector-index backends behind one interface, chosen by ``VECTOR_BACKEND`` (numpy, faiss or milvus).

The gallery's ``gallery_features.npy`` stays the source of truth; a backend is built from it for each index
generation (FAISS: a file in the generation folder; Milvus: the collection synced to it) and opened by the
app for that generation. Ids are stable hashes of the image paths, the same in every backend.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from ..ids import image_ids
from .base import DimensionMismatch, VectorIndex
from .numpy_exact import NumpyIndex

BACKENDS = ("numpy", "faiss", "milvus")

__all__ = ["BACKENDS", "DimensionMismatch", "NumpyIndex", "VectorIndex", "build_for_generation", "open_backend",
           "open_for_generation"]


def _faiss_params(cfg: Mapping[str, Any]) -> dict:
    return {"hnsw_m": cfg.get("FAISS_HNSW_M", 32), "ef_construction": cfg.get("FAISS_EF_CONSTRUCTION", 200),
            "ef_search": cfg.get("FAISS_EF_SEARCH", 128), "ivf_nlist": cfg.get("FAISS_IVF_NLIST"),
            "nprobe": cfg.get("FAISS_NPROBE", 0)}


def backend_name(cfg: Mapping[str, Any]) -> str:
    name = str(cfg.get("VECTOR_BACKEND") or "numpy").lower()
    if name not in BACKENDS:
        raise ValueError(f"VECTOR_BACKEND must be one of {', '.join(BACKENDS)}, not '{name}'")
    return name


def open_backend(cfg: Mapping[str, Any], dim: int) -> VectorIndex:
    """An empty (or, for Milvus, the configured) index of the configured backend."""
    name = backend_name(cfg)
    if name == "faiss":
        from .faiss_index import FaissIndex
        return FaissIndex(dim, cfg.get("FAISS_INDEX", "hnsw"), _faiss_params(cfg))
    if name == "milvus":
        from .milvus_index import MilvusIndex
        return MilvusIndex(dim, cfg["MILVUS_URI"], cfg.get("MILVUS_COLLECTION", "gallery"))
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


def open_for_generation(cfg: Mapping[str, Any], folder: str, ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
    """The configured backend for the index generation in ``folder`` (``ids`` and ``vectors`` its rows)."""
    name = backend_name(cfg)
    if name == "numpy":
        return NumpyIndex(vectors.shape[1], ids, vectors)
    if name == "faiss":
        from .faiss_index import FaissIndex
        if not os.path.exists(os.path.join(folder, "faiss.index")):
            raise FileNotFoundError("the index was built without FAISS; run 'python build_gallery.py' again with "
                                    "VECTOR_BACKEND=faiss")
        return FaissIndex.load(folder, cfg.get("FAISS_INDEX", "hnsw"), _faiss_params(cfg))
    return open_backend(cfg, vectors.shape[1])
