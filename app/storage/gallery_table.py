"""Keeping the gallery_images table in step with the index the engine serves."""
from __future__ import annotations

import threading

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .engine import Engine
from .extensions import db
from .gallery.index import GalleryIndex
from .models import GalleryImage

_lock = threading.Lock()


def engine() -> Engine:
    return current_app.extensions["engine"]


def sync_table(index: GalleryIndex) -> None:
    """Insert rows for new paths, update changed content, delete rows of paths no longer indexed."""
    files = index.manifest.get("files", {})
    rows = {r.path: r for r in db.session.scalars(select(GalleryImage))}
    wanted = set(index.paths)
    for path in index.paths:
        info = files.get(path, {})
        row = rows.get(path)
        if row is None:
            db.session.add(GalleryImage(path=path, sha256=info.get("sha256", ""), size=info.get("size", 0)))
        elif row.sha256 != info.get("sha256", row.sha256):
            row.sha256, row.size = info["sha256"], info.get("size", 0)
    for path, row in rows.items():
        if path not in wanted:
            db.session.delete(row)
    db.session.commit()


def current_index() -> GalleryIndex:
    """The engine's index, with the table synced to it once per index generation (per process)."""
    index = engine().index()
    synced = current_app.extensions.get("gallery_synced")
    if synced != index.location:
        with _lock:
            if current_app.extensions.get("gallery_synced") != index.location:
                try:
                    sync_table(index)
                except IntegrityError:  # another process synced the same rows first
                    db.session.rollback()
                    sync_table(index)
                current_app.extensions["gallery_synced"] = index.location
    return index


def ids_for(paths: list[str]) -> dict[str, int]:
    if not paths:
        return {}
    return dict(db.session.execute(select(GalleryImage.path, GalleryImage.id).where(GalleryImage.path.in_(paths))).all())
