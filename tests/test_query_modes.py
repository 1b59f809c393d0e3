"""Region, click-an-object, sketch and URL queries, and their errors."""
import base64
import http.server
import io
import json

import pytest
from PIL import Image, ImageDraw

from tests.helpers import csrf_headers, local_http_server, make_app, post_search
from tests.images import skimage_photo

PHOTO = open(skimage_photo("astronaut.png"), "rb").read()


def collage() -> bytes:
    """The cat (left, 451 px wide) and the coffee cup (right) side by side in one JPEG."""
    cat, cup = Image.open(skimage_photo("chelsea.png")).convert("RGB"), Image.open(skimage_photo("coffee.png")).convert("RGB")
    cup = cup.resize((450, 300))
    canvas = Image.new("RGB", (901, 300), "white")
    canvas.paste(cat, (0, 0))
    canvas.paste(cup, (451, 0))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def search(client, **fields):
    return post_search(client, collage(), "collage.jpg", **fields)


def test_region_search_uses_only_the_box(client):
    cat = search(client, region={"x": 0, "y": 0, "w": 451, "h": 300}).get_json()
    cup = search(client, region={"x": 451, "y": 0, "w": 450, "h": 300}).get_json()
    assert cat["results"][0]["path"] == "chelsea.png" and cat["query"]["region"] == {"x": 0, "y": 0, "w": 451, "h": 300}
    assert cup["results"][0]["path"] == "coffee.png"
    body = {"image_base64": base64.b64encode(collage()).decode(), "region": {"x": 460, "y": 10, "w": 430, "h": 280}}
    r = client.post("/api/search", json=body, headers=csrf_headers(client))
    assert r.get_json()["results"][0]["path"] == "coffee.png"


@pytest.mark.parametrize("fields, code", [
    ({"region": {"x": 800, "y": 0, "w": 300, "h": 100}}, "invalid_region"),
    ({"region": {"x": -5, "y": 0, "w": 30, "h": 30}}, "invalid_region"),
    ({"region": {"x": 0, "y": 0, "w": 0, "h": 30}}, "invalid_region"),
    ({"region": {"x": 0, "y": 0, "w": "wide"}}, "invalid_field"),
    ({"point": {"x": 950, "y": 20}}, "invalid_point"),
    ({"point": {"x": 10}}, "invalid_field"),
    ({"point": {"x": 10, "y": 10}, "region": {"x": 0, "y": 0, "w": 10, "h": 10}}, "invalid_field"),
])
def test_bad_regions_and_points(client, fields, code):
    r = search(client, **fields)
    assert r.status_code == 400 and r.get_json()["error"]["code"] == code


def test_click_an_object_segments_then_searches(client):
    body = search(client, point={"x": 676, "y": 130}).get_json()  # on the cup
    seg = body["query"]["segment"]
    box = seg["bbox"]
    assert box["x"] >= 440 and box["x"] + box["w"] <= 901 and 0.02 < seg["coverage"] < 0.5
    assert seg["mask"].startswith("data:image/png;base64,")
    mask = Image.open(io.BytesIO(base64.b64decode(seg["mask"].split(",", 1)[1])))
    assert mask.mode == "RGBA" and abs(mask.width / mask.height - 901 / 300) < 0.02
    assert body["results"][0]["path"] == "coffee.png" and "segment" in body["analysis"]["timings_ms"]
    r = client.post("/api/segment", data={"image": (io.BytesIO(collage()), "c.jpg"), "point": json.dumps({"x": 200, "y": 150})},
                    headers=csrf_headers(client), content_type="multipart/form-data")
    seg = r.get_json()
    assert r.status_code == 200 and seg["bbox"]["x"] + seg["bbox"]["w"] <= 460 and seg["image_size"] == [901, 300]
    r = client.post("/api/segment", data={"image": (io.BytesIO(collage()), "c.jpg")}, headers=csrf_headers(client),
                    content_type="multipart/form-data")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "missing_field"


def sketch_png(draw: bool) -> str:
    image = Image.new("RGBA", (400, 300), (255, 255, 255, 255))
    if draw:
        pen = ImageDraw.Draw(image)
        pen.ellipse((100, 60, 300, 240), outline=(0, 0, 0, 255), width=6)
        pen.line((120, 150, 280, 150), fill=(0, 0, 0, 255), width=6)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_sketches(client):
    r = client.post("/api/search", json={"sketch_base64": sketch_png(False)}, headers=csrf_headers(client))
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "empty_drawing"
    r = client.post("/api/search", json={"sketch_base64": sketch_png(True), "top_k": 3}, headers=csrf_headers(client))
    body = r.get_json()
    assert r.status_code == 200 and len(body["results"]) == 3 and body["query"]["mode"] == "sketch"


class ImageHost(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        routes = {"/photo.png": (200, "image/png", PHOTO), "/page": (200, "text/html", b"<html></html>"),
                  "/big.png": (200, "image/png", PHOTO * 3)}
        if self.path == "/hop":
            self.send_response(302)
            self.send_header("Location", "/photo.png")
            self.end_headers()
            return
        if self.path == "/to-metadata":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
            return
        status, ctype, body = routes.get(self.path, (404, "text/plain", b"missing"))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def host():
    with local_http_server(ImageHost) as url:
        yield url


def url_search(client, url):
    return client.post("/api/search", json={"url": url, "top_k": 2}, headers=csrf_headers(client))


def test_url_search_refuses_private_addresses_by_default(client, host):
    for url in (host + "/photo.png", host.replace("127.0.0.1", "localhost") + "/photo.png",
                "http://10.1.2.3/x.png", "http://[::1]/x.png", "http://169.254.169.254/latest/meta-data/"):
        r = url_search(client, url)
        assert r.status_code == 400 and r.get_json()["error"]["code"] == "url_not_allowed", url
    for url in ("file:///etc/passwd", "ftp://example.org/x.png", "not a url"):
        r = url_search(client, url)
        assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_field", url


def test_url_search_with_an_allow_list(gallery_dirs, tmp_path, weights_path, host):
    app = make_app(gallery_dirs, tmp_path, weights_path, URL_FETCH_ALLOW=["127.0.0.0/8"],
                   MAX_CONTENT_LENGTH=len(PHOTO) * 2)
    client = app.test_client()
    r = url_search(client, host + "/photo.png")
    assert r.status_code == 200 and r.get_json()["results"][0]["path"] == "astronaut.png"
    assert "fetch" in r.get_json()["analysis"]["timings_ms"]
    assert url_search(client, host + "/hop").get_json()["results"][0]["path"] == "astronaut.png"
    r = url_search(client, host + "/to-metadata")  # a redirect is checked like the first request
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "url_not_allowed"
    assert url_search(client, host + "/page").status_code == 415
    assert url_search(client, host + "/missing.png").status_code == 422
    assert url_search(client, host + "/big.png").status_code == 413
