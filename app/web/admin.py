"""The gallery administration page (administrators only); its actions are in ``app.api.admin``."""
from __future__ import annotations

from flask import Blueprint, render_template

from .roles import admin_required

bp = Blueprint("admin", __name__)


@bp.get("/admin/gallery")
@admin_required(api=False)
def gallery_page():
    return render_template("admin.html")
