"""The JSON API. Every POST and DELETE needs the CSRF token in the X-CSRFToken header (GET /api/csrf-token)."""
from __future__ import annotations

import base64
import binascii
import json
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
from .search_service import DEFAULT_THRESHOLD, Query, run_search, run_segment

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


def _object(value, name: str, keys: tuple[str, ...]) -> dict | None:
    """A JSON object field (or its JSON text, from a multipart form) with numeric ``keys``."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, dict) or not all(
            isinstance(value.get(k), (int, float)) and not isinstance(value.get(k), bool) and math.isfinite(value[k])
            for k in keys):
        raise ApiError(400, "invalid_field", f"'{name}' must be an object with numbers {', '.join(keys)}.")
    return value


def _region(value) -> tuple[int, int, int, int] | None:
    r = _object(value, "region", ("x", "y", "w", "h"))
    return None if r is None else tuple(int(round(r[k])) for k in ("x", "y", "w", "h"))


def _point(value) -> tuple[float, float] | None:
    p = _object(value, "point", ("x", "y"))
    return None if p is None else (float(p["x"]), float(p["y"]))


def _image_query(fields, files) -> Query:
    """The image part of a search or segment request: a multipart file, base64 data, a drawing or a URL."""
    region, point = _region(fields.get("region")), _point(fields.get("point"))
    if region is not None and point is not None:
        raise ApiError(400, "invalid_field", "Send either 'region' or 'point', not both.")
    extra = {"region": region, "point": point}
    file = files.get("image") if files else None
    if file is not None:
        data = file.read()
        if not data:
            raise ApiError(400, "missing_field", "The uploaded 'image' file is empty.")
        return Query("upload", data=data, original_name=os.path.basename(file.filename or ""), **extra)
    for key, mode in (("image_base64", "base64"), ("sketch_base64", "sketch")):
        if fields.get(key):
            raw = fields[key]
            match = _DATA_URL.match(raw) if isinstance(raw, str) else None
            payload = match.group(1) if match else raw
            try:
                data = base64.b64decode(payload, validate=True) if isinstance(payload, str) else b""
            except (binascii.Error, ValueError):
                data = b""
            if not data:
                raise ApiError(400, "invalid_field", f"'{key}' must be a base64 image or a data:image/...;base64 URL.")
            name = fields.get("filename") if isinstance(fields.get("filename"), str) else None
            return Query(mode, data=data, original_name=name, **extra)
    if fields.get("url"):
        if not isinstance(fields["url"], str) or len(fields["url"]) > 2048:
            raise ApiError(400, "invalid_field", "'url' must be an http or https URL of at most 2048 characters.")
        return Query("url", url=fields["url"].strip(), **extra)
    raise ApiError(400, "missing_field", "Send an 'image' file, or JSON with 'image_base64', 'sketch_base64', "
                                         "'url' or 'gallery_id'.")


def _fields():
    """The request's fields and files, from JSON or a multipart form."""
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_json", "The request body is not a JSON object.")
        return body, None
    return request.form, request.files


def _require_login():
    if not current_user.is_authenticated:
        raise ApiError(401, "unauthorized", "Sign in to see your search history.")


@bp.get("/csrf-token")
def csrf_token():
    """For API clients: a token to send back in the X-CSRFToken header, tied to this session cookie."""
    return jsonify({"csrf_token": generate_csrf()})


@bp.post("/search")
def search():
    fields, files = _fields()
    top_k = _int_arg(fields.get("top_k"), "top_k", 10, 1, 100)
    threshold = _threshold(fields.get("threshold"))
    if fields.get("gallery_id") is not None and not files:
        gid = _int_arg(fields["gallery_id"], "gallery_id", 0, 1, 2**31 - 1)
        return jsonify(run_search(Query("gallery", gallery_id=gid), top_k, threshold))
    return jsonify(run_search(_image_query(fields, files), top_k, threshold))


@bp.post("/segment")
def segment_object():
    """The object under ``point`` in the image: a mask (PNG data URL) and its bounding box."""
    fields, files = _fields()
    query = _image_query(fields, files)
    if query.point is None:
        raise ApiError(400, "missing_field", "Send the clicked 'point' as {\"x\": ..., \"y\": ...} in image pixels.")
    return jsonify(run_segment(query))


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
