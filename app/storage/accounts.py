"""Accounts and sign-ins: creating an account (the first becomes the administrator, race-free), checking a
password in the same time whether or not the account exists, and one revocable token per sign-in."""
from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from .models import FirstAccount, LoginSession, User

# Checked when the account does not exist, so that a wrong address costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))


class AccountExists(Exception):
    """The address already has an account."""


def normalise_email(email: str) -> str:
    return email.strip().lower()


def create_account(email: str, password: str) -> User:
    """A new account; the first one ever created is the administrator. AccountExists if the address is taken
    (also when another request takes it at the same moment)."""
    user = User(email=normalise_email(email), is_admin=False)
    user.set_password(password)
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise AccountExists(email) from None
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
    return user if user.check_password(password) else None


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
    if row is None:
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
