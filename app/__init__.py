"""The web app: ``create_app()`` builds it from settings in the environment (``app.config``).

- ``web/``: HTML pages, sign-in, the admin page, and the image files they show.
- ``api/``: every JSON route. ``services/``: what the product does, without Flask.
- ``storage/``: the database tables. ``errors``: the one place errors become HTTP statuses.
- ``startup``: the explicit start-up step (recovery, gallery table) that ``wsgi.py`` runs.
"""
from __future__ import annotations

import os
import secrets
from typing import Any, Mapping

from flask import Flask


def _secret_key(instance_dir: str) -> str:
    """A random key kept in the instance folder (never in the repo), made on first use."""
    path = os.path.join(instance_dir, "secret_key")
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        key = secrets.token_hex(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another worker made it first
            return _secret_key(instance_dir)
        with os.fdopen(fd, "w") as f:
            f.write(key)
        return key


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Application factory: settings, extensions, the engine, blueprints and error handlers; no I/O beyond
    creating the instance folders."""
    from .config import load_config
    from .extensions import csrf, db, limiter, login_manager, migrate
    from .services.engine import Engine
    from .services.exploration import Exploration
    from .services.pixel_budget import PixelBudget

    cfg = load_config(overrides)
    app = Flask(__name__, instance_path=cfg["INSTANCE_DIR"])
    app.config.update(cfg)
    for key in ("INSTANCE_DIR", "UPLOAD_DIR", "THUMBNAIL_DIR"):
        os.makedirs(app.config[key], exist_ok=True)
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = _secret_key(app.config["INSTANCE_DIR"])

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations"))
    login_manager.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    app.extensions["engine"] = Engine(app.config)
    app.extensions["exploration"] = Exploration(app.extensions["engine"])
    app.extensions["pixel_budget"] = PixelBudget(max(app.config["PIXEL_BUDGET"], app.config["MAX_IMAGE_PIXELS"]))
    app.extensions["upload_budget"] = PixelBudget(app.config["UPLOAD_BUDGET"], unit="bytes of uploads")

    from . import commands, errors
    from .api import bp as api_bp
    from .storage import models  # noqa: F401  (registers the tables)
    from .web import account, admin, auth, bearer, files, pages, security, uploads
    for blueprint in (pages.bp, files.bp, auth.bp, account.bp, admin.bp, api_bp):
        app.register_blueprint(blueprint)
    security.init_app(app)
    bearer.init_app(app)
    uploads.init_app(app)
    errors.register(app)
    commands.register(app)
    return app
