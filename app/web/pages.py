"""Pages, and the image files they show: gallery pictures, thumbnails and users' own query uploads."""
from __future__ import annotations

import hashlib
import os
import re

from flask import Blueprint, abort, current_app, render_template, send_from_directory
from flask_login import current_user, login_required
from sqlalchemy import select

from dinov2_numpy import ImageError, load_rgb

from .extensions import db
from .gallery_db import current_index, engine
from .models import Search

bp = Blueprint("main", __name__)
THUMB_SIZE = 320
_UPLOAD_NAME = re.compile(r"^[0-9a-f]{32}\.(jpg|png|webp|gif|bmp|tif)$")


def _status() -> dict:
    """What the pages need to show an empty state instead of a broken one."""
    eng = engine()
    status = {"weights_ready": os.path.exists(eng.weights), "index_ready": False, "gallery_size": 0}
    try:
        status.update(index_ready=True, gallery_size=len(current_index()))
    except Exception:  # no index yet, or unreadable: the page explains how to build one
        pass
    return status


@bp.get("/")
def index():
    return render_template("index.html", status=_status())


@bp.get("/sketch")
def sketch():
    return render_template("sketch.html", status=_status())


@bp.get("/gallery")
def gallery():
    return render_template("gallery.html", status=_status())


@bp.get("/history")
@login_required
def history():
    return render_template("history.html")


def _indexed(path: str) -> str:
    """``path`` if the current index holds it (the only files served from the gallery folder), else 404."""
    try:
        index = current_index()
    except Exception:
        abort(404)
    if path not in index.row_of:
        abort(404)
    return path


@bp.get("/media/gallery/<path:path>")
def gallery_file(path: str):
    return send_from_directory(current_app.config["GALLERY_DIR"], _indexed(path), max_age=3600)


@bp.get("/thumbs/<path:path>")
def thumbnail(path: str):
    """A JPEG thumbnail made on first request and cached by path and modification time."""
    source = os.path.join(current_app.config["GALLERY_DIR"], _indexed(path))
    try:
        mtime = os.stat(source).st_mtime_ns
    except OSError:
        abort(404)
    name = hashlib.sha256(f"{path}\0{mtime}".encode()).hexdigest() + ".jpg"
    folder = current_app.config["THUMBNAIL_DIR"]
    target = os.path.join(folder, name)
    if not os.path.exists(target):
        try:
            thumb = load_rgb(source)  # upright, 8-bit, transparency over white: as the model sees it
        except ImageError:
            abort(404)
        thumb.thumbnail((THUMB_SIZE, THUMB_SIZE))
        thumb.save(target + ".part", "JPEG", quality=85)
        os.replace(target + ".part", target)
    return send_from_directory(folder, name, max_age=86400)


@bp.get("/media/uploads/<name>")
@login_required
def upload_file(name: str):
    """A query picture, shown only to the user whose history holds it."""
    if not _UPLOAD_NAME.match(name):
        abort(404)
    owner = db.session.scalar(select(Search.user_id).where(Search.query_file == name))
    if owner != current_user.id:
        abort(404)
    return send_from_directory(current_app.config["UPLOAD_DIR"], name, max_age=3600)
