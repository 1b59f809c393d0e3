"""The JSON API under /api, described by ``openapi.yaml`` (``contract``). With a session cookie every POST, PATCH
and DELETE needs the CSRF token in the X-CSRFToken header (GET /api/csrf-token); an API key
(``Authorization: Bearer``, ``app.web.bearer``) needs none. Routes parse and check fields, call a service,
and shape its answer."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")

from . import accounts, admin, contract, explain, explore, gallery, history, keys, search, status  # noqa: E402,F401  (routes register on bp)
