"""The gallery_images table follows the published index: rows are added, updated and removed by an explicit
``sync`` after every change (start-up, an upload, a delete, a rebuild), never while serving a read. Results
come from the index itself, so a table that lags a build made outside the app shows nothing wrong."""
from __future__ import annotations

from datetime import datetime
from typing import Iterable

from sqlalchemy import select

from indexer.generations import GalleryIndex
from indexer.ids import image_id

from ..extensions import db
from .models import GalleryImage


def metadata_columns(meta: dict) -> dict:
    """The table's columns for a file's metadata (``indexer.exif.read_metadata``); text longer than its column
    is cut to fit (PostgreSQL and MariaDB refuse it, and one photo's EXIF must not stop a sync)."""
    taken = meta.get("taken_at")
    values = {"taken_at": datetime.fromisoformat(taken) if taken else None,
              "time_from_exif": meta.get("time_source") == "exif" if taken else None,
              **{k: meta.get(k) for k in ("camera", "lens", "exposure", "aperture", "iso", "focal_length", "width",
                                          "height", "orientation", "latitude", "longitude")}}
    for name, value in values.items():
        length = getattr(GalleryImage.__table__.c[name].type, "length", None)
        if isinstance(value, str) and length is not None:
            values[name] = value[:length]
    return values


def sync(index: GalleryIndex, changed: Iterable[str] | None = None) -> None:
    """Make the table hold exactly the index's pictures, with their content hash and size; with ``changed``
    (the paths one gallery change touched) only their rows are looked at."""
    rows, wanted = _rows_and_wanted(index, changed)
    for image_id_, (path, info) in wanted.items():
        values = {"path": path, "sha256": info.get("sha256", ""), "size": info.get("size", 0),
                  **metadata_columns(info.get("meta", {}))}
        row = rows.get(image_id_)
        if row is None:
            db.session.add(GalleryImage(id=image_id_, **values))
        elif any(getattr(row, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(row, k, v)
    for image_id_, row in rows.items():
        if image_id_ not in wanted:
            db.session.delete(row)
    db.session.commit()


def _rows_and_wanted(index: GalleryIndex, changed: Iterable[str] | None) -> tuple[dict[int, GalleryImage], dict]:
    """The table rows to look at by id, and what the index says they should hold: ``{id: (path, file facts)}``."""
    if changed is None:
        rows = {r.id: r for r in db.session.scalars(select(GalleryImage))}
        files = index.files
        return rows, {int(i): (p, files.get(p, {})) for i, p in zip(index.ids, index.paths)}
    # A change: its own rows only, so the cost does not grow with the gallery.
    changed = list(changed)
    ids = [image_id(p) for p in changed]
    rows = {r.id: r for r in db.session.scalars(select(GalleryImage).where(GalleryImage.id.in_(ids)))}
    found = {i: (p, index.row_of_path(p)) for i, p in zip(ids, changed)}
    return rows, {i: (p, index.info(row)) for i, (p, row) in found.items() if row is not None}
