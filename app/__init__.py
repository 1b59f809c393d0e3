"""The web app: ``create_app()`` builds it from settings in the environment (see ``app.config``)."""
from __future__ import annotations

import os
import secrets
from typing import Any, Mapping

from flask import Flask


def _secret_key(instance_dir: str) -> str:
    """SECRET_KEY from the environment, else a random key kept in the instance folder (never in the repo)."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = os.path.join(instance_dir, "secret_key")
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        key = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)
        return key


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Application factory."""
    from .config import load_config
    from .engine import Engine
    from .extensions import csrf, db, login_manager, migrate

    cfg = load_config(overrides)
    app = Flask(__name__, instance_path=cfg["INSTANCE_DIR"])
    app.config.update(cfg)
    for key in ("INSTANCE_DIR", "UPLOAD_DIR", "THUMBNAIL_DIR"):
        os.makedirs(app.config[key], exist_ok=True)
    if not app.config.get("SECRET_KEY"):  # Flask's own default is None
        app.config["SECRET_KEY"] = _secret_key(app.config["INSTANCE_DIR"])
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": True})
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations"))
    login_manager.init_app(app)
    csrf.init_app(app)
    app.extensions["engine"] = Engine(app.config["WEIGHTS"], app.config["INDEX_DIR"], app.config["MAX_IMAGE_PIXELS"],
                                      backend=app.config)

    from . import admin, auth, commands, errors, models  # noqa: F401  (models registers the tables)
    from .api import bp as api_bp
    from .main import bp as main_bp
    app.register_blueprint(main_bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(admin.bp)
    errors.register(app)
    commands.register(app)
    _startup_check(app)
    return app


def _startup_check(app: Flask) -> None:
    """Finish a gallery change a crash interrupted, and report files and index that disagree."""
    from .gallery.builder import BuildError
    from .gallery_admin import AdminBusy, drift, recover
    if not os.path.exists(app.config["WEIGHTS"]):
        return
    try:
        done = recover(app.config)
        if done:
            app.logger.warning("startup check: %s", done)
        found = drift(app.config)
        if found["unindexed"] or found["missing"]:
            app.logger.warning("startup check: %d image file(s) not indexed, %d indexed file(s) missing; "
                               "run 'python build_gallery.py'", len(found["unindexed"]), len(found["missing"]))
    except (AdminBusy, BuildError, OSError) as e:
        app.logger.warning("startup check skipped: %s", e)
