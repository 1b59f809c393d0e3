"""Filtering gallery pictures by what they say about themselves (the metadata columns of ``gallery_images``):
capture date range, camera, orientation and a minimum resolution. The database answers with the public ids
that match; the search then ranks among those only."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

from sqlalchemy import func, select

from ..extensions import db
from .models import GalleryImage

ORIENTATIONS = ("landscape", "portrait", "square")


@dataclass(frozen=True)
class PhotoFilter:
    taken_after: date | None = None  # inclusive
    taken_before: date | None = None  # inclusive
    camera: str | None = None  # exact, case-insensitive
    orientation: str | None = None
    min_megapixels: float | None = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in self.__dict__.values())

    def json(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in self.__dict__.items() if v is not None}


def allowed_ids(f: PhotoFilter) -> set[int]:
    """The public ids of the gallery pictures that pass ``f``."""
    query = select(GalleryImage.id)
    if f.taken_after is not None:
        query = query.where(GalleryImage.taken_at >= datetime.combine(f.taken_after, time.min))
    if f.taken_before is not None:
        # the whole day, to its last second (capture times are whole seconds); the day after 9999-12-31 does
        # not exist, so no "before the next day"
        query = query.where(GalleryImage.taken_at <= datetime.combine(f.taken_before, time(23, 59, 59)))
    if f.camera is not None:
        query = query.where(func.lower(GalleryImage.camera) == f.camera.lower())
    if f.orientation is not None:
        query = query.where(GalleryImage.orientation == f.orientation)
    if f.min_megapixels is not None:
        query = query.where(GalleryImage.width * GalleryImage.height >= f.min_megapixels * 1e6)
    return set(db.session.scalars(query))


def cameras() -> list[dict]:
    """Every camera in the gallery with its number of pictures, most pictures first."""
    rows = db.session.execute(select(GalleryImage.camera, func.count()).where(GalleryImage.camera.is_not(None))
                              .group_by(GalleryImage.camera).order_by(func.count().desc(), GalleryImage.camera))
    return [{"camera": c, "count": n} for c, n in rows]
