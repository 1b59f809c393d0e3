"""The pages: search, sketch, gallery, duplicates, groups, map and history. Their data comes from the JSON API."""
from __future__ import annotations

import os

from flask import Blueprint, render_template
from flask_login import login_required

from indexer.formats import RAW_EXTENSIONS

from ..extensions import engine
from ..services.errors import NotReady
from ..services.exploration import MAX_K, MIN_K

bp = Blueprint("main", __name__)
# What file pickers offer: every image type the browser knows, and cameras' RAW files, which it does not.
UPLOAD_ACCEPT = ",".join(["image/*"] + sorted("." + ext for ext in RAW_EXTENSIONS))


@bp.app_context_processor
def _upload_accept() -> dict:
    return {"upload_accept": UPLOAD_ACCEPT}


def _status() -> dict:
    """What the pages need to show an empty state instead of a broken one."""
    eng = engine()
    status = {"weights_ready": os.path.exists(eng.weights), "index_ready": False, "gallery_size": 0,
              "text_search": eng.clip_enabled}
    try:
        status.update(index_ready=True, gallery_size=len(eng.index()))
    except NotReady:  # no index yet, or unreadable: the page explains how to build one
        status["index_ready"] = False
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


@bp.get("/duplicates")
def duplicates():
    return render_template("duplicates.html", status=_status())


@bp.get("/groups")
def groups():
    return render_template("groups.html", status=_status(), min_k=MIN_K, max_k=MAX_K)


@bp.get("/map")
def gallery_map():
    return render_template("map.html", status=_status())


@bp.get("/history")
@login_required
def history():
    return render_template("history.html")
