"""Database tables: users, their searches, and the gallery images the index holds."""
from __future__ import annotations

from datetime import datetime, timezone

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class User(UserMixin, db.Model):
    """An account. Flask-Login identifies a signed-in browser by ``get_id()``: the token of its own sign-in
    (``LoginSession``), never the user id, so that signing out ends exactly that sign-in, cookies included."""
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)  # set by an administrator: cannot sign in
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    searches: Mapped[list["Search"]] = relationship(back_populates="user", cascade="all, delete-orphan")
    sessions: Mapped[list["LoginSession"]] = relationship(back_populates="user", cascade="all, delete-orphan")
    api_keys: Mapped[list["ApiKey"]] = relationship(back_populates="user", cascade="all, delete-orphan")
    session_token = None  # set by the sign-in or the loader; not a column

    def get_id(self) -> str | None:
        return self.session_token

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


class LoginSession(db.Model):
    """One sign-in of one browser: its random token is what the session and remember-me cookies carry."""
    __tablename__ = "login_sessions"
    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    user: Mapped[User] = relationship(back_populates="sessions")


class ApiKey(db.Model):
    """A named key a script sends as ``Authorization: Bearer <key>`` to act as its account. Only the SHA-256
    of the key is kept (``app.storage.api_keys`` says why that is enough); ``prefix`` is its first characters,
    to tell keys apart in lists."""
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(60))
    prefix: Mapped[str] = mapped_column(String(12))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    user: Mapped[User] = relationship(back_populates="api_keys")


class FirstAccount(db.Model):
    """At most one row, claimed by the first account to sign up: whoever inserts it is the administrator, so
    simultaneous first sign-ups cannot make two. The row outlives that account (no foreign key): were it
    freed, the next sign-up would become an administrator. Changes to administrators lock it."""
    __tablename__ = "first_account"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    user_id: Mapped[int | None] = mapped_column(Integer)


class Search(db.Model):
    """One search by a signed-in user: the stored query image, its parameters, timings and top results."""
    __tablename__ = "searches"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    mode: Mapped[str] = mapped_column(String(20))  # upload, base64, gallery
    query_file: Mapped[str | None] = mapped_column(String(100))  # generated name under media/uploads
    original_name: Mapped[str | None] = mapped_column(String(255))  # metadata only, never used as a path
    gallery_image_id: Mapped[int | None] = mapped_column(BigInteger)  # public image id of a gallery query
    top_k: Mapped[int] = mapped_column(Integer)
    total_ms: Mapped[float] = mapped_column(Float)
    timings: Mapped[dict] = mapped_column(JSON)
    results: Mapped[list] = mapped_column(JSON)  # [{"id", "path", "score"}] at search time
    user: Mapped[User] = relationship(back_populates="searches")


class GalleryImage(db.Model):
    """A picture of the gallery index, under its public id (``indexer.ids``: a hash of its path, so the same
    in the index, the vector backends and the API, and stable across rebuilds)."""
    __tablename__ = "gallery_images"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    path: Mapped[str] = mapped_column(String(1024), unique=True, index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # What the photo says about itself (indexer.exif); taken_at is the file time when time_from_exif is false.
    taken_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    time_from_exif: Mapped[bool | None] = mapped_column(Boolean)
    camera: Mapped[str | None] = mapped_column(String(120), index=True)
    lens: Mapped[str | None] = mapped_column(String(120))
    exposure: Mapped[str | None] = mapped_column(String(20))
    aperture: Mapped[float | None] = mapped_column(Float)
    iso: Mapped[int | None] = mapped_column(Integer)
    focal_length: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    orientation: Mapped[str | None] = mapped_column(String(10), index=True)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)


class GallerySync(db.Model):
    """The index generation the gallery_images table reflects (one row, ``app.storage.gallery_table``): a
    start-up that finds it current does nothing, one after a few changes looks at their rows only."""
    __tablename__ = "gallery_sync"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[str] = mapped_column(String(64))  # the generation folder's name
    base: Mapped[str] = mapped_column(String(64))  # identity of its base segment's file (inode, mtime, size)
    segments: Mapped[list] = mapped_column(JSON)  # the names of the segments on top of the base


class Invitation(db.Model):
    """A single-use, expiring link an administrator made for one new account."""
    __tablename__ = "invitations"
    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    used_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class AuditEvent(db.Model):
    """Who did what, when, from where: sign-ins, account changes, gallery changes. Kept for administrators."""
    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)  # no foreign key: the trail outlives accounts
    email: Mapped[str | None] = mapped_column(String(254))
    address: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(40), index=True)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
