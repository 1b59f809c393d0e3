"""API keys: made for an account and shown once, then known only by their SHA-256; listed, revoked, and
looked up for ``Authorization: Bearer`` requests.

Why a plain SHA-256 and not a password hash: a key is 32 random bytes (256 bits) from ``secrets``, so nobody
can guess one or invert its digest, however fast the hash; a slow hash (scrypt, PBKDF2) protects passwords
people choose, and would here only cost every API request tens of milliseconds. A fast digest also lets the
key be found by an indexed lookup; the stored digest is then compared with ``hmac.compare_digest``."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from ..extensions import db
from ..services.errors import InvalidInput, NotFound
from .models import ApiKey, User

PREFIX = "sbi_"  # says what the text is, for people and for secret scanners
MAX_KEYS = 50  # per account: a script needs one or two; this stops a runaway loop filling the table
LAST_USED_GRANULARITY = timedelta(minutes=1)  # at most one write per key and minute, not one per request


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; they were stored in UTC."""
    return moment.replace(tzinfo=timezone.utc) if moment is not None and moment.tzinfo is None else moment


def create_key(user: User, name: str, days: int | None) -> tuple[ApiKey, str]:
    """A new key of ``user`` named ``name``, valid for ``days`` (None: until revoked); the row and the key
    itself, which is not stored and cannot be shown again."""
    if db.session.scalar(select(db.func.count(ApiKey.id)).where(ApiKey.user_id == user.id)) >= MAX_KEYS:
        raise InvalidInput(f"An account may have at most {MAX_KEYS} keys; revoke one first.", "too_many_keys")
    token = PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(user_id=user.id, name=name, prefix=token[:len(PREFIX) + 4], key_hash=_digest(token),
                 expires_at=_now() + timedelta(days=days) if days is not None else None)
    db.session.add(key)
    db.session.commit()
    return key, token


def key_json(key: ApiKey, owner: bool = False) -> dict:
    """A key as lists show it (never the key itself); with ``owner``, whose it is."""
    expires = _aware(key.expires_at)
    out = {"id": key.id, "name": key.name, "prefix": key.prefix, "created_at": _aware(key.created_at).isoformat(),
           "last_used_at": key.last_used_at and _aware(key.last_used_at).isoformat(),
           "expires_at": expires and expires.isoformat(), "expired": expires is not None and expires <= _now()}
    if owner:
        out.update(user_id=key.user_id, email=key.user.email)
    return out


def list_keys(user_id: int | None = None) -> list[dict]:
    """The keys of one account, or (None) of every account with their owners, newest first."""
    query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    return [key_json(k, owner=user_id is None) for k in db.session.scalars(query)]


def revoke_key(key_id: int, user_id: int | None = None) -> dict:
    """Delete key ``key_id`` (of account ``user_id``, unless None: an administrator's revocation); what it was,
    for the audit trail. NotFound if there is no such key (of that account)."""
    key = db.session.get(ApiKey, key_id)
    if key is None or (user_id is not None and key.user_id != user_id):
        raise NotFound(f"No API key {key_id}" + (" of yours." if user_id is not None else "."))
    gone = key_json(key, owner=True)
    db.session.delete(key)
    db.session.commit()
    return gone


def user_for_key(token: str) -> tuple[User, ApiKey] | None:
    """The account and key that ``token`` opens, or None: unknown, revoked (deleted), expired, or its account
    disabled or deleted. Records when the key was last used."""
    if not token.startswith(PREFIX) or len(token) > 100:
        return None
    digest = _digest(token)
    key = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if key is None or not hmac.compare_digest(key.key_hash, digest) or key.user.disabled:
        return None
    now = _now()
    if key.expires_at is not None and _aware(key.expires_at) <= now:
        return None
    last = _aware(key.last_used_at)
    if last is None or now - last >= LAST_USED_GRANULARITY:
        key.last_used_at = now
        db.session.commit()
        db.session.refresh(key)  # loaded again now: searches give the connection back before using them
        db.session.refresh(key.user)
    return key.user, key
