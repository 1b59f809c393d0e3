"""Signed-in users' searches: the query picture under a generated name, and the row that lists the results."""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select

from indexer.atomic import atomic_write

from ..extensions import db
from .models import GalleryImage, Search


@dataclass
class HistoryPage:
    """One page of a user's searches, newest first, with the current path of each gallery picture searched
    with (absent when the picture has left the gallery)."""

    searches: list[Search]
    total: int
    gallery_paths: dict[int, str]


def record_search(user_id: int, upload_dir: str, data: bytes | None, result: dict, top_k: int,
                  original: str | None) -> int:
    """Store one search (``result`` as ``services.search.run_search`` returns it); returns the search id."""
    query = result["query"]
    name = None
    if data is not None and query.get("format"):
        name = f"{uuid.uuid4().hex}.{query['format']}"
        atomic_write(os.path.join(upload_dir, name), data, durable=False)
    timings = result["analysis"]["timings_ms"]
    search = Search(user_id=user_id, mode=query["mode"], query_file=name, original_name=(original or "")[:255] or None,
                    gallery_image_id=query["gallery_id"], top_k=top_k, total_ms=timings["total"], timings=timings,
                    results=[{"id": r["id"], "path": r["path"], "score": r["score"]} for r in result["results"]])
    db.session.add(search)
    try:
        db.session.commit()
    except Exception:  # noqa: BLE001  (a search not stored leaves no picture behind)
        db.session.rollback()
        if name is not None:
            os.unlink(os.path.join(upload_dir, name))
        raise
    return search.id


def history_page(user_id: int, page: int, per_page: int) -> HistoryPage:
    """Page ``page`` (from 1) of ``user_id``'s searches: three queries whatever the page size."""
    where = Search.user_id == user_id
    total = db.session.scalar(select(func.count(Search.id)).where(where))
    searches = db.session.scalars(select(Search).where(where).order_by(Search.created_at.desc(), Search.id.desc())
                                  .offset((page - 1) * per_page).limit(per_page)).all()
    ids = {s.gallery_image_id for s in searches if s.gallery_image_id and not s.query_file}
    paths: dict[int, str] = {}
    if ids:  # one query for the whole page, not one per search
        rows = db.session.execute(select(GalleryImage.id, GalleryImage.path).where(GalleryImage.id.in_(ids)))
        paths = dict(rows.all())
    return HistoryPage(list(searches), total, paths)


def delete_search(user_id: int, search_id: int, upload_dir: str) -> bool:
    """Delete one of ``user_id``'s searches and its query picture; False if the user has no such search."""
    search = db.session.get(Search, search_id)
    if search is None or search.user_id != user_id:
        return False
    if search.query_file:
        try:
            os.unlink(os.path.join(upload_dir, search.query_file))
        except FileNotFoundError:
            pass
    db.session.delete(search)
    db.session.commit()
    return True


def upload_owner(name: str) -> int | None:
    """The user whose search history holds the query picture ``name``, if any."""
    return db.session.scalar(select(Search.user_id).where(Search.query_file == name))
