"""Several app processes, one Milvus server: what one worker changes, the other sees, and the database, the
files and the collection agree afterwards. Two gunicorn masters of one worker each stand for two workers, so
that each request goes to the process the test means."""
import http.cookiejar
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from indexer.builder import build_gallery
from indexer.generations import load_index
from tests.helpers import form_token
from tests.images import skimage_photo, sklearn_photo

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


class Browser:
    """One person's cookies, used against either worker."""

    def __init__(self) -> None:
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def call(self, method, url, body=None, headers=None):
        request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        try:
            with self.opener.open(request, timeout=120) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def token(self, base):
        return json.loads(self.call("GET", base + "/api/csrf-token")[1])["csrf_token"]

    def json(self, method, base, path, payload):
        return self.call(method, base + path, json.dumps(payload).encode(),
                         {"Content-Type": "application/json", "X-CSRFToken": self.token(base)})

    def upload(self, base, path, photo, field="image"):
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{os.path.basename(photo)}\""
                "\r\n\r\n").encode() + open(photo, "rb").read() + f"\r\n--{boundary}--\r\n".encode()
        return self.call("POST", base + path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}",
                                                      "X-CSRFToken": self.token(base)})

    def search(self, base, photo):
        status, body = self.upload(base, "/api/search", photo)
        assert status == 200, body
        return [r["path"] for r in json.loads(body)["results"]]


def wait_healthy(base, server):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, "the worker exited"
        try:
            with urllib.request.urlopen(base + "/api/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{base} did not become healthy")


def test_two_workers_one_milvus_server(milvus_server, weights_path, tmp_path):
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for photo in (skimage_photo("chelsea.png"), skimage_photo("coffee.png"), sklearn_photo("china.jpg")):
        shutil.copy(photo, gallery)
    collection = "two" + uuid.uuid4().hex[:12]
    env = dict(os.environ, VECTOR_BACKEND="milvus", GALLERY_MILVUS_URI=milvus_server, MILVUS_COLLECTION=collection,
               GALLERY_DIR=str(gallery), INDEX_DIR=str(tmp_path / "index"), INSTANCE_DIR=str(tmp_path / "instance"),
               MEDIA_DIR=str(tmp_path / "media"), DINOV2_WEIGHTS=weights_path, SECRET_KEY="two-workers-test",
               ACCESS="public", SIGNUP="open", THROTTLE="0", WEB_WORKERS="1", WEB_THREADS="16")
    settings = {"VECTOR_BACKEND": "milvus", "MILVUS_URI": milvus_server, "MILVUS_COLLECTION": collection}
    build_gallery(str(gallery), str(tmp_path / "index"), weights_path, progress=False, backend=settings)
    subprocess.run([os.path.join(BIN, "flask"), "--app", "app", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    servers, bases = [], []
    try:
        for port in (5391, 5392):
            servers.append(subprocess.Popen([os.path.join(BIN, "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
                                            cwd=ROOT, env=dict(env, PORT=str(port)), stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL))
            bases.append(f"http://127.0.0.1:{port}")
        for base, server in zip(bases, servers):
            wait_healthy(base, server)
        a, b = bases
        person = Browser()
        page = person.call("GET", a + "/auth/signup")[1].decode()
        token = form_token(page)
        body = urllib.parse.urlencode({"email": "admin@example.com", "password": "administrator password",
                                       "confirm": "administrator password", "csrf_token": token}).encode()
        person.call("POST", a + "/auth/signup", body, {"Content-Type": "application/x-www-form-urlencoded"})

        status, body = person.upload(a, "/api/admin/images", skimage_photo("retina.jpg"), field="images")
        assert status == 201, body
        added = json.loads(body)["added"][0]
        assert person.search(b, skimage_photo("retina.jpg"))[0] == added["path"]  # through the other worker

        status, body = person.json("DELETE", b, "/api/admin/images", {"ids": [added["id"]]})
        assert status == 200, body
        for base in (a, b):
            assert added["path"] not in person.search(base, skimage_photo("retina.jpg"))

        index = load_index(str(tmp_path / "index"))
        files = sorted(p.name for p in gallery.rglob("*") if p.is_file() and not p.name.startswith("."))
        assert sorted(os.path.basename(p) for p in index.paths) == files
        from indexer.vector_index import open_backend
        milvus = open_backend(settings, index.dim)
        try:
            assert milvus.count() == len(index.paths)
            assert sorted(milvus.ids().tolist()) == sorted(int(i) for i in index.ids)
        finally:
            milvus.close()
        listed = json.loads(person.call("GET", b + "/api/gallery?per_page=200")[1])["items"]
        assert sorted(i["id"] for i in listed) == sorted(int(i) for i in index.ids)
        import sqlite3
        rows = sqlite3.connect(str(tmp_path / "instance" / "app.db")).execute("SELECT id FROM gallery_images").fetchall()
        assert sorted(r[0] for r in rows) == sorted(int(i) for i in index.ids)
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)
