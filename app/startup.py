"""What a deployment does once before serving: finish a gallery change a crash interrupted, report files and
index that disagree, and bring the gallery table in step with the index. ``wsgi.py`` calls ``prepare``; it is
kept out of ``create_app`` so that tests, migrations and tools get an app without side effects."""
from __future__ import annotations

import functools
import os
from typing import Iterable

from flask import Flask
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, ProgrammingError

from indexer.builder import BuildError
from indexer.generations import IndexFilesError

from .services.errors import Busy, NotReady
from .services.gallery_changes import compact_if_due, drift, recover
from .services.watcher import GalleryWatcher, WatchSupervisor
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
        except DataError as e:  # a value the database refuses: the table lags, the app serves on
            db.session.rollback()
            app.logger.warning("gallery table not synced: %s", str(e.orig)[:200])


def after_change(app: Flask, paths: list[str]) -> None:
    """What follows every gallery change (an upload, a delete, the folder watcher's): the table rows of the
    changed paths, and a compaction when enough changes piled up."""
    sync_gallery_table(app, paths)
    compact_if_due(app.extensions["engine"])


def start_watching(app: Flask) -> WatchSupervisor:
    """The folder watcher's supervisor for this worker (one of them watches; see ``app.services.watcher``)."""
    cfg = app.config
    engine = app.extensions["engine"]

    def make() -> GalleryWatcher:
        return GalleryWatcher(engine, engine.embed_background, functools.partial(after_change, app),
                              settle=cfg["WATCH_SETTLE_SECONDS"], scan_every=cfg["WATCH_SCAN_SECONDS"])

    supervisor = WatchSupervisor(make, cfg["INDEX_DIR"]).start()
    app.extensions["gallery_watch"] = supervisor
    return supervisor


def prepare(app: Flask) -> None:
    """Recover, report drift and sync the gallery table, then start following the gallery folder when
    ``WATCH_GALLERY`` is on; problems are logged, never fatal."""
    cfg = app.config
    engine = app.extensions["engine"]
    try:
        if not os.path.exists(cfg["WEIGHTS"]):
            raise BuildError("no model weights yet")
        done = recover(engine)
        if done:
            app.logger.warning("start-up: %s", done)
        found = drift(engine)
        if found["unindexed"] or found["missing"]:
            app.logger.warning("start-up: %d image file(s) not indexed, %d indexed file(s) missing; "
                               "run 'python build_gallery.py'", len(found["unindexed"]), len(found["missing"]))
    except (Busy, NotReady, BuildError, IndexFilesError, OSError, ValueError) as e:
        app.logger.warning("start-up recovery skipped: %s", e)
    try:
        sync_gallery_table(app)
    except (OperationalError, ProgrammingError) as e:  # tables not migrated yet: 'flask --app app db upgrade'
        app.logger.warning("start-up: gallery table not synced: %s", e.__class__.__name__)
    if cfg["WATCH_GALLERY"]:
        start_watching(app)
