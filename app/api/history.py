"""GET /api/history and DELETE /api/history/<id>: the signed-in user's searches."""
from __future__ import annotations

import math

from flask import current_app, jsonify, request, url_for
from flask_login import current_user

from ..services.errors import NotFound
from ..storage.history import delete_search, history_page
from ..storage.models import Search
from ..web.roles import require_sign_in
from . import bp
from .fields import int_arg


HISTORY = "Sign in to see your search history."


@bp.get("/history")
def history():
    require_sign_in(HISTORY)
    page = int_arg(request.args.get("page"), "page", 1, 1, 10**6)
    per_page = int_arg(request.args.get("per_page"), "per_page", 10, 1, 100)
    found = history_page(current_user.id, page, per_page)
    return jsonify({"items": [search_json(s, found.gallery_paths) for s in found.searches], "page": page,
                    "per_page": per_page, "total": found.total, "pages": max(1, math.ceil(found.total / per_page))})


def search_json(s: Search, gallery_paths: dict[int, str]) -> dict:
    """One history entry as the page shows it; ``gallery_paths`` maps gallery ids to their current paths."""
    filename, query_url = s.original_name, None
    if s.query_file:
        query_url = url_for("files.upload_file", name=s.query_file)
    elif s.gallery_image_id in gallery_paths:
        filename = gallery_paths[s.gallery_image_id]
        query_url = url_for("files.thumbnail", path=filename)
    return {"id": s.id, "created_at": s.created_at.isoformat(), "mode": s.mode, "filename": filename,
            "gallery_id": s.gallery_image_id, "top_k": s.top_k, "total_ms": round(s.total_ms, 1),
            "query_url": query_url,
            "results": [dict(r, thumbnail_url=url_for("files.thumbnail", path=r["path"])) for r in s.results[:5]]}


@bp.delete("/history/<int(max=2147483647):search_id>")
def delete_history(search_id: int):
    require_sign_in(HISTORY)
    if not delete_search(current_user.id, search_id, current_app.config["UPLOAD_DIR"]):
        raise NotFound(f"No search {search_id} in your history.")
    return jsonify({"deleted": search_id})
