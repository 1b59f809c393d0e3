"""Gallery administration (admin role): add and delete images, rebuild the index. Non-admins get 403."""
from __future__ import annotations

import functools

from flask import Blueprint, abort, current_app, jsonify, render_template, request
from flask_login import current_user

from .errors import ApiError
from .gallery_admin import AdminBusy, add_images, delete_images, drift, rebuild_status, start_rebuild
from .gallery_db import current_index, ids_for
from .models import GalleryImage
from .extensions import db
from .search_service import decode

bp = Blueprint("admin", __name__)


def admin_required(api: bool):
    def wrap(view):
        @functools.wraps(view)
        def inner(*args, **kwargs):
            if not current_user.is_authenticated:
                if api:
                    raise ApiError(401, "unauthorized", "Sign in as an administrator.")
                return current_app.login_manager.unauthorized()
            if not current_user.is_admin:
                if api:
                    raise ApiError(403, "forbidden", "Only administrators can change the gallery.")
                abort(403)
            return view(*args, **kwargs)
        return inner
    return wrap


@bp.get("/admin/gallery")
@admin_required(api=False)
def gallery_page():
    return render_template("admin.html")


@bp.post("/api/admin/images")
@admin_required(api=True)
def upload():
    files = request.files.getlist("images") or request.files.getlist("image")
    if not files:
        raise ApiError(400, "missing_field", "Send one or more files in the multipart field 'images'.")
    items, rejected = [], []
    for file in files:
        data = file.read()
        try:
            if not data:
                raise ApiError(400, "missing_field", "The file is empty.")
            _, ext = decode(data)
        except ApiError as e:
            rejected.append({"filename": file.filename, "error": e.message, "code": e.code})
            continue
        items.append((file.filename or "image", data, ext))
    try:
        result = add_images(current_app.config, items) if items else {"added": [], "duplicates": []}
    except AdminBusy as e:
        raise ApiError(409, "busy", str(e))
    current_index()  # sync the database rows to the new generation before answering with their ids
    ids = ids_for(result["added"])
    added = [{"path": p, "id": ids.get(p)} for p in result["added"]]
    status = 201 if added else (422 if rejected and not result["duplicates"] else 200)
    return jsonify({"added": added, "duplicates": result["duplicates"], "rejected": rejected}), status


@bp.delete("/api/admin/images")
@admin_required(api=True)
def delete():
    body = request.get_json(silent=True)
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ApiError(400, "invalid_field", "Send JSON {\"ids\": [gallery image ids]}.")
    rows = db.session.query(GalleryImage).filter(GalleryImage.id.in_(ids)).all()
    if len(rows) != len(set(ids)):
        raise ApiError(404, "not_found", "Some of these gallery images do not exist.")
    try:
        deleted = delete_images(current_app.config, [r.path for r in rows])
    except AdminBusy as e:
        raise ApiError(409, "busy", str(e))
    current_index()
    return jsonify({"deleted": deleted})


@bp.post("/api/admin/rebuild")
@admin_required(api=True)
def rebuild():
    full = bool((request.get_json(silent=True) or {}).get("full"))
    if not start_rebuild(current_app.config, full=full):
        raise ApiError(409, "busy", "A rebuild is already running.")
    return jsonify({"started": True, "full": full}), 202


@bp.get("/api/admin/status")
@admin_required(api=True)
def status():
    return jsonify({"rebuild": rebuild_status(current_app.config), "drift": drift(current_app.config)})
