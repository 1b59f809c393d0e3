"""What a deployment does once before serving: finish a gallery change a crash interrupted, report files and
index that disagree, and bring the gallery table in step with the index. ``wsgi.py`` calls ``prepare``; it is
kept out of ``create_app`` so that tests, migrations and tools get an app without side effects."""
from __future__ import annotations

import os
from typing import Iterable

from flask import Flask
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from indexer.builder import BuildError
from indexer.generations import IndexFilesError

from .services.errors import Busy, NotReady
from .services.gallery_changes import drift, recover
from .storage import gallery_table


def sync_gallery_table(app: Flask, changed: Iterable[str] | None = None) -> None:
    """Bring the gallery table in step with the current index generation (nothing if there is none); only
    the rows of the ``changed`` paths when given."""
    from .extensions import db, engine
    with app.app_context():
        try:
            gallery_table.sync(engine().index(), changed)
        except NotReady:
            return
        except IntegrityError:  # another worker synced the same rows at the same moment: its result stands
            db.session.rollback()


def prepare(app: Flask) -> None:
    """Recover, report drift and sync the gallery table; problems are logged, never fatal."""
    cfg = app.config
    try:
        if not os.path.exists(cfg["WEIGHTS"]):
            raise BuildError("no model weights yet")
        done = recover(cfg)
        if done:
            app.logger.warning("start-up: %s", done)
        found = drift(cfg)
        if found["unindexed"] or found["missing"]:
            app.logger.warning("start-up: %d image file(s) not indexed, %d indexed file(s) missing; "
                               "run 'python build_gallery.py'", len(found["unindexed"]), len(found["missing"]))
    except (Busy, BuildError, IndexFilesError, OSError, ValueError) as e:
        app.logger.warning("start-up recovery skipped: %s", e)
    try:
        sync_gallery_table(app)
    except (OperationalError, ProgrammingError) as e:  # tables not migrated yet: 'flask --app app db upgrade'
        app.logger.warning("start-up: gallery table not synced: %s", e.__class__.__name__)
