"""Flask extensions, created unbound and attached to the app in ``create_app`` with ``init_app``; and the
accessors for the per-app services (the engine, the query limits)."""
from __future__ import annotations

from flask import current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase

from .services.engine import Engine
from .services.exploration import Exploration
from .services.search import Limits


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address)


def throttle(setting: str, **options):
    """``limiter.limit`` with the limit read from the setting ``setting`` of the current app, and off where the
    app's ``THROTTLE`` is false (one limiter serves every app of the process, as in the tests)."""
    return limiter.limit(lambda: current_app.config[setting], exempt_when=lambda: not current_app.config["THROTTLE"],
                         **options)


def engine() -> Engine:
    """This app's engine (one per process)."""
    return current_app.extensions["engine"]


def exploration() -> Exploration:
    """This app's duplicates, groups and map (``app.services.exploration``), one per process."""
    return current_app.extensions["exploration"]


def limits() -> Limits:
    """What one query may cost, from this app's settings."""
    cfg = current_app.config
    return Limits(max_pixels=cfg["MAX_IMAGE_PIXELS"], max_bytes=cfg["MAX_CONTENT_LENGTH"],
                  fetch_seconds=cfg["URL_FETCH_TIMEOUT"], fetch_allow=tuple(cfg["URL_FETCH_ALLOW"]),
                  budget=current_app.extensions["pixel_budget"])
