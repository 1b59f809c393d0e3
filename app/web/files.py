"""The picture files the pages show: gallery pictures, their thumbnails, and users' own query uploads."""
from __future__ import annotations

import hashlib
import os
import re

from flask import Blueprint, abort, current_app, send_from_directory
from flask_login import current_user, login_required

from dinov2_numpy import ImageError
from indexer.atomic import atomic_write
from indexer.decode import decode, header_size, reduced_size
from indexer.formats import STORED_EXTENSIONS
from indexer.scan import inside

from ..extensions import engine
from ..services.errors import NotReady
from ..storage.history import upload_owner

bp = Blueprint("files", __name__)
THUMB_SIZE = 320
_UPLOAD_NAME = re.compile(r"^[0-9a-f]{32}\.(" + "|".join(sorted(STORED_EXTENSIONS)) + r")$")


def _indexed(path: str) -> str:
    """``path`` if the current index holds it and it is still a regular file inside the gallery folder (a
    symlink changed to lead elsewhere is not followed; a FIFO put in its place would hang the reader), else
    404."""
    try:
        index = engine().index()
    except NotReady:
        abort(404)
    gallery = current_app.config["GALLERY_DIR"]
    full = os.path.join(gallery, path)
    if index.row_of_path(path) is None or not inside(gallery, full) or not os.path.isfile(full):
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
    name = hashlib.sha256(f"{path}\0{mtime}".encode("utf-8", "surrogateescape")).hexdigest() + ".jpg"
    folder = current_app.config["THUMBNAIL_DIR"]
    target = os.path.join(folder, name)
    if not os.path.exists(target):
        try:
            width, height, pil_format = header_size(source)
            held = reduced_size((width, height), pil_format, 2 * THUMB_SIZE)
            with current_app.extensions["pixel_budget"].hold_picture(*held, pil_format):
                # upright, 8-bit, transparency over white: as the model sees it
                thumb = decode(source, current_app.config["MAX_IMAGE_PIXELS"], 2 * THUMB_SIZE).image
                thumb.thumbnail((THUMB_SIZE, THUMB_SIZE))
        except ImageError:
            abort(404)
        atomic_write(target, lambda f: thumb.save(f, "JPEG", quality=85), durable=False)
    return send_from_directory(folder, name, max_age=86400)


@bp.get("/media/uploads/<name>")
@login_required
def upload_file(name: str):
    """A query picture, shown only to the user whose history holds it."""
    if not _UPLOAD_NAME.match(name):
        abort(404)
    if upload_owner(name) != current_user.id:
        abort(404)
    return send_from_directory(current_app.config["UPLOAD_DIR"], name, max_age=3600)
