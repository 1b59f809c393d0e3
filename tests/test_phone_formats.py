"""Phone and modern formats: HEIC (through pillow-heif) and AVIF go through the build, search by upload and
by URL, thumbnails, and admin uploads, like any other picture."""
import io
import shutil

import pytest
from PIL import ExifTags, Image

from indexer.builder import build_gallery
from indexer.generations import load_index
from tests.helpers import (
    csrf_headers,
    image_handler,
    local_http_server,
    make_app,
    post_search,
    sign_up,
)
from tests.images import skimage_photo, sklearn_photo


def encoded(path, fmt, scale=1.0, camera=None):
    """A real photo in ``fmt``; with ``camera`` (make, model), EXIF naming it and a capture time."""
    image = Image.open(path).convert("RGB")
    image = image.resize((int(image.width * scale), int(image.height * scale)))
    buf = io.BytesIO()
    extra = {}
    if camera is not None:
        exif = Image.Exif()
        exif[ExifTags.Base.Make], exif[ExifTags.Base.Model] = camera
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "2024:06:30 17:45:00"
        extra["exif"] = exif.tobytes()
    image.save(buf, fmt, quality=80, **extra)
    return buf.getvalue()


@pytest.fixture(scope="module")
def site(tmp_path_factory, weights_path):
    root = tmp_path_factory.mktemp("phone")
    gallery = root / "gallery"
    gallery.mkdir()
    (gallery / "astronaut.heic").write_bytes(encoded(skimage_photo("astronaut.png"), "HEIF", camera=("Apple", "iPhone 15")))
    (gallery / "coffee.avif").write_bytes(encoded(skimage_photo("coffee.png"), "AVIF", camera=("Google", "Pixel 8")))
    shutil.copy(sklearn_photo("china.jpg"), gallery)
    report = build_gallery(str(gallery), str(root / "index"), weights_path, progress=False)
    assert report.images == 3 and not report.skipped
    return root


def search(client, data, name):
    """The answer to a search with ``data`` uploaded as ``name``, which must succeed."""
    r = post_search(client, data, name, top_k="2")
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def test_heic_and_avif_build_search_and_thumbnail(site, tmp_path, weights_path):
    index = load_index(str(site / "index"))
    assert sorted(index.paths) == ["astronaut.heic", "china.jpg", "coffee.avif"]
    for path, camera in (("astronaut.heic", "Apple iPhone 15"), ("coffee.avif", "Google Pixel 8")):
        meta = index.info(index.row_of_path(path))["meta"]  # EXIF is read from phone formats too
        assert meta["camera"] == camera and meta["taken_at"] == "2024-06-30T17:45:00" and meta["time_source"] == "exif"
    client = make_app(site, tmp_path, weights_path).test_client()
    body = search(client, encoded(skimage_photo("astronaut.png"), "HEIF", 0.5), "phone.heic")
    assert body["results"][0]["path"] == "astronaut.heic" and body["query"]["format"] == "heic"
    body = search(client, encoded(skimage_photo("coffee.png"), "AVIF", 0.5), "q.avif")
    assert body["results"][0]["path"] == "coffee.avif" and body["results"][0]["score"] > 0.9
    for path in ("astronaut.heic", "coffee.avif"):
        thumb = client.get(f"/thumbs/{path}")
        assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg"
        assert Image.open(io.BytesIO(thumb.data)).size[0] <= 320


def test_heic_by_url_and_as_an_admin_upload(site, tmp_path, weights_path):
    heic = encoded(skimage_photo("astronaut.png"), "HEIF", 0.7)


    copy = tmp_path / "site"
    shutil.copytree(site, copy, symlinks=True)
    app = make_app(copy, tmp_path, weights_path, URL_FETCH_ALLOW=["127.0.0.0/8"])
    client = app.test_client()
    with local_http_server(image_handler(heic, "image/heic")) as base:
        r = client.post("/api/search", json={"url": base + "/photo.heic"}, headers=csrf_headers(client))
    assert r.status_code == 200 and r.get_json()["results"][0]["path"] == "astronaut.heic"
    sign_up(client, "admin@example.com")
    r = client.post("/api/admin/images", data={"images": [(io.BytesIO(encoded(skimage_photo("rocket.jpg"), "HEIF")),
                                                           "IMG_0001.HEIC")]},
                    headers=csrf_headers(client), content_type="multipart/form-data")
    assert r.status_code == 201 and r.get_json()["added"][0]["path"].endswith(".heic")
