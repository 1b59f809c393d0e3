"""The audit trail: sign-ins (good and bad), account changes and gallery changes, with time, account and the
client's address (after ProxyFix, the real one behind a trusted proxy)."""
from __future__ import annotations

from flask import g, has_request_context, request
from sqlalchemy import func, select

from ..extensions import db
from .models import AuditEvent


def record(action: str, user=None, email: str | None = None, **detail) -> None:
    """Append one event; ``user`` (if any) names who acted, ``email`` an address that did not sign in. An
    action of a script says which of the account's API keys it used (``detail["by"]``)."""
    key = g.get("api_key") if has_request_context() else None
    if key is not None:
        detail = {"by": f"API key {key.name}", **detail}
    event = AuditEvent(action=action, user_id=getattr(user, "id", None), email=getattr(user, "email", None) or email,
                       address=request.remote_addr if has_request_context() else None, detail=detail)
    db.session.add(event)
    db.session.commit()


def recent(page: int, per_page: int = 50) -> tuple[list[dict], int]:
    """One page of events, newest first, and the total."""
    total = db.session.scalar(select(func.count(AuditEvent.id)))
    rows = db.session.scalars(select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
                              .offset((page - 1) * per_page).limit(per_page)).all()
    return [{"at": e.at.isoformat(), "action": e.action, "user_id": e.user_id, "email": e.email,
             "address": e.address, "detail": e.detail} for e in rows], total
