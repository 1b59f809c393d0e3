"""Accounts and sign-ins: creating an account (the first ever becomes the administrator, race-free, and that
claim is never freed again; later ones as the sign-up policy allows), checking a password in the same time
whether or not the account exists, one revocable token per sign-in, invitations, and what administrators and
users change about accounts."""
from __future__ import annotations

import os
import secrets
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..services.errors import InvalidInput, NotFound
from .models import FirstAccount, Invitation, LoginSession, Search, User

# Checked when the account does not exist, so that a wrong address costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))


class AccountExists(Exception):
    """The address already has an account."""


def normalise_email(email: str) -> str:
    return email.strip().lower()


def has_accounts() -> bool:
    return db.session.scalar(select(func.count(User.id))) > 0


def create_account(email: str, password: str, invitation: str | None = None) -> User:
    """A new account; the first one ever created is the administrator. AccountExists if the address is taken
    (also when another request takes it at the same moment). ``invitation`` is used up, once."""
    user = User(email=normalise_email(email), is_admin=False, disabled=False)
    user.set_password(password)
    db.session.add(user)
    try:
        db.session.flush()
        if invitation is not None:
            used = db.session.execute(update(Invitation).where(Invitation.token == invitation,
                                                               Invitation.used_at.is_(None))
                                      .values(used_at=_now(), used_by=user.id))
            if used.rowcount != 1:
                raise InvalidInput("This invitation has been used already.", "invitation_used")
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise AccountExists(email) from None
    except InvalidInput:
        db.session.rollback()
        raise
    db.session.add(FirstAccount(id=1, user_id=user.id))
    try:
        db.session.commit()
        user.is_admin = True
        db.session.commit()
    except IntegrityError:  # somebody else was first
        db.session.rollback()
    return user


def authenticate(email: str, password: str) -> User | None:
    """The account if the password is right; the same work (one hash check) either way."""
    user = db.session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    return user if user.check_password(password) and not user.disabled else None


def open_session(user: User) -> User:
    """Record a new sign-in for ``user``; its token becomes ``user.get_id()``."""
    token = secrets.token_urlsafe(32)
    db.session.add(LoginSession(token=token, user_id=user.id))
    db.session.commit()
    user.session_token = token
    return user


def user_for_session(token: str) -> User | None:
    """The account a sign-in token belongs to, or None once it was closed."""
    row = db.session.get(LoginSession, token) if token and len(token) <= 64 else None
    if row is None or row.user.disabled:
        return None
    user = row.user
    user.session_token = token
    return user


def close_session(token: str | None) -> None:
    """End one sign-in: its session and remember-me cookies stop working everywhere."""
    row = db.session.get(LoginSession, token) if token else None
    if row is not None:
        db.session.delete(row)
        db.session.commit()


def close_all_sessions(user: User, keep: str | None = None) -> None:
    """End every sign-in of ``user`` but ``keep``."""
    query = delete(LoginSession).where(LoginSession.user_id == user.id)
    if keep:
        query = query.where(LoginSession.token != keep)
    db.session.execute(query)
    db.session.commit()


def change_password(user: User, current: str, new: str) -> None:
    """InvalidInput unless ``current`` is right; other browsers' sign-ins end."""
    if not user.check_password(current):
        raise InvalidInput("The current password is not right.", "wrong_password")
    user.set_password(new)
    db.session.commit()
    close_all_sessions(user, keep=user.session_token)


def delete_account(user_id: int, upload_dir: str) -> None:
    """An account, its sign-ins and its search history, query pictures included."""
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(f"No account {user_id}.")
    _refuse_losing_last_admin(user)
    names = db.session.scalars(select(Search.query_file).where(Search.user_id == user.id,
                                                               Search.query_file.is_not(None))).all()
    db.session.delete(user)  # the first-account claim stays: deleting accounts never frees it for a sign-up
    db.session.commit()
    for name in names:
        try:
            os.unlink(os.path.join(upload_dir, name))
        except FileNotFoundError:
            pass


def update_account(user_id: int, *, is_admin: bool | None = None, disabled: bool | None = None) -> User:
    """Promote, demote, disable or enable an account; disabling ends its sign-ins."""
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(f"No account {user_id}.")
    if is_admin is False or disabled:
        _refuse_losing_last_admin(user)
    if is_admin is not None:
        user.is_admin = is_admin
    if disabled is not None:
        user.disabled = disabled
    db.session.commit()
    if disabled:
        close_all_sessions(user)
    return user


def _refuse_losing_last_admin(user: User) -> None:
    """InvalidInput if ``user`` is the last active administrator. The check and the caller's change happen in
    one transaction that holds the administrators' rows (and, on SQLite, the database's write lock), so that
    two administrators demoting each other at the same moment cannot both succeed: the second sees the
    first's change."""
    db.session.commit()  # a fresh transaction: its first statement takes the lock, its reads come after it
    db.session.execute(update(FirstAccount).where(FirstAccount.id == 1).values(id=FirstAccount.id))
    admins = db.session.scalars(select(User.id).where(User.is_admin.is_(True), User.disabled.is_(False))
                                .order_by(User.id).with_for_update()).all()
    if user.id in admins and len(admins) == 1:
        db.session.rollback()
        raise InvalidInput("This is the last administrator; promote another account first.", "last_admin")


def list_accounts() -> list[dict]:
    return [{"id": u.id, "email": u.email, "is_admin": u.is_admin, "disabled": u.disabled,
             "created_at": u.created_at.isoformat(), "searches": len(u.searches)}
            for u in db.session.scalars(select(User).order_by(User.id))]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def create_invitation(admin: User, days: float) -> Invitation:
    """A single-use invitation valid for ``days``."""
    invitation = Invitation(token=secrets.token_urlsafe(24), created_by=admin.id,
                            expires_at=_now() + timedelta(days=days))
    db.session.add(invitation)
    db.session.commit()
    return invitation


def valid_invitation(token: str | None) -> Invitation | None:
    """The invitation if it exists, is unused and has not expired."""
    invitation = db.session.get(Invitation, token) if token and len(token) <= 64 else None
    if invitation is None or invitation.used_at is not None:
        return None
    expires = invitation.expires_at
    if expires.tzinfo is None:  # SQLite gives naive datetimes back
        expires = expires.replace(tzinfo=timezone.utc)
    return invitation if expires > _now() else None


def list_invitations() -> list[dict]:
    rows = db.session.scalars(select(Invitation).order_by(Invitation.created_at.desc())).all()
    return [{"token": i.token, "created_at": i.created_at.isoformat(), "expires_at": i.expires_at.isoformat(),
             "used": i.used_at is not None, "valid": valid_invitation(i.token) is not None} for i in rows]


def revoke_invitation(token: str) -> None:
    invitation = db.session.get(Invitation, token)
    if invitation is None:
        raise NotFound("No such invitation.")
    db.session.delete(invitation)
    db.session.commit()
