"""Gallery administration (administrators): add and delete pictures, rebuild the index, status."""
from __future__ import annotations

from flask import current_app, jsonify, request
from flask_login import current_user

from indexer.ids import image_id

from ..extensions import engine
from ..services.errors import InvalidInput, ServiceError
from ..services.gallery_changes import add_images, delete_images, drift, rebuild_status, start_rebuild
from ..services.images import decode
from ..services.watcher import request_scan, watch_status
from ..startup import after_change, sync_gallery_table
from ..storage import audit
from ..web.roles import admin_required
from ..web.uploads import read_upload
from . import bp
from .fields import body_fields, flag


@bp.post("/admin/images")
@admin_required(api=True)
def admin_upload():
    files = request.files.getlist("images") or request.files.getlist("image")
    if not files:
        raise InvalidInput("Send one or more files in the multipart field 'images'.", "missing_field")
    items, rejected = [], []
    for file in files:
        data = read_upload(file)
        try:
            if not data:
                raise InvalidInput("The file is empty.", "missing_field")
            _, ext = decode(data, current_app.config["MAX_IMAGE_PIXELS"])
        except ServiceError as e:
            rejected.append({"filename": file.filename, "error": e.message, "code": e.code})
            continue
        items.append((file.filename or "image", data, ext))
    result = add_images(engine(), items, engine().embed_batch) if items else {"added": [], "duplicates": []}
    if result["added"]:
        after_change(current_app._get_current_object(), result["added"])
        audit.record("gallery_upload", current_user, paths=result["added"])
    added = [{"path": p, "id": image_id(p)} for p in result["added"]]
    status = 201 if added else (422 if rejected and not result["duplicates"] else 200)
    return jsonify({"added": added, "duplicates": result["duplicates"], "rejected": rejected}), status


@bp.delete("/admin/images")
@admin_required(api=True)
def admin_delete():
    fields, _ = body_fields()
    ids = fields.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise InvalidInput("Send JSON {\"ids\": [gallery image ids]}.")
    deleted = delete_images(engine(), ids, engine().embed_batch)
    after_change(current_app._get_current_object(), deleted)
    audit.record("gallery_delete", current_user, paths=deleted)
    return jsonify({"deleted": deleted})


@bp.post("/admin/rebuild")
@admin_required(api=True)
def admin_rebuild():
    fields, _ = body_fields()
    full = flag(fields.get("full"), "full")
    app = current_app._get_current_object()
    start_rebuild(engine(), full=full, on_published=lambda: sync_gallery_table(app), embed=engine().embed_batch)
    audit.record("rebuild_started", current_user, full=full)
    return jsonify({"started": True, "full": full}), 202


@bp.get("/admin/status")
@admin_required(api=True)
def admin_status():
    """The rebuild, the folder watcher (pending, indexing, its last scan), the files that could not be
    indexed, and, unless ``?drift=0``, a scan of the folder against the index."""
    cfg = current_app.config
    index = engine().latest_index()
    failed = [{"path": p, "reason": r} for p, r in sorted((index.skipped if index is not None else {}).items())]
    body = {"rebuild": rebuild_status(engine()), "watch": watch_status(cfg["INDEX_DIR"], cfg["WATCH_GALLERY"]),
            "failed": failed}
    if request.args.get("drift") != "0":
        body["drift"] = drift(engine())
    return jsonify(body)


@bp.post("/admin/scan")
@admin_required(api=True)
def admin_scan():
    """A full scan of the gallery folder by the watcher, on its next turn."""
    if not current_app.config["WATCH_GALLERY"]:
        raise InvalidInput("The folder watcher is off (WATCH_GALLERY=0); use 'Rebuild index' instead.", "watch_off")
    request_scan(current_app.config["INDEX_DIR"])
    return jsonify({"requested": True}), 202
