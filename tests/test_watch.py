"""The folder watcher (WATCH_GALLERY=1): photos copied into the gallery become searchable by themselves;
files still being written wait; deletes and renames follow; bad files are reported once; one watcher per
deployment; the start-up scan finds what changed while nobody watched. Every wait polls the API with a
deadline: nothing is tuned to this machine's speed."""
import io
import os
import shutil
import time

import pytest

from app.startup import start_watching
from indexer.evaluate import distinct_photos
from indexer.generations import load_index
from tests.helpers import csrf_headers, make_app, sign_up

DEADLINE = 240  # seconds: far beyond what the slowest machine needs; a hang fails instead of blocking CI


def photos(count: int, salt: int = 0) -> list[bytes]:
    """``count`` distinct real JPEGs (the demo originals, then crops of them: no two alike)."""
    out = []
    for image in distinct_photos(count, first_cut=3 + salt, step=5):
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=88)
        out.append(buf.getvalue())
    return out


def wait_until(check, what: str):
    """Poll ``check()`` until it returns something true; fail with ``what`` after DEADLINE seconds."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def watched(site, tmp_path, weights_path):
    """An app watching its gallery folder, and an administrator's client."""
    app = make_app(site, tmp_path, weights_path, WATCH_GALLERY=True, WATCH_SETTLE_SECONDS=0.5)
    client = app.test_client()
    sign_up(client, "admin@example.com")
    yield app, client, site / "gallery"
    app.extensions["gallery_watch"].stop()


def status(client) -> dict:
    return client.get("/api/admin/status?drift=0").get_json()


def indexed(client) -> set[str]:
    return {i["path"] for i in client.get("/api/gallery?per_page=200").get_json()["items"]}


def idle(client) -> bool:
    s = status(client)["watch"]
    return s["state"] == "watching" and not s["pending_count"] and not s["indexing"]


@pytest.mark.slow
def test_copying_fifty_photos_makes_them_searchable(watched):
    app, client, gallery = watched
    wait_until(lambda: idle(client), "the watcher to start")
    changes_before = status(client)["watch"]["changes"]
    before = indexed(client)
    (gallery / "card").mkdir()
    data = photos(50)
    for i, body in enumerate(data):
        (gallery / "card" / f"IMG_{i:04d}.jpg").write_bytes(body)
    wanted = before | {f"card/IMG_{i:04d}.jpg" for i in range(50)}
    wait_until(lambda: indexed(client) == wanted, "all 50 photos to be indexed")
    r = client.post("/api/search", data={"image": (io.BytesIO(data[7]), "q.jpg"), "top_k": "1"},
                    headers=csrf_headers(client), content_type="multipart/form-data")
    assert r.get_json()["results"][0]["path"] == "card/IMG_0007.jpg"
    # Debounced into a few changes, not fifty.
    assert status(client)["watch"]["changes"] - changes_before <= 10
    app.extensions["gallery_watch"].stop()
    from app.extensions import db
    from app.storage.models import GalleryImage
    with app.app_context():
        assert {r.path for r in db.session.query(GalleryImage)} == wanted


def test_a_file_is_not_read_while_it_is_being_written(watched):
    app, client, gallery = watched
    wait_until(lambda: idle(client), "the watcher to start")
    body = photos(1)[0]
    with open(gallery / "slow.jpg", "wb") as f:
        f.write(body[: len(body) // 2])
        f.flush()
        os.fsync(f.fileno())
        seen = wait_until(lambda: next((p for p in status(client)["watch"]["pending"] if p["path"] == "slow.jpg"),
                                       None), "the watcher to notice the new file")
        assert seen["waiting"] == "being written"
        loops = status(client)["watch"]["loops"]
        wait_until(lambda: status(client)["watch"]["loops"] >= loops + 10, "ten turns of the watcher")
        assert "slow.jpg" not in indexed(client)
        assert "slow.jpg" not in {f["path"] for f in status(client)["failed"]}
        f.write(body[len(body) // 2:])
    wait_until(lambda: "slow.jpg" in indexed(client), "the finished file to be indexed")
    assert "slow.jpg" not in {f["path"] for f in status(client)["failed"]}


def test_deleting_and_renaming_are_followed(watched):
    app, client, gallery = watched
    wait_until(lambda: idle(client), "the watcher to start")
    assert {"coffee.png", "sub/china.jpg"} <= indexed(client)
    vector = load_index(app.config["INDEX_DIR"])
    before = vector.vector(vector.row_of_path("coffee.png"))
    os.unlink(gallery / "sub" / "china.jpg")
    os.rename(gallery / "coffee.png", gallery / "morning coffee.png")
    wait_until(lambda: "morning coffee.png" in indexed(client) and not {"coffee.png", "sub/china.jpg"} & indexed(client),
               "the delete and the rename to be indexed")
    index = load_index(app.config["INDEX_DIR"])
    assert (index.vector(index.row_of_path("morning coffee.png")) == before).all()  # moved, not re-embedded
    shutil.move(str(gallery / "sub"), str(gallery / "renamed-folder"))
    wait_until(lambda: "renamed-folder/eiffel.png" in indexed(client) and "sub/eiffel.png" not in indexed(client),
               "the moved folder to be indexed")


def test_a_corrupt_file_is_reported_once_and_not_retried(watched):
    app, client, gallery = watched
    wait_until(lambda: idle(client), "the watcher to start")
    (gallery / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not the rest of a JPEG")
    wait_until(lambda: "broken.jpg" in {f["path"] for f in status(client)["failed"]}, "the bad file to be reported")
    wait_until(lambda: idle(client), "the change to finish")
    failed = status(client)["failed"]
    assert [f["path"] for f in failed].count("broken.jpg") == 1
    generation = load_index(app.config["INDEX_DIR"]).location
    changes = status(client)["watch"]["changes"]
    assert client.post("/api/admin/scan", headers=csrf_headers(client)).status_code == 202
    wait_until(lambda: status(client)["watch"]["last_scan"].get("at", 0) > time.time() - 5 and idle(client),
               "the requested scan")
    loops = status(client)["watch"]["loops"]
    wait_until(lambda: status(client)["watch"]["loops"] >= loops + 10, "ten more turns")
    assert status(client)["watch"]["changes"] == changes, status(client)["watch"]["recent"]  # not retried
    assert load_index(app.config["INDEX_DIR"]).location == generation
    (gallery / "broken.jpg").write_bytes(photos(1, salt=2)[0])  # fixed: indexed, no longer reported
    wait_until(lambda: "broken.jpg" in indexed(client), "the fixed file to be indexed")
    assert "broken.jpg" not in {f["path"] for f in status(client)["failed"]}


def test_two_workers_never_both_watch(site, tmp_path, weights_path):
    first = make_app(site, tmp_path / "one", weights_path, WATCH_GALLERY=True, WATCH_SETTLE_SECONDS=0.5)
    second = make_app(site, tmp_path / "two", weights_path, WATCH_GALLERY=True, WATCH_SETTLE_SECONDS=0.5)
    supervisors = [first.extensions["gallery_watch"], second.extensions["gallery_watch"]]
    try:
        wait_until(lambda: any(s.watcher for s in supervisors), "one watcher to start")
        assert sum(s.watcher is not None for s in supervisors) == 1
        for i, body in enumerate(photos(6, salt=1)):
            (site / "gallery" / f"new{i}.jpg").write_bytes(body)
        wait_until(lambda: {f"new{i}.jpg" for i in range(6)} <= set(load_index(str(site / "index")).paths),
                   "the new photos to be indexed")
        index = load_index(str(site / "index"))
        rows = [p for segment in index.segments for p in segment.paths if p.startswith("new")]
        assert sorted(rows) == sorted(set(rows))  # each file was embedded exactly once
        assert sum(s.watcher is not None for s in supervisors) == 1
    finally:
        for s in supervisors:
            s.stop()


def test_the_start_up_scan_finds_what_changed_while_nobody_watched(watched):
    app, client, gallery = watched
    wait_until(lambda: idle(client), "the watcher to start")
    app.extensions["gallery_watch"].stop()
    (gallery / "while-down.jpg").write_bytes(photos(1, salt=4)[0])
    os.unlink(gallery / "chelsea.png")
    assert "while-down.jpg" not in indexed(client)
    start_watching(app)
    wait_until(lambda: "while-down.jpg" in indexed(client) and "chelsea.png" not in indexed(client),
               "the start-up scan to index the change")
    assert status(client)["watch"]["last_scan"]["unindexed"] >= 1


def test_a_watcher_that_crashes_is_started_again(watched, monkeypatch):
    app, client, gallery = watched
    supervisor = app.extensions["gallery_watch"]
    wait_until(lambda: supervisor.watcher is not None and idle(client), "the watcher to start")
    supervisor.backoff = 0.1
    original = supervisor.watcher.step
    calls = {"n": 0}

    def crash_once():
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated bug")
        return original()

    monkeypatch.setattr(supervisor.watcher, "step", crash_once)
    wait_until(lambda: supervisor.restarts == 1, "the supervisor to restart the watcher")
    (gallery / "after-crash.jpg").write_bytes(photos(1, salt=5)[0])
    wait_until(lambda: "after-crash.jpg" in indexed(client), "the restarted watcher to index a file")
    assert client.get("/").status_code == 200  # the web app never noticed
