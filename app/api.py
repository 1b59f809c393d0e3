"""The JSON API. Every POST and DELETE needs the CSRF token in the X-CSRFToken header (GET /api/csrf-token)."""
from __future__ import annotations

import base64
import binascii
import math
import os
import re

from flask import Blueprint, current_app, jsonify, request, url_for
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from sqlalchemy import func, select

from .errors import ApiError
from .extensions import db
from .gallery_db import current_index, engine, ids_for
from .models import GalleryImage, Search
from .search_service import DEFAULT_THRESHOLD, Query, run_search

bp = Blueprint("api", __name__, url_prefix="/api")
_DATA_URL = re.compile(r"^data:image/[\w.+-]+;base64,(.*)$", re.S)


def _int_arg(value, name: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ApiError(400, "invalid_field", f"'{name}' must be a whole number between {low} and {high}.")
    if isinstance(value, bool) or not low <= number <= high:
        raise ApiError(400, "invalid_field", f"'{name}' must be a whole number between {low} and {high}.")
    return number


def _threshold(value) -> float:
    if value is None or value == "":
        return DEFAULT_THRESHOLD
    try:
        t = float(value)
    except (TypeError, ValueError):
        t = math.nan
    if not 0.0 <= t <= 1.0:
        raise ApiError(400, "invalid_field", "'threshold' must be a number between 0 and 1.")
    return t


def _require_login():
    if not current_user.is_authenticated:
        raise ApiError(401, "unauthorized", "Sign in to see your search history.")


@bp.get("/csrf-token")
def csrf_token():
    """For API clients: a token to send back in the X-CSRFToken header, tied to this session cookie."""
    return jsonify({"csrf_token": generate_csrf()})


@bp.post("/search")
def search():
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_json", "The request body is not a JSON object.")
        top_k = _int_arg(body.get("top_k"), "top_k", 10, 1, 100)
        threshold = _threshold(body.get("threshold"))
        if body.get("gallery_id") is not None:
            gid = _int_arg(body["gallery_id"], "gallery_id", 0, 1, 2**31 - 1)
            return jsonify(run_search(Query("gallery", gallery_id=gid), top_k, threshold))
        if body.get("image_base64"):
            raw = body["image_base64"]
            match = _DATA_URL.match(raw) if isinstance(raw, str) else None
            payload = match.group(1) if match else raw
            try:
                data = base64.b64decode(payload, validate=True) if isinstance(payload, str) else b""
            except (binascii.Error, ValueError):
                data = b""
            if not data:
                raise ApiError(400, "invalid_field", "'image_base64' must be a base64 image or a data:image/...;base64 URL.")
            return jsonify(run_search(Query("base64", data=data, original_name=body.get("filename")), top_k, threshold))
        raise ApiError(400, "missing_field", "Send an 'image' file, or JSON with 'gallery_id' or 'image_base64'.")
    top_k = _int_arg(request.form.get("top_k"), "top_k", 10, 1, 100)
    threshold = _threshold(request.form.get("threshold"))
    file = request.files.get("image")
    if file is None or not file.filename and not file.content_length:
        raise ApiError(400, "missing_field", "Send the query picture as a multipart field named 'image'.")
    data = file.read()
    if not data:
        raise ApiError(400, "missing_field", "The uploaded 'image' file is empty.")
    return jsonify(run_search(Query("upload", data=data, original_name=os.path.basename(file.filename or "")),
                              top_k, threshold))


@bp.get("/gallery")
def gallery():
    index = current_index()
    page = _int_arg(request.args.get("page"), "page", 1, 1, 10**6)
    per_page = _int_arg(request.args.get("per_page"), "per_page", 24, 1, 200)
    q = (request.args.get("q") or "").strip().lower()
    paths = [p for p in index.paths if q in p.lower()] if q else index.paths
    total = len(paths)
    chunk = paths[(page - 1) * per_page: page * per_page]
    ids = ids_for(chunk)
    items = [{"id": ids.get(p), "path": p, "url": url_for("main.gallery_file", path=p),
              "thumbnail_url": url_for("main.thumbnail", path=p)} for p in chunk]
    return jsonify({"items": items, "page": page, "per_page": per_page, "total": total,
                    "pages": max(1, math.ceil(total / per_page)), "q": q})


@bp.get("/history")
def history():
    _require_login()
    page = _int_arg(request.args.get("page"), "page", 1, 1, 10**6)
    per_page = _int_arg(request.args.get("per_page"), "per_page", 10, 1, 100)
    where = Search.user_id == current_user.id
    total = db.session.scalar(select(func.count(Search.id)).where(where))
    rows = db.session.scalars(select(Search).where(where).order_by(Search.created_at.desc(), Search.id.desc())
                              .offset((page - 1) * per_page).limit(per_page)).all()
    return jsonify({"items": [search_json(s) for s in rows], "page": page, "per_page": per_page, "total": total,
                    "pages": max(1, math.ceil(total / per_page))})


def search_json(s: Search) -> dict:
    filename, query_url = s.original_name, None
    if s.query_file:
        query_url = url_for("main.upload_file", name=s.query_file)
    elif s.gallery_image_id:
        row = db.session.get(GalleryImage, s.gallery_image_id)
        if row is not None:
            filename, query_url = row.path, url_for("main.thumbnail", path=row.path)
    return {"id": s.id, "created_at": s.created_at.isoformat(), "mode": s.mode, "filename": filename,
            "gallery_id": s.gallery_image_id, "top_k": s.top_k, "total_ms": round(s.total_ms, 1),
            "query_url": query_url,
            "results": [dict(r, thumbnail_url=url_for("main.thumbnail", path=r["path"])) for r in s.results[:5]]}


@bp.delete("/history/<int:search_id>")
def delete_history(search_id: int):
    _require_login()
    s = db.session.get(Search, search_id)
    if s is None or s.user_id != current_user.id:
        raise ApiError(404, "not_found", f"No search {search_id} in your history.")
    if s.query_file:
        try:
            os.unlink(os.path.join(current_app.config["UPLOAD_DIR"], s.query_file))
        except FileNotFoundError:
            pass
    db.session.delete(s)
    db.session.commit()
    return jsonify({"deleted": search_id})


@bp.get("/health")
def health():
    eng = engine()
    body = {"status": "ok", "model_loaded": False, "model": None, "gallery_size": 0, "index_age_seconds": None}
    try:
        body.update(model_loaded=True, model=eng.model.name, dim=eng.model.dim)
    except Exception as e:  # NotReady or unreadable weights: health reports instead of failing
        body.update(status="not_ready", problem=str(e))
    try:
        body.update(gallery_size=len(eng.index()), index_age_seconds=round(eng.index_age_seconds() or 0, 1))
    except Exception as e:
        body.update(status="not_ready", problem=body.get("problem") or str(e))
    return jsonify(body), 200 if body["status"] == "ok" else 503
