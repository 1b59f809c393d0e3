"""GET /api/gallery: the indexed pictures, paginated and filtered by file name."""
from __future__ import annotations

import math

from flask import jsonify, request

from ..extensions import engine
from ..services.row_filters import row_mask, rows_by_path
from ..storage.photo_filters import cameras
from . import bp
from .fields import int_arg, photo_filter
from .links import with_links


@bp.get("/gallery")
def gallery():
    index = engine().index()
    page = int_arg(request.args.get("page"), "page", 1, 1, 10**6)
    per_page = int_arg(request.args.get("per_page"), "per_page", 24, 1, 200)
    q = (request.args.get("q") or "").strip().lower()
    wanted = photo_filter(request.args)
    order = index.rows_by_path
    if wanted.active:
        by_path = rows_by_path(index)
        order = by_path[row_mask(index, wanted)[by_path]]
    rows = [r for r in order if q in index.paths[r].lower()] if q else order
    total = len(rows)
    chunk = rows[(page - 1) * per_page: page * per_page]
    items = [with_links({"id": int(index.ids[r]), "path": index.paths[r], "meta": engine().metadata(index, r)})
             for r in chunk]
    return jsonify({"items": items, "page": page, "per_page": per_page, "total": total,
                    "pages": max(1, math.ceil(total / per_page)), "q": q, "filter": wanted.json()})


@bp.get("/gallery/cameras")
def gallery_cameras():
    """The cameras the gallery's photos were taken with, for the filter's choices."""
    return jsonify({"cameras": cameras()})
