"""Gallery administration: roles, uploads, duplicates, deletions, background rebuilds and crash consistency."""
import io
import os
import subprocess
import sys
import time

import pytest
from PIL import Image

from app.extensions import db
from app.storage.models import GalleryImage
from indexer.generations import load_index
from indexer.scan import scan
from tests.helpers import csrf_headers, make_app, sign_up
from tests.images import mvtb_photo, skimage_photo, sklearn_photo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def admin(site, tmp_path, weights_path):
    app = make_app(site, tmp_path, weights_path)
    client = app.test_client()
    sign_up(client, "root@example.com")  # the first account is the administrator
    return app, client


def photo_bytes(path, fmt="JPEG"):
    buf = io.BytesIO()
    Image.open(path).convert("RGB").save(buf, fmt)
    return buf.getvalue()


def post_images(client, *files):
    return client.post("/api/admin/images", data={"images": [(io.BytesIO(d), n) for n, d in files]},
                       headers=csrf_headers(client), content_type="multipart/form-data")


def search_paths(client, data, k=3):
    r = client.post("/api/search", data={"image": (io.BytesIO(data), "q.jpg"), "top_k": str(k)},
                    headers=csrf_headers(client), content_type="multipart/form-data")
    return [h["path"] for h in r.get_json()["results"]]


def assert_consistent(app):
    """Files on disk, the index and the database rows name the same images."""
    cfg = app.config
    files = {e.path for e in scan(cfg["GALLERY_DIR"])[0]}
    index = load_index(cfg["INDEX_DIR"])
    with app.app_context():
        rows = {r.path for r in db.session.query(GalleryImage)}
    assert files == set(index.paths) == rows
    assert index.features.shape[0] == len(index.paths)
    assert not os.path.exists(os.path.join(cfg["INDEX_DIR"], "admin-journal.json"))


def test_roles(app, client):
    sign_up(client, "first@example.com")
    other = app.test_client()
    sign_up(other, "second@example.com")
    anonymous = app.test_client()
    for c, status in ((other, 403), (anonymous, 401)):
        h = csrf_headers(c)
        assert c.post("/api/admin/images", headers=h).status_code == status
        assert c.delete("/api/admin/images", json={"ids": [1]}, headers=h).status_code == status
        assert c.post("/api/admin/rebuild", headers=h).status_code == status
        assert c.get("/api/admin/status").status_code == status
    assert other.get("/admin/gallery").status_code == 403
    assert anonymous.get("/admin/gallery").status_code == 302  # to the sign-in page
    assert client.get("/admin/gallery").status_code == 200


def test_upload_find_duplicate_reject_delete(admin):
    app, client = admin
    base = load_index(app.config["INDEX_DIR"]).location + "/gallery_features.npy"
    base_inode = os.stat(base).st_ino
    rocket, street = photo_bytes(skimage_photo("retina.jpg")), photo_bytes(mvtb_photo("street.png"))
    r = post_images(client, ("../../retina scan.jpg", rocket), ("street.png", street))
    assert r.status_code == 201
    added = r.get_json()["added"]
    paths = [a["path"] for a in added]
    assert all(p.startswith("uploads/") and ".." not in p for p in paths) and all(a["id"] for a in added)
    assert search_paths(client, rocket)[0] == paths[0]
    assert search_paths(client, street)[0] == paths[1]
    assert_consistent(app)

    r = post_images(client, ("again.jpg", rocket), ("text.jpg", b"not an image"))
    body = r.get_json()
    assert r.status_code == 200 and body["added"] == []
    assert body["duplicates"] == [{"filename": "again.jpg", "same_as": paths[0]}]
    assert body["rejected"][0]["code"] == "unsupported_media_type"

    r = client.delete("/api/admin/images", json={"ids": [added[0]["id"]]}, headers=csrf_headers(client))
    assert r.status_code == 200 and r.get_json()["deleted"] == [paths[0]]
    assert paths[0] not in search_paths(client, rocket, k=10)
    assert not os.path.exists(os.path.join(app.config["GALLERY_DIR"], paths[0]))
    assert_consistent(app)
    # The changes went into segments: the features file of the build is the same file, not a rewrite.
    current = load_index(app.config["INDEX_DIR"])
    assert os.stat(current.location + "/gallery_features.npy").st_ino == base_inode and len(current.segments) == 2
    assert client.delete("/api/admin/images", json={"ids": [999999]}, headers=csrf_headers(client)).status_code == 404
    assert client.delete("/api/admin/images", json={"ids": "all"}, headers=csrf_headers(client)).status_code == 400


def test_background_rebuild_keeps_search_working(admin):
    app, client = admin
    r = client.post("/api/admin/rebuild", json={"full": True}, headers=csrf_headers(client))
    assert r.status_code == 202
    assert search_paths(client, photo_bytes(skimage_photo("coffee.png")))[0] == "coffee.png"  # old index meanwhile
    for _ in range(300):
        state = client.get("/api/admin/status").get_json()["rebuild"]
        if state["state"] != "running":
            break
        time.sleep(0.1)
    assert state["state"] == "finished" and state["images"] == 7
    assert search_paths(client, photo_bytes(skimage_photo("coffee.png")))[0] == "coffee.png"


CRASH_SCRIPT = """
import io, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from tests.helpers import csrf_headers, make_app, sign_up
from indexer.generations import load_index
app = make_app(Path({site!r}), Path({tmp!r}), {weights!r}, CRASH_AT={point!r})
client = app.test_client()
sign_up(client, "root@example.com")
op = {op!r}
if op == "add":
    files = [(io.BytesIO(open(p, "rb").read()), p.rsplit("/", 1)[1]) for p in {photos!r}]
    r = client.post("/api/admin/images", data={{"images": files}}, headers=csrf_headers(client), content_type="multipart/form-data")
    print(r.status_code, r.get_data(as_text=True)[:300])
else:
    index = load_index({site!r} + "/index")
    client.delete("/api/admin/images", json={{"ids": [int(i) for i in index.ids[:2]]}}, headers=csrf_headers(client))
print("the operation finished without crashing")
"""


@pytest.mark.parametrize("op, point", [("add", "add-moved-one"), ("add", "add-built"), ("delete", "delete-built")])
def test_crash_mid_change_is_repaired_at_startup(site, tmp_path, weights_path, op, point):
    photos = [skimage_photo("retina.jpg"), skimage_photo("hubble_deep_field.jpg"), sklearn_photo("flower.jpg")]
    script = CRASH_SCRIPT.format(root=ROOT, site=str(site), tmp=str(tmp_path), weights=weights_path, op=op,
                                 photos=photos, point=point)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 137, result.stdout + result.stderr  # died mid-change, like kill -9
    assert os.path.exists(site / "index" / "admin-journal.json")
    app = make_app(site, tmp_path, weights_path)  # restart: the startup check finishes the change
    assert_consistent(app)
    paths = set(load_index(str(site / "index")).paths)
    if op == "add":
        assert len([p for p in paths if p.startswith("uploads/")]) == 3
    else:
        assert len(paths) == 5
