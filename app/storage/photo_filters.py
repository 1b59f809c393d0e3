"""Filtering gallery pictures by what they say about themselves: capture date range, camera, orientation and a
minimum resolution. A filter is applied to the index rows as a mask (``app.services.row_filters``); the
database (the metadata columns of ``gallery_images``) lists the cameras to choose from."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select

from ..extensions import db
from .models import GalleryImage


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


def cameras() -> list[dict]:
    """Every camera in the gallery with its number of pictures, most pictures first."""
    rows = db.session.execute(select(GalleryImage.camera, func.count()).where(GalleryImage.camera.is_not(None))
                              .group_by(GalleryImage.camera).order_by(func.count().desc(), GalleryImage.camera))
    return [{"camera": c, "count": n} for c, n in rows]
