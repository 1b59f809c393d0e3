"""API keys: a signed-in user's own (list, create, revoke) and, for administrators, everyone's."""
from __future__ import annotations

from flask import jsonify
from flask_login import current_user

from ..errors import ApiError
from ..services.errors import InvalidInput
from ..storage import audit
from ..storage.api_keys import create_key, key_json, list_keys, revoke_key
from ..web.bearer import current_key
from ..web.roles import admin_required, require_sign_in
from . import bp
from .fields import body_fields, int_arg, printable_text

NAME_MAX = 60


KEYS = "Sign in to manage your API keys."


@bp.get("/keys")
def keys():
    require_sign_in(KEYS)
    return jsonify({"items": list_keys(current_user.id)})


@bp.post("/keys")
def new_key():
    """A new key, in the answer once and never again. Made from a signed-in browser only: a key that could
    make keys would outlive its own revocation."""
    require_sign_in(KEYS)
    if current_key() is not None:
        raise ApiError(403, "session_required", "API keys are made on the account page, not with another key.")
    fields, _ = body_fields()
    name = fields.get("name")
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > NAME_MAX or not printable_text(name):
        raise InvalidInput(f"'name' must be a text of 1 to {NAME_MAX} characters.")
    days = fields.get("days")
    days = None if days in (None, "") else int_arg(days, "days", 0, 1, 3650)
    key, token = create_key(current_user, name.strip(), days)
    audit.record("api_key_created", current_user, key=key.name, expires_days=days)
    return jsonify(dict(key_json(key), key=token)), 201


@bp.delete("/keys/<int(max=2147483647):key_id>")
def remove_key(key_id: int):
    require_sign_in(KEYS)
    key = revoke_key(key_id, current_user.id)
    audit.record("api_key_revoked", current_user, key=key["name"])
    return jsonify({"revoked": key_id})


@bp.get("/admin/keys")
@admin_required(api=True)
def all_keys():
    return jsonify({"items": list_keys()})


@bp.delete("/admin/keys/<int(max=2147483647):key_id>")
@admin_required(api=True)
def admin_remove_key(key_id: int):
    key = revoke_key(key_id)
    audit.record("api_key_revoked", current_user, key=key["name"], owner=key["email"])
    return jsonify({"revoked": key_id})
