"""Camera files in the product: RAW files (real DNGs made from the PyPI photos, with and without a preview)
are indexed, searched, shown as JPEG thumbnails and described by their metadata; a corrupt one is skipped
with its reason; camera-size JPEGs are decoded reduced without changing what the model sees."""
import io
import shutil

import numpy as np
import pytest
from PIL import Image

from dinov2_numpy.descriptor import descriptor_of, prepare
from indexer import camera_files as cf
from indexer.builder import build_gallery
from indexer.decode import decode
from indexer.embedding import DECODE_SHORTEST_SIDE, embed_pixels
from indexer.generations import load_index
from tests.helpers import make_app, post_search, wait_until
from tests.images import mvtb_photo, skimage_photo, sklearn_photo

SHOT = cf.Capture(make="Acme", model="Acme R24", lens="Acme 35mm F1.8", taken="2024:06:30 17:45:00",
                  exposure=(1, 250), f_number=(28, 10), iso=200, focal_length=(35, 1))


@pytest.fixture(scope="module")
def raw_site(tmp_path_factory, weights_path):
    """A gallery of RAW files (a preview, none, a small one, one turned by its flag) beside ordinary photos."""
    root = tmp_path_factory.mktemp("raw-site")
    gallery = root / "gallery"
    gallery.mkdir()
    for name in ("coffee.png", "camera.png"):
        shutil.copy(skimage_photo(name), gallery / name)
    cf.write_dng(cf.camera_size(Image.open(skimage_photo("chelsea.png")), 2), str(gallery / "cat.dng"), "full", capture=SHOT)
    cf.write_dng(cf.camera_size(Image.open(sklearn_photo("china.jpg")), 2), str(gallery / "temple.dng"), None, capture=SHOT)
    cf.write_dng(cf.camera_size(Image.open(skimage_photo("astronaut.png")), 2), str(gallery / "small-preview.dng"),
                 (160, 160), capture=SHOT)
    # a landscape mosaic whose flag (EXIF orientation 6) says the camera was held upright: shown portrait
    tower = cf.camera_size(Image.open(mvtb_photo("eiffel-1.png")), 2)
    cf.write_dng(tower, str(gallery / "turned.dng"), "full", capture=cf.Capture(orientation=6))
    data = (gallery / "cat.dng").read_bytes()
    (gallery / "broken.dng").write_bytes(data[: len(data) // 3])
    report = build_gallery(str(gallery), str(root / "index"), weights_path, progress=False)
    return root, report


def test_raw_files_are_indexed_and_a_corrupt_one_is_skipped(raw_site):
    root, report = raw_site
    paths = load_index(str(root / "index")).paths
    assert {"cat.dng", "temple.dng", "small-preview.dng", "turned.dng"} <= set(paths)
    reasons = {s.path: s.reason for s in report.skipped}
    assert list(reasons) == ["broken.dng"] and reasons["broken.dng"]
    # the small preview (160 px) is too small for the model: that file and the one without are demosaiced
    assert report.decoded == {"raw preview": 2, "raw demosaic": 2, "full": 2}
    assert "read as: 2 full, 2 raw demosaic, 2 raw preview" in report.summary()


def test_a_raw_upload_finds_itself_and_its_metadata_and_thumbnail(raw_site, tmp_path, weights_path):
    root, _ = raw_site
    client = make_app(root, tmp_path, weights_path).test_client()
    for name in ("cat.dng", "temple.dng", "turned.dng"):
        r = post_search(client, (root / "gallery" / name).read_bytes(), name="photo.dng")
        body = r.get_json()
        assert r.status_code == 200, body
        assert body["results"][0]["path"] == name and body["results"][0]["score"] > 0.999
        assert body["query"]["format"] == "dng"
    meta = {i["path"]: i["meta"] for i in client.get("/api/gallery?per_page=50").get_json()["items"]}
    cat = meta["cat.dng"]
    assert (cat["camera"], cat["lens"], cat["iso"], cat["exposure"], cat["aperture"]) == \
        ("Acme R24", "Acme 35mm F1.8", 200, "1/250", 2.8)
    assert cat["taken_at"] == "2024-06-30T17:45:00" and cat["time_source"] == "exif"
    turned = meta["turned.dng"]
    assert turned["orientation"] == "portrait" and turned["width"] < turned["height"]  # from the RAW's flag
    r = client.get("/thumbs/turned.dng")
    assert r.status_code == 200 and r.mimetype == "image/jpeg"
    thumb = Image.open(io.BytesIO(r.data))
    assert thumb.format == "JPEG" and thumb.height == 320 and thumb.width < thumb.height


def test_preview_and_demosaic_describe_a_raw_file_alike(model, tmp_path):
    """The two paths a RAW file can take give nearly the same descriptor (figures in docs/using.md)."""
    photo = cf.camera_size(Image.open(sklearn_photo("china.jpg")), 2)
    cf.write_dng(photo, str(tmp_path / "with.dng"), "full", capture=SHOT)
    with_preview = decode(str(tmp_path / "with.dng"), None, DECODE_SHORTEST_SIDE)
    demosaic = decode(str(tmp_path / "with.dng"), None, 10**6)  # no preview is that large: demosaiced
    assert (with_preview.source, demosaic.source) == ("raw preview", "raw demosaic")
    descriptor = descriptor_of(model)
    a, b = (embed_pixels(model, prepare(p.image, descriptor)[None])[0] for p in (with_preview, demosaic))
    assert float(a @ b) > 0.95


@pytest.mark.slow
def test_camera_size_jpegs_decoded_reduced_describe_the_same_picture(model, tmp_path):
    descriptor = descriptor_of(model)
    for path in (skimage_photo("chelsea.png"), sklearn_photo("china.jpg"), mvtb_photo("eiffel-1.png")):
        buf = io.BytesIO()
        cf.camera_size(Image.open(path), 24).save(buf, "JPEG", quality=92)
        reduced = decode(buf.getvalue(), None, DECODE_SHORTEST_SIDE)
        full = decode(buf.getvalue(), None)
        assert min(reduced.image.size) >= DECODE_SHORTEST_SIDE and reduced.image.width == -(-full.image.width // 4)
        assert reduced.full_size == full.image.size
        a, b = (embed_pixels(model, prepare(p.image, descriptor)[None])[0] for p in (reduced, full))
        assert float(a @ b) >= 0.995, path


def test_a_camera_size_query_holds_only_the_pixels_it_decodes(raw_site, tmp_path, weights_path):
    """A 24 MP JPEG searched whole is decoded at 1/4 scale: it reserves that much of the pixel budget, so a
    budget busy with other pictures still has room for it; a region of it needs the full picture."""
    root, _ = raw_site
    app = make_app(root, tmp_path, weights_path, PIXEL_BUDGET=8_000_000)
    client = app.test_client()
    budget = app.extensions["pixel_budget"]
    budget.wait_s = 0.2
    buf = io.BytesIO()
    cf.camera_size(Image.open(sklearn_photo("china.jpg")), 24).save(buf, "JPEG", quality=92)
    with budget.hold(budget.limit - 3_000_000):  # other requests' pictures hold most of it
        whole = post_search(client, buf.getvalue(), top_k=1)
        assert whole.status_code == 200, whole.get_json()
        assert budget.stats()["peak"] <= budget.limit - 3_000_000 + 1_600_000
        region = post_search(client, buf.getvalue(), region={"x": 0, "y": 0, "w": 900, "h": 900})
        assert region.status_code == 503 and region.headers["Retry-After"] == "2"


def test_a_raw_and_jpeg_pair_is_one_picture(tmp_path, weights_path):
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    photo = cf.camera_size(Image.open(skimage_photo("chelsea.png")), 1)
    cf.write_dng(photo, str(gallery / "IMG_0001.DNG"), "full", capture=SHOT)
    cf.write_jpeg(photo, str(gallery / "IMG_0001.JPG"), capture=SHOT)
    cf.write_dng(cf.camera_size(Image.open(sklearn_photo("china.jpg")), 1), str(gallery / "alone.dng"), "full")
    shutil.copy(skimage_photo("coffee.png"), gallery / "coffee.png")
    report = build_gallery(str(gallery), str(tmp_path / "index"), weights_path, progress=False)
    assert sorted(load_index(str(tmp_path / "index")).paths) == ["IMG_0001.JPG", "alone.dng", "coffee.png"]
    assert not report.skipped and not report.duplicates  # the RAW of a pair is neither a failure nor a copy
    app = make_app(tmp_path, tmp_path / "app", weights_path)
    client = app.test_client()
    from tests.helpers import csrf_headers, sign_up
    sign_up(client, "admin@example.com")
    status = client.get("/api/admin/status").get_json()
    assert status["drift"]["unindexed"] == [] and status["failed"] == []
    r = wait_until(lambda: (r := client.get("/api/duplicates")).status_code == 200 and r, "the duplicates")
    assert r.get_json()["groups"] == []
    from indexer.ids import image_id
    r = client.delete("/api/admin/images", json={"ids": [image_id("IMG_0001.JPG")]}, headers=csrf_headers(client))
    assert r.status_code == 200 and r.get_json()["deleted"] == ["IMG_0001.JPG"]
    assert sorted(p.name for p in gallery.iterdir() if not p.name.startswith(".")) == ["alone.dng", "coffee.png"]
