"""Approximate search with FAISS (optional: pip install faiss-cpu): HNSW graphs, or IVF lists for very large
galleries. Parameters come from the configuration; the index file is saved beside the features."""
from __future__ import annotations

import os
import threading
from typing import Any, Mapping, Sequence

import numpy as np

from ..config import BACKEND_DEFAULTS, backend_setting
from ..mapped import release_pages
from .base import VectorIndex, pad

STEM = "faiss"  # faiss.index and faiss-deleted.npy; a second vector set has its own stem (faiss-clip)
FILE = STEM + ".index"
_ADD_CHUNK = 1 << 16  # rows given to FAISS at a time
_loaded: dict = {}  # the index files read, by path: (their identity, the FAISS object)
_loaded_lock = threading.Lock()
DELETED = STEM + "-deleted.npy"


def faiss_params(cfg: Mapping[str, Any]) -> dict:
    """The FAISS parameters of settings with upper-case keys (``FAISS_HNSW_M``...), defaults where unset."""
    return {param: backend_setting(cfg, key) for param, key in (
        ("hnsw_m", "FAISS_HNSW_M"), ("ef_construction", "FAISS_EF_CONSTRUCTION"), ("ef_search", "FAISS_EF_SEARCH"),
        ("ivf_nlist", "FAISS_IVF_NLIST"), ("nprobe", "FAISS_NPROBE"))}


def _faiss():
    try:
        import faiss
    except ImportError:
        raise RuntimeError("VECTOR_BACKEND=faiss needs the faiss-cpu package: pip install faiss-cpu") from None
    return faiss


class FaissIndex(VectorIndex):
    name = "faiss"

    def __init__(self, dim: int, kind: str = BACKEND_DEFAULTS["FAISS_INDEX"], params: Mapping[str, Any] | None = None,
                 index=None, deleted: np.ndarray | None = None) -> None:
        """``params``: some of ``faiss_params``'s keys; the others keep their defaults."""
        super().__init__(dim)
        faiss = _faiss()
        self.kind = kind
        self.params = {**faiss_params({}), **(params or {})}
        if index is None:
            if kind == "hnsw":
                base = faiss.IndexHNSWFlat(dim, int(self.params["hnsw_m"]), faiss.METRIC_INNER_PRODUCT)
                base.hnsw.efConstruction = int(self.params["ef_construction"])
                index = faiss.IndexIDMap2(base)
            elif kind == "ivf":
                index = None  # made on the first add, when the training vectors are known
            else:
                raise ValueError(f"unknown FAISS index kind '{kind}' (hnsw or ivf)")
        self.index = index
        # HNSW graphs cannot delete: deleted ids are hidden from results until the next rebuild.
        self.deleted: set[int] = set(np.asarray(deleted if deleted is not None else [], np.int64).tolist())

    def _make_ivf(self, training: np.ndarray):
        faiss = _faiss()
        nlist = int(self.params["ivf_nlist"] or max(1, min(len(training) // 39, int(4 * np.sqrt(len(training))))))
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.train(training)
        return ivf  # IVF lists store external ids themselves, and delete them properly

    def add(self, ids: np.ndarray, vectors: np.ndarray, paths: Sequence[str] | None = None) -> None:
        """Add (or replace) rows. ``vectors`` may be memory-mapped: FAISS then copies them a chunk at a time,
        and each chunk's pages are let go once copied, so a million rows never sit in memory twice. Rows in
        memory go in at once (FAISS's storage grows once, and the graph is the one a single add makes)."""
        given, vectors = vectors, self.check(vectors)
        ids = np.asarray(ids, np.int64)
        if self.index is None:
            self.index = self._make_ivf(vectors)
            release_pages(given)
        if self.count():
            self.remove(ids)  # replace: an id may only be present once
        self.deleted.difference_update(ids.tolist())
        step = _ADD_CHUNK if isinstance(given, np.memmap) else max(len(ids), 1)
        for start in range(0, len(ids), step):
            part = slice(start, start + step)
            self.index.add_with_ids(np.ascontiguousarray(vectors[part]), ids[part])
            release_pages(given)

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, np.int64)
        if self.index is None or not len(ids):
            return
        if self.kind == "ivf":
            self.index.remove_ids(_faiss().IDSelectorBatch(ids))
        else:
            present = set(ids.tolist()) & set(_faiss().vector_to_array(self.index.id_map).tolist())
            self.deleted.update(present)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(self.check(queries))
        if self.index is None or self.count() == 0:
            return pad([[] for _ in queries], [[] for _ in queries], k)
        faiss = _faiss()
        fetch = min(self.index.ntotal, k + len(self.deleted))
        if self.kind == "hnsw":
            faiss.downcast_index(self.index.index).hnsw.efSearch = max(int(self.params["ef_search"]), fetch)
        else:
            ivf = faiss.extract_index_ivf(self.index)
            ivf.nprobe = int(self.params["nprobe"] or max(16, ivf.nlist // 16))  # 0: scale with the lists
        if len(queries) == 1:
            # FAISS parallelises over queries: for one query extra OpenMP threads only add start-up and
            # spin-wait cost (milliseconds on a busy machine). The setting is per calling thread.
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                scores, ids = self.index.search(queries, fetch)
            finally:
                faiss.omp_set_num_threads(threads)
        else:
            scores, ids = self.index.search(queries, fetch)
        rows_ids, rows_scores = [], []
        for row_ids, row_scores in zip(ids, scores):
            keep = [(i, s) for i, s in zip(row_ids.tolist(), row_scores.tolist()) if i >= 0 and i not in self.deleted]
            rows_ids.append([i for i, _ in keep[:k]])
            rows_scores.append([s for _, s in keep[:k]])
        return pad(rows_ids, rows_scores, k)

    def count(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal) - len(self.deleted)

    def save(self, folder: str, stem: str = STEM) -> None:
        """Write ``<stem>.index`` and ``<stem>-deleted.npy`` into ``folder``."""
        os.makedirs(folder, exist_ok=True)
        if self.index is not None:
            _faiss().write_index(self.index, os.path.join(folder, stem + ".index"))
        np.save(os.path.join(folder, stem + "-deleted.npy"), np.array(sorted(self.deleted), np.int64))

    @classmethod
    def load(cls, folder: str, kind: str = BACKEND_DEFAULTS["FAISS_INDEX"], params: Mapping[str, Any] | None = None,
             also_deleted: np.ndarray | None = None, stem: str = STEM) -> "FaissIndex":
        """The index saved in ``folder`` under ``stem``, hiding ``also_deleted`` ids too (rows later changes
        removed). Each file is read once per process: generations hard-link it, and searching does not change
        it; a newer file replaces the one read before under the same stem."""
        path = os.path.join(folder, stem + ".index")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no FAISS index in {folder}; run 'python build_gallery.py' with VECTOR_BACKEND=faiss")
        st = os.stat(path)
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        with _loaded_lock:
            if _loaded.get(stem, (None,))[0] != key:
                _loaded[stem] = (key, _faiss().read_index(path))
            index = _loaded[stem][1]
        deleted_path = os.path.join(folder, stem + "-deleted.npy")
        deleted = np.load(deleted_path) if os.path.exists(deleted_path) else np.empty(0, np.int64)
        if also_deleted is not None:
            deleted = np.concatenate([deleted, np.asarray(also_deleted, np.int64)])
        return cls(index.d, kind, params, index=index, deleted=deleted)
