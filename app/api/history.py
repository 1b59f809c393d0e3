"""GET /api/history and DELETE /api/history/<id>: the signed-in user's searches."""
from __future__ import annotations

import math
import os

from flask import current_app, jsonify, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from ..errors import ApiError
from ..extensions import db
from ..services.errors import NotFound
from ..storage.models import GalleryImage, Search
from . import bp
from .fields import int_arg


def _require_login():
    if not current_user.is_authenticated:
        raise ApiError(401, "unauthorized", "Sign in to see your search history.")


@bp.get("/history")
def history():
    _require_login()
    page = int_arg(request.args.get("page"), "page", 1, 1, 10**6)
    per_page = int_arg(request.args.get("per_page"), "per_page", 10, 1, 100)
    where = Search.user_id == current_user.id
    total = db.session.scalar(select(func.count(Search.id)).where(where))
    rows = db.session.scalars(select(Search).where(where).order_by(Search.created_at.desc(), Search.id.desc())
                              .offset((page - 1) * per_page).limit(per_page)).all()
    return jsonify({"items": [search_json(s) for s in rows], "page": page, "per_page": per_page, "total": total,
                    "pages": max(1, math.ceil(total / per_page))})


def search_json(s: Search) -> dict:
    filename, query_url = s.original_name, None
    if s.query_file:
        query_url = url_for("files.upload_file", name=s.query_file)
    elif s.gallery_image_id:
        row = db.session.get(GalleryImage, s.gallery_image_id)
        if row is not None:
            filename, query_url = row.path, url_for("files.thumbnail", path=row.path)
    return {"id": s.id, "created_at": s.created_at.isoformat(), "mode": s.mode, "filename": filename,
            "gallery_id": s.gallery_image_id, "top_k": s.top_k, "total_ms": round(s.total_ms, 1),
            "query_url": query_url,
            "results": [dict(r, thumbnail_url=url_for("files.thumbnail", path=r["path"])) for r in s.results[:5]]}


@bp.delete("/history/<int(max=2147483647):search_id>")
def delete_history(search_id: int):
    _require_login()
    s = db.session.get(Search, search_id)
    if s is None or s.user_id != current_user.id:
        raise NotFound(f"No search {search_id} in your history.")
    if s.query_file:
        try:
            os.unlink(os.path.join(current_app.config["UPLOAD_DIR"], s.query_file))
        except FileNotFoundError:
            pass
    db.session.delete(s)
    db.session.commit()
    return jsonify({"deleted": search_id})
