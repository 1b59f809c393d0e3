"""All settings of the web app, read from the environment: the indexer's (``indexer.config``) plus the web's.
Each setting has its default here or there, nowhere else."""
from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Mapping

from indexer.config import env_int, env_path, load_settings

RERANKS = ("none", "qe")


def load_config(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every setting as a dict (Flask-style upper-case keys); ``overrides`` win over the environment."""
    cfg = load_settings(overrides)
    cfg.setdefault("UPLOAD_DIR", env_path("UPLOAD_DIR", os.path.join(cfg["MEDIA_DIR"], "uploads")))
    cfg.setdefault("THUMBNAIL_DIR", env_path("THUMBNAIL_DIR", os.path.join(cfg["INSTANCE_DIR"], "thumbnails")))
    cfg.setdefault("SQLALCHEMY_DATABASE_URI", os.environ.get("DATABASE_URL")
                   or "sqlite:///" + os.path.join(cfg["INSTANCE_DIR"], "app.db"))
    cfg.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": True})
    cfg.setdefault("SECRET_KEY", os.environ.get("SECRET_KEY") or None)  # None: a random key kept in INSTANCE_DIR
    cfg.setdefault("MAX_CONTENT_LENGTH", env_int("MAX_UPLOAD_BYTES", 16 * 1024 * 1024))
    # A multipart file upload (app.web.uploads): cameras' RAW files are 20 to 120 MB.
    cfg.setdefault("MAX_FILE_UPLOAD_BYTES", env_int("MAX_FILE_UPLOAD_BYTES", 128 * 1024 * 1024))
    # Uploaded bytes held in memory across the process: four of the largest files at once.
    cfg.setdefault("UPLOAD_BUDGET", env_int("UPLOAD_BUDGET", 4 * cfg["MAX_FILE_UPLOAD_BYTES"]))
    # Decoded pixels in flight across the process (app.services.pixel_budget): room for two of the largest
    # pictures at once, about 1 GB of pixel memory; requests beyond it wait a moment, then get a 503.
    cfg.setdefault("PIXEL_BUDGET", env_int("PIXEL_BUDGET", 2 * cfg["MAX_IMAGE_PIXELS"]))
    cfg.setdefault("WTF_CSRF_TIME_LIMIT", None)  # tokens live as long as the session
    cfg.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    cfg.setdefault("SESSION_COOKIE_HTTPONLY", True)
    # "Keep me signed in" lasts 30 days; each sign-in has its own token, ended by signing out.
    cfg.setdefault("REMEMBER_COOKIE_DURATION", timedelta(days=env_int("REMEMBER_DAYS", 30)))
    cfg.setdefault("REMEMBER_COOKIE_HTTPONLY", True)
    cfg.setdefault("REMEMBER_COOKIE_SAMESITE", "Lax")
    # Who may use the app: private (sign-in needed for everything but the sign-in page) or public (anyone may
    # search and browse; accounts for history and administration). Sign-up: open, invite (an invitation link
    # from an administrator) or closed; the very first account may always be created, and is the administrator.
    cfg.setdefault("ACCESS", os.environ.get("ACCESS", "private").lower())
    cfg.setdefault("SIGNUP", os.environ.get("SIGNUP", "invite").lower())
    # Throttling (Flask-Limiter): storage "memory://" serves one process; a Redis or Memcached URI shares counts.
    cfg.setdefault("RATELIMIT_STORAGE_URI", os.environ.get("RATELIMIT_STORAGE_URI", "memory://"))
    cfg.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    cfg.setdefault("THROTTLE", os.environ.get("THROTTLE", "1") not in ("0", "false", "no"))
    cfg.setdefault("SIGNIN_LIMIT", os.environ.get("SIGNIN_LIMIT", "10 per minute;50 per hour"))
    cfg.setdefault("SIGNUP_LIMIT", os.environ.get("SIGNUP_LIMIT", "10 per hour"))
    cfg.setdefault("SEARCH_LIMIT", os.environ.get("SEARCH_LIMIT", "3000 per minute"))
    # Behind a reverse proxy: how many proxies' X-Forwarded-For/-Proto headers to trust (0: none).
    cfg.setdefault("TRUSTED_PROXIES", env_int("TRUSTED_PROXIES", 0))
    cfg.setdefault("PREFERRED_URL_SCHEME", os.environ.get("PREFERRED_URL_SCHEME", "http"))
    cfg.setdefault("SESSION_COOKIE_SECURE", cfg["PREFERRED_URL_SCHEME"] == "https")
    cfg.setdefault("REMEMBER_COOKIE_SECURE", cfg["PREFERRED_URL_SCHEME"] == "https")
    # Search by URL: private, loopback and link-local targets are refused unless listed here (CIDRs).
    cfg.setdefault("URL_FETCH_ALLOW", [n.strip() for n in os.environ.get("URL_FETCH_ALLOW", "").split(",") if n.strip()])
    cfg.setdefault("URL_FETCH_TIMEOUT", float(os.environ.get("URL_FETCH_TIMEOUT", 10)))
    # The inference queue (app/services/inference_queue.py): the largest batch, how long the first query of a
    # batch may wait for searches already on their way, how many searches may be in progress per process, and
    # the longest wait for the model before a 503.
    cfg.setdefault("INFER_MAX_BATCH", env_int("INFER_MAX_BATCH", 8))
    cfg.setdefault("INFER_MAX_WAIT_MS", float(os.environ.get("INFER_MAX_WAIT_MS", 50)))
    cfg.setdefault("QUEUE_LIMIT", env_int("QUEUE_LIMIT", 48))
    cfg.setdefault("QUEUE_DEADLINE", float(os.environ.get("QUEUE_DEADLINE", 10)))
    # Follow the gallery folder and index what changes there (app.services.watcher).
    cfg.setdefault("WATCH_GALLERY", os.environ.get("WATCH_GALLERY", "0") not in ("0", "false", "no", ""))
    cfg.setdefault("WATCH_SCAN_SECONDS", float(os.environ.get("WATCH_SCAN_SECONDS", 3600)))
    cfg.setdefault("WATCH_SETTLE_SECONDS", float(os.environ.get("WATCH_SETTLE_SECONDS", 1)))
    # Fault injection for the crash-consistency tests (tests/test_admin.py), set only by them: the point of a
    # gallery change (app.services.gallery_changes) where the process dies as kill -9 would.
    cfg.setdefault("CRASH_AT", None)
    # Re-ranking after the first search: "none", or "qe" (α-query expansion with the 3 nearest, which raised
    # mAP on both evaluation sets without costing P@1; see docs/model.md). Scores then measure the expanded query.
    cfg.setdefault("RERANK", os.environ.get("RERANK", "none").lower())
    if cfg["RERANK"] not in RERANKS:
        raise ValueError(f"RERANK must be one of {', '.join(RERANKS)}, not '{cfg['RERANK']}'")
    return cfg
