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


def test_a_request_thread_never_hangs_on_a_dead_dispatcher(client):
    """The queue answers every job it takes; a failing model call reaches the request as an error."""
    from app.extensions import engine
    with client.application.app_context():
        queue = engine().queue
    with pytest.raises(ZeroDivisionError):
        queue.call(lambda model: 1 / 0)
    assert threading.active_count() < 200
    assert post_search(client, open(skimage_photo("coffee.png"), "rb").read()).status_code == 200


# Round three ===========================================================================================