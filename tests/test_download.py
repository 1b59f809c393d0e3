"""The CSV downloader against a local HTTP server serving good, broken, slow, missing and flaky files."""
import http.server
import json
import os
import subprocess
import sys
import time

import pytest

from indexer.download import download_csv
from tests.helpers import local_http_server
from tests.images import skimage_photo, sklearn_photo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTO = open(sklearn_photo("china.jpg"), "rb").read()
PNG = open(skimage_photo("coffee.png"), "rb").read()
CAP = max(len(PHOTO), len(PNG)) + 1000


class Server(http.server.BaseHTTPRequestHandler):
    hits: dict = {}

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", ctype="image/jpeg"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        Server.hits[self.path] = Server.hits.get(self.path, 0) + 1
        if self.path == "/good.jpg":
            self.reply(200, PHOTO)
        elif self.path == "/noext":
            self.reply(200, PNG, "image/png")
        elif self.path == "/broken.jpg":
            self.reply(200, PHOTO[:2000] + b"\0" * 10)
        elif self.path == "/page.jpg":
            self.reply(200, b"<html>not an image</html>", "text/html")
        elif self.path == "/slow.jpg":
            time.sleep(1.5)
            self.reply(200, PHOTO)
        elif self.path == "/big.jpg":
            self.reply(200, PHOTO + b"\0" * CAP)
        elif self.path == "/flaky.jpg":
            self.reply(503 if Server.hits[self.path] < 2 else 200, PHOTO if Server.hits[self.path] >= 2 else b"")
        else:
            self.reply(404, b"missing", "text/plain")


@pytest.fixture(scope="module")
def server():
    with local_http_server(Server) as url:
        yield url


@pytest.mark.slow
def test_downloads_validate_retry_and_resume(server, tmp_path):
    Server.hits.clear()
    csv = tmp_path / "urls.csv"
    names = ["good.jpg", "noext", "broken.jpg", "page.jpg", "slow.jpg", "big.jpg", "flaky.jpg", "missing.jpg"]
    csv.write_text("url,filename\n" + "".join(f"{server}/{n},\n" for n in names) + f"{server}/good.jpg,again.jpg\n")
    images = tmp_path / "images"
    result = download_csv(str(csv), str(images), timeout=0.5, max_bytes=CAP, retries=3, backoff=0.01,
                          progress=False)
    log = [json.loads(line) for line in open(images / ".download-log.jsonl")]
    by_url = {e["url"].rsplit("/", 1)[1]: e for e in log[:len(names)]}
    assert by_url["good.jpg"]["status"] == "ok"
    assert by_url["noext"]["status"] == "ok" and by_url["noext"]["file"].endswith(".png")
    assert by_url["broken.jpg"]["error"] == "the data is not a valid image"
    assert "not an image" in by_url["page.jpg"]["error"]
    assert by_url["slow.jpg"]["status"] == "failed" and by_url["slow.jpg"]["attempts"] == 3
    assert "limit" in by_url["big.jpg"]["error"] and by_url["big.jpg"]["attempts"] == 1
    assert by_url["flaky.jpg"]["status"] == "ok" and by_url["flaky.jpg"]["attempts"] == 2
    assert by_url["missing.jpg"]["error"] == "HTTP 404" and by_url["missing.jpg"]["attempts"] == 1
    assert result.outcomes == {"ok": 4, "failed": 5}
    files = sorted(f for f in os.listdir(images) if not f.startswith("."))
    assert len(files) == 4 and any(f.endswith("-again.jpg") for f in files)
    assert open(images / [f for f in files if f.endswith("-good.jpg")][0], "rb").read() == PHOTO

    hits_before = dict(Server.hits)
    again = download_csv(str(csv), str(images), timeout=0.5, max_bytes=CAP, retries=1, progress=False)
    assert again.outcomes["skipped"] == 4
    assert Server.hits["/good.jpg"] == hits_before["/good.jpg"]  # not fetched again


def test_builder_from_csv_then_builds(server, tmp_path, weights_path):
    csv = tmp_path / "urls.csv"
    csv.write_text(f"url\n{server}/good.jpg\n{server}/missing.jpg\n")
    result = subprocess.run([sys.executable, "build_gallery.py", "--from-csv", str(csv), "--images", str(tmp_path / "g"),
                             "--output", str(tmp_path / "idx"), "--weights", weights_path, "--quiet"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "1 failed, 1 ok" in result.stdout and "1 images in the index" in result.stdout


def test_csv_without_url_column(tmp_path):
    (tmp_path / "bad.csv").write_text("link\nhttp://example.invalid/a.jpg\n")
    with pytest.raises(RuntimeError, match="no 'url' column"):
        download_csv(str(tmp_path / "bad.csv"), str(tmp_path / "g"), progress=False)
