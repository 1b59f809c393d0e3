"""Search in Milvus through pymilvus: a local file URI runs Milvus Lite in-process (tests, one machine);
``http://host:19530`` reaches a Milvus standalone or distributed cluster, for galleries larger than one machine.
Each row keeps the image's path, so results can be shown without another lookup.

A real server behaves in ways Milvus Lite hides: rows just written are invisible to the next search unless the
read asks for strong consistency, and the collection statistics count only flushed rows (deletes never). So
counts come from strongly consistent ``count(*)`` queries and ``flush`` makes a build durable. Searches are
strongly consistent only while the generation they serve is young: a strong read waits for the server's next
time tick (about 200 ms), while a bounded one sees every write older than the server's grace time (5 s by
default), and a generation is published only after its writes were acknowledged."""
from __future__ import annotations

import atexit
import os
import time
from typing import Any, Mapping, Sequence

import numpy as np

from ..config import BACKEND_DEFAULTS, backend_setting
from .base import DimensionMismatch, VectorIndex, pad

_BATCH = 2000  # rows per insert call
_STRONG = {"consistency_level": "Strong"}  # read your own writes, also through another process
_BOUNDED = {"consistency_level": "Bounded"}
FRESH_SECONDS = 15.0  # how long after its writes a generation is searched with strong consistency


def milvus_params(cfg: Mapping[str, Any]) -> dict:
    """A Milvus server's HNSW parameters from settings with upper-case keys (``MILVUS_HNSW_M``...), defaults
    where unset."""
    return {param: backend_setting(cfg, key) for param, key in (
        ("M", "MILVUS_HNSW_M"), ("efConstruction", "MILVUS_EF_CONSTRUCTION"), ("ef", "MILVUS_EF_SEARCH"))}


def _is_local(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "tcp://", "unix:"))


class MilvusIndex(VectorIndex):
    name = "milvus"

    def __init__(self, dim: int, uri: str, collection: str = BACKEND_DEFAULTS["MILVUS_COLLECTION"],
                 hnsw: dict | None = None,
                 written_at: float | None = None) -> None:
        """``hnsw``: ``M``, ``efConstruction`` and the search's ``ef`` of a server's graph. ``written_at``: when
        the rows this index serves were last written (None: just now, so always read strongly)."""
        super().__init__(dim)
        self.written_at = written_at
        hnsw = {**milvus_params({}), **(hnsw or {})}
        self.search_params: dict = {}
        try:
            from pymilvus import MilvusClient
        except ImportError:
            raise RuntimeError("VECTOR_BACKEND=milvus needs pymilvus (and milvus-lite for a local file URI)") from None
        except Exception as e:  # pymilvus reads MILVUS_URI from the environment as it is imported
            raise RuntimeError(f"pymilvus cannot start ({e}); it reads the environment variable MILVUS_URI itself, "
                               "which must then be a server URL: set GALLERY_MILVUS_URI instead") from None
        if _is_local(uri):
            uri = os.path.abspath(uri)
            os.makedirs(os.path.dirname(uri), exist_ok=True)
            atexit.register(release_local_servers)  # registering twice is harmless: release_all is idempotent
        self.uri, self.collection = uri, collection
        try:
            self.client = MilvusClient(uri)
        except Exception as e:  # pymilvus raises its own types for unreachable servers and bad addresses
            raise RuntimeError(f"cannot open Milvus at {uri}: {getattr(e, 'message', e)}") from None
        if self.client.has_collection(collection):
            fields = self.client.describe_collection(collection)["fields"]
            vector = next(f for f in fields if f["name"] == "vector")
            stored = int(vector["params"]["dim"])
            if stored != dim:
                self.close()
                raise DimensionMismatch(f"Milvus collection '{collection}' holds {stored}-dimensional vectors, not "
                                        f"{dim}; drop it or rebuild ('python build_gallery.py --rebuild')")
            self.client.load_collection(collection)
        elif _is_local(uri):
            self.client.create_collection(collection, dimension=dim, metric_type="COSINE", auto_id=False,
                                          id_type="int", primary_field_name="id", vector_field_name="vector",
                                          **_STRONG)
        else:
            self._create_hnsw(collection, dim, hnsw)
        if not _is_local(uri):
            self.search_params = {"metric_type": "COSINE", "params": {"ef": int(hnsw["ef"])}}

    def _create_hnsw(self, collection: str, dim: int, hnsw: dict) -> None:
        """A collection with an explicit HNSW graph (a server's automatic index is not the same everywhere)."""
        from pymilvus import DataType
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=True)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index = self.client.prepare_index_params()
        index.add_index("vector", index_type="HNSW", metric_type="COSINE",
                        params={"M": int(hnsw["M"]), "efConstruction": int(hnsw["efConstruction"])})
        self.client.create_collection(collection, schema=schema, index_params=index, **_STRONG)

    def add(self, ids: np.ndarray, vectors: np.ndarray, paths: Sequence[str] | None = None) -> None:
        vectors = self.check(vectors)
        ids = np.asarray(ids, np.int64)
        paths = list(paths) if paths is not None else [""] * len(ids)
        for start in range(0, len(ids), _BATCH):
            rows = [{"id": int(i), "vector": v.tolist(), "path": p}
                    for i, v, p in zip(ids[start:start + _BATCH], vectors[start:start + _BATCH], paths[start:start + _BATCH])]
            self.client.upsert(self.collection, rows)

    def remove(self, ids: np.ndarray) -> None:
        ids = [int(i) for i in np.asarray(ids, np.int64)]
        for start in range(0, len(ids), _BATCH):
            self.client.delete(self.collection, ids=ids[start:start + _BATCH])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = self.check(queries)
        params = dict(self.search_params)
        if params:  # HNSW needs ef >= k
            params["params"] = {"ef": max(k, params["params"]["ef"])}
        fresh = self.written_at is None or time.time() - self.written_at < FRESH_SECONDS
        hits = self.client.search(self.collection, data=[q.tolist() for q in queries], limit=k,
                                  search_params=params, **(_STRONG if fresh else _BOUNDED))
        return pad([[h["id"] for h in row] for row in hits], [[h["distance"] for h in row] for row in hits], k)

    def ids(self) -> np.ndarray:
        """Every id in the collection."""
        out = []
        iterator = self.client.query_iterator(self.collection, batch_size=_BATCH, output_fields=["id"], **_STRONG)
        while batch := iterator.next():
            out += [r["id"] for r in batch]
        iterator.close()
        return np.asarray(out, np.int64)

    def count(self) -> int:
        rows = self.client.query(self.collection, filter="", output_fields=["count(*)"], **_STRONG)
        return int(rows[0]["count(*)"])

    def flush(self) -> None:
        """Make what was written durable (sealed segments on the server's storage)."""
        self.client.flush(self.collection)

    def close(self) -> None:
        self.client.close()


def release_local_servers() -> None:
    """Stop the Milvus Lite servers this process started; their own shutdown at interpreter exit is slow.
    Connections to them must not be used afterwards."""
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return
    server_manager_instance.release_all()
