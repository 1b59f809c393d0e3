"""The JSON API under /api: every POST and DELETE needs the CSRF token in the X-CSRFToken header
(GET /api/csrf-token). Routes parse and check fields, call a service, and shape its answer."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")

from . import accounts, admin, explain, explore, gallery, history, search, status  # noqa: E402,F401  (routes register on bp)
