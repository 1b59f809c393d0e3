"""Administrators: accounts (list, promote, demote, disable, delete), invitations and the audit trail."""
from __future__ import annotations

import math

from flask import current_app, jsonify, request, url_for
from flask_login import current_user

from ..services.errors import InvalidInput
from ..storage import audit
from ..storage.accounts import (
    create_invitation,
    delete_account,
    list_accounts,
    list_invitations,
    revoke_invitation,
    update_account,
)
from ..web.roles import admin_required
from . import bp
from .fields import body_fields, flag, int_arg


@bp.get("/admin/users")
@admin_required(api=True)
def users():
    return jsonify({"items": list_accounts()})


@bp.patch("/admin/users/<int(max=2147483647):user_id>")
@admin_required(api=True)
def update_user(user_id: int):
    fields, _ = body_fields()
    changes = {k: flag(fields[k], k) for k in ("is_admin", "disabled") if k in fields}
    if not changes:
        raise InvalidInput("Send {\"is_admin\": true|false} and/or {\"disabled\": true|false}.")
    user = update_account(user_id, **changes)
    audit.record("account_changed", current_user, target=user.email, **changes)
    return jsonify({"id": user.id, "email": user.email, "is_admin": user.is_admin, "disabled": user.disabled})


@bp.delete("/admin/users/<int(max=2147483647):user_id>")
@admin_required(api=True)
def remove_user(user_id: int):
    delete_account(user_id, current_app.config["UPLOAD_DIR"])
    audit.record("account_deleted", current_user, target_id=user_id)
    return jsonify({"deleted": user_id})


@bp.get("/admin/invitations")
@admin_required(api=True)
def invitations():
    items = [dict(i, url=url_for("auth.signup", invite=i["token"], _external=True)) for i in list_invitations()]
    return jsonify({"items": items, "signup": current_app.config["SIGNUP"]})


@bp.post("/admin/invitations")
@admin_required(api=True)
def invite():
    fields, _ = body_fields()
    days = int_arg(fields.get("days"), "days", 7, 1, 90)
    invitation = create_invitation(current_user, days)
    audit.record("invitation_created", current_user, days=days)
    return jsonify({"token": invitation.token, "expires_at": invitation.expires_at.isoformat(),
                    "url": url_for("auth.signup", invite=invitation.token, _external=True)}), 201


@bp.delete("/admin/invitations/<token>")
@admin_required(api=True)
def revoke(token: str):
    revoke_invitation(token)
    audit.record("invitation_revoked", current_user)
    return jsonify({"revoked": True})


@bp.get("/admin/audit")
@admin_required(api=True)
def audit_trail():
    page = int_arg(request.args.get("page"), "page", 1, 1, 10**6)
    items, total = audit.recent(page)
    return jsonify({"items": items, "page": page, "total": total, "pages": max(1, math.ceil(total / 50))})
