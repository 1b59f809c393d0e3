"""What a deployment does once as it starts: finish a gallery change a crash interrupted, bring the gallery
table in step with the index, and report files and index that disagree. ``wsgi.py`` calls ``prepare`` (in the
background, answering 503 meanwhile); it is kept out of ``create_app`` so that tests, migrations and tools
get an app without side effects."""
from __future__ import annotations

import functools
import os
import threading
from typing import Iterable

from flask import Flask, request
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, ProgrammingError

from indexer.builder import BuildError
from indexer.generations import IndexFilesError

from .services.errors import Busy, NotReady, Starting
from .services.gallery_changes import compact_if_due, drift, recover
from .services.row_filters import segment_facts
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


STARTING_RETRY_AFTER = 3  # seconds a client is told to wait while the process gets ready


def prepare(app: Flask, wait: bool = True) -> None:
    """Recover, sync the gallery table and report drift, then start following the gallery folder when
    ``WATCH_GALLERY`` is on; problems are logged, never fatal. With ``wait`` false (``wsgi.py``) this runs in
    a background thread while the process already answers: every request gets 503 with ``Retry-After`` until
    recovery is done and the index and the model are loaded (a hung connection tells a client nothing). The
    table sync, then the drift scan, follow once it serves: searches and listings read the index, not the
    table, which only lists the cameras to filter by and the paths of past searches (a first start of a
    million pictures fills it in a few minutes, committing a few thousand rows at a time)."""
    ready = threading.Event()
    app.extensions["ready"] = ready

    @app.before_request
    def refuse_while_starting() -> None:
        # Health says it in its own words; style sheets and scripts need nothing the start-up makes.
        if not ready.is_set() and request.endpoint not in ("api.health", "static"):
            raise Starting("The app is starting; try again in a few seconds.", STARTING_RETRY_AFTER)

    if wait:
        _recover(app, report_drift=True)
        _sync_at_start(app)
        ready.set()
        _watch(app)
        return
    threading.Thread(target=_prepare_in_background, args=(app, ready), name="start-up", daemon=True).start()


def _prepare_in_background(app: Flask, ready: threading.Event) -> None:
    try:
        _recover(app, report_drift=False)
        _warm(app)
    except Exception:  # whatever went wrong, the app serves (and says what is missing, as /api/health does)
        app.logger.exception("start-up step failed")
    finally:
        ready.set()
    try:
        _sync_at_start(app)
    except Exception:  # noqa: BLE001  (the table lags; the next start or change syncs it)
        app.logger.exception("start-up: gallery table sync failed")
    _warm_filters(app)
    if not app.config["WATCH_GALLERY"]:  # the watcher's first full scan finds the same files and indexes them
        _report_drift(app)
    _watch(app)


def _recover(app: Flask, report_drift: bool) -> None:
    """Finish a change a crash interrupted (and, with ``report_drift``, say how files and index disagree)."""
    try:
        if not os.path.exists(app.config["WEIGHTS"]):
            raise BuildError("no model weights yet")
        done = recover(app.extensions["engine"])
        if done:
            app.logger.warning("start-up: %s", done)
    except (Busy, NotReady, BuildError, IndexFilesError, OSError, ValueError) as e:
        app.logger.warning("start-up recovery skipped: %s", e)
        return
    if report_drift:
        _report_drift(app)


def _report_drift(app: Flask) -> None:
    """Log the image files the index lacks and the indexed files that are gone."""
    try:
        found = drift(app.extensions["engine"])
    except (NotReady, IndexFilesError, OSError, ValueError) as e:
        app.logger.warning("start-up: drift not checked: %s", e)
        return
    if found["unindexed"] or found["missing"]:
        app.logger.warning("start-up: %d image file(s) not indexed, %d indexed file(s) missing; "
                           "run 'python build_gallery.py'", len(found["unindexed"]), len(found["missing"]))


def _sync_at_start(app: Flask) -> None:
    try:
        sync_gallery_table(app)
    except (OperationalError, ProgrammingError) as e:  # tables not migrated yet: 'flask --app app db upgrade'
        app.logger.warning("start-up: gallery table not synced: %s", e.__class__.__name__)


def _warm(app: Flask) -> None:
    """Open the index generation and load the model now, so that the first requests do not wait for them."""
    engine = app.extensions["engine"]
    try:
        engine.current()
        engine.model  # noqa: B018  (loads it)
    except NotReady as e:
        app.logger.warning("start-up: %s", e.message)


def _warm_filters(app: Flask) -> None:
    """Read the photo filters' columns of the current generation now rather than in the first filtered request."""
    try:
        for segment in app.extensions["engine"].index().segments:
            segment_facts(segment)
    except NotReady:
        pass


def _watch(app: Flask) -> None:
    if app.config["WATCH_GALLERY"]:
        start_watching(app)
