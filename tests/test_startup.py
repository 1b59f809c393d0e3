"""Start-up that does not grow with the library: the gallery table sync does nothing when the table reflects
the current generation and only the changed rows after a change; while the process gets ready, requests are
answered 503 with Retry-After instead of waiting."""
import contextlib
import threading

import numpy as np
import pytest
from sqlalchemy import event, select

from app import create_app
from app.extensions import db
from app.startup import prepare, sync_gallery_table
from app.storage.gallery_table import row_values
from app.storage.models import GalleryImage
from indexer.builder import build_gallery
from indexer.generations import append_change, load_index
from tests.helpers import database_id, database_urls, make_app, wait_until


@contextlib.contextmanager
def statements(app):
    """The SQL statements the app's database receives meanwhile."""
    seen = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(" ".join(statement.split()).upper())

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def table_rows(app) -> dict:
    with app.app_context():
        return {r.path: r for r in db.session.scalars(select(GalleryImage))}


def assert_table_is_the_index(app, index_dir):
    index = load_index(index_dir)
    rows = table_rows(app)
    assert set(rows) == set(index.paths)
    for path, row in rows.items():
        wanted = row_values(path, index.info(index.row_of_path(path)))
        assert {k: getattr(row, k) for k in wanted} == wanted, path
        assert row.id == int(index.ids[index.row_of_path(path)])


@pytest.mark.parametrize("database", database_urls(), ids=database_id)
def test_a_second_start_reads_and_writes_no_gallery_row(site, tmp_path, weights_path, database):
    app = make_app(site, tmp_path, weights_path, database)
    assert_table_is_the_index(app, site / "index")
    with statements(app) as seen:
        sync_gallery_table(app)
    assert seen, "the sync asked nothing at all: it cannot have known the table is current"
    assert not [s for s in seen if "GALLERY_IMAGES" in s], seen
    assert not [s for s in seen if s.startswith(("INSERT", "UPDATE", "DELETE"))], seen


@pytest.mark.parametrize("database", database_urls(), ids=database_id)
def test_after_changes_only_their_rows_are_touched(site, tmp_path, weights_path, database):
    app = make_app(site, tmp_path, weights_path, database)
    index_dir = str(site / "index")
    old = load_index(index_dir)
    moved = old.vector(old.row_of_path("coffee.png"))[None]
    # Made outside this process (another worker, a crash before its sync): the table still shows the old rows.
    append_change(index_dir, ["sub/coffee-again.png"], moved, {"sub/coffee-again.png": {
        "size": 1, "mtime_ns": 1, "sha256": "0" * 64, "meta": {"camera": "Test Cam", "width": 4, "height": 3}}},
        remove=["coffee.png"])
    append_change(index_dir, [], np.empty((0, old.dim), np.float32), {}, remove=["chelsea.png"])
    with statements(app) as seen:
        sync_gallery_table(app)
    assert_table_is_the_index(app, index_dir)
    written = [s for s in seen if s.startswith(("INSERT INTO GALLERY_IMAGES", "UPDATE GALLERY_IMAGES",
                                                 "DELETE FROM GALLERY_IMAGES"))]
    assert len(written) == 2, seen  # one insert, one delete of two ids: no row of the unchanged pictures
    assert not [s for s in seen if s.startswith("SELECT") and "GALLERY_IMAGES" in s and " IN " not in s], seen
    with statements(app) as seen:
        sync_gallery_table(app)
    assert not [s for s in seen if "GALLERY_IMAGES" in s]


@pytest.mark.parametrize("database", database_urls(), ids=database_id)
def test_a_new_build_is_synced_in_full(site, tmp_path, weights_path, database):
    app = make_app(site, tmp_path, weights_path, database)
    (site / "gallery" / "rocket.jpg").unlink()
    build_gallery(str(site / "gallery"), str(site / "index"), weights_path, progress=False)
    sync_gallery_table(app)
    assert_table_is_the_index(app, site / "index")
    assert "rocket.jpg" not in table_rows(app)


def test_requests_get_503_with_retry_after_until_the_start_up_is_done(site, tmp_path, weights_path, monkeypatch):
    from flask_migrate import upgrade

    from app import startup
    app = create_app({"INSTANCE_DIR": str(tmp_path / "instance"), "MEDIA_DIR": str(tmp_path / "media"),
                      "GALLERY_DIR": str(site / "gallery"), "INDEX_DIR": str(site / "index"), "WEIGHTS": weights_path,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'app.db'}", "SECRET_KEY": "test-only",
                      "ACCESS": "public", "THROTTLE": False})
    with app.app_context():
        upgrade()
    release, started = threading.Event(), threading.Event()
    real_warm = startup._warm

    def slow_warm(app_):  # a large index and the model loading
        started.set()
        assert release.wait(30)
        real_warm(app_)

    monkeypatch.setattr(startup, "_warm", slow_warm)
    prepare(app, wait=False)
    assert started.wait(30)
    client = app.test_client()
    health = client.get("/api/health")
    assert health.status_code == 503 and health.headers["Retry-After"] == str(startup.STARTING_RETRY_AFTER)
    assert health.get_json()["status"] == "not_ready"
    refused = client.get("/api/gallery")
    assert refused.status_code == 503 and refused.get_json()["error"]["code"] == "starting"
    assert refused.headers["Retry-After"] == str(startup.STARTING_RETRY_AFTER)
    page = client.get("/")
    assert page.status_code == 503 and page.headers["Retry-After"]
    assert "starting" in page.get_data(as_text=True)
    assert client.get("/static/favicon.svg").status_code == 200  # the short page is styled meanwhile
    release.set()
    wait_until(lambda: client.get("/api/health").status_code == 200, "the app to become ready")
    # The table follows while the app serves (it lists cameras and past searches; results read the index).
    wait_until(lambda: set(table_rows(app)) == set(load_index(str(site / "index")).paths), "the table sync")
