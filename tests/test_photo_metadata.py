"""Photo metadata: EXIF written by Pillow into real photos comes back from the builder, the database and the
API; filters narrow searches and listings before the top-K and still return K when enough match; the
position is read and shown only with SHOW_GPS."""
import pytest
from PIL import ExifTags, Image

from app.services import engine as engine_module
from indexer.builder import build_gallery
from indexer.generations import load_index
from tests.helpers import database_id, database_urls, make_app, post_search
from tests.images import mvtb_photo, skimage_photo, sklearn_photo

# name, source photo, camera (make, model), taken, EXIF orientation
PHOTOS = [
    ("cat.jpg", skimage_photo("chelsea.png"), ("Canon", "Canon EOS 5D"), "2021:05:04 10:11:12", 6),
    ("coffee.jpg", skimage_photo("coffee.png"), ("Canon", "Canon EOS 5D"), "2021:07:01 08:00:00", 1),
    ("astronaut.jpg", skimage_photo("astronaut.png"), ("Canon", "Canon EOS 5D"), "2021:12:31 23:59:59", 1),
    ("rocket.jpg", skimage_photo("rocket.jpg"), ("Google", "Pixel 7"), "2023:03:10 12:00:00", 1),
    ("china.jpg", sklearn_photo("china.jpg"), ("Google", "Pixel 7"), "2023:08:15 18:30:00", 1),
    ("eiffel.jpg", mvtb_photo("eiffel-1.png"), ("Google", "Pixel 7"), "2023:09:01 09:00:00", 1),
]


def write_photo(path, source, camera, taken, orientation):
    exif = Image.Exif()
    exif[ExifTags.Base.Make], exif[ExifTags.Base.Model] = camera
    exif[ExifTags.Base.Orientation] = orientation
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    sub[ExifTags.Base.DateTimeOriginal] = taken
    sub[ExifTags.Base.ExposureTime] = 1 / 250
    sub[ExifTags.Base.FNumber] = 4.0
    sub[ExifTags.Base.ISOSpeedRatings] = 200
    sub[ExifTags.Base.FocalLength] = 35.0
    where = exif.get_ifd(ExifTags.IFD.GPSInfo)
    where[ExifTags.GPS.GPSLatitudeRef], where[ExifTags.GPS.GPSLatitude] = "N", (48.0, 51.0, 29.0)
    where[ExifTags.GPS.GPSLongitudeRef], where[ExifTags.GPS.GPSLongitude] = "E", (2.0, 17.0, 40.0)
    Image.open(source).convert("RGB").save(path, quality=92, exif=exif.tobytes())


@pytest.fixture
def photo_site(tmp_path, weights_path):
    """A gallery of photos with EXIF (and one PNG without), built."""
    root = tmp_path / "photos"
    gallery = root / "gallery"
    gallery.mkdir(parents=True)
    for name, source, camera, taken, orientation in PHOTOS:
        write_photo(gallery / name, source, camera, taken, orientation)
    Image.open(skimage_photo("camera.png")).save(gallery / "plain.png")
    build_gallery(str(gallery), str(root / "index"), weights_path, progress=False)
    return root


def test_exif_round_trip_through_builder_database_and_api(photo_site, tmp_path, weights_path):
    index = load_index(str(photo_site / "index"))
    cat = index.info(index.row_of_path("cat.jpg"))["meta"]
    source = Image.open(skimage_photo("chelsea.png"))
    # Orientation 6 turns the stored landscape picture upright: the shown picture is portrait.
    assert (cat["width"], cat["height"]) == (source.height, source.width) and cat["orientation"] == "portrait"
    assert cat["taken_at"] == "2021-05-04T10:11:12" and cat["time_source"] == "exif"
    assert cat["camera"] == "Canon EOS 5D" and cat["exposure"] == "1/250"
    assert (cat["aperture"], cat["iso"], cat["focal_length"]) == (4.0, 200, 35.0)
    assert "latitude" not in cat  # not read without SHOW_GPS
    plain = index.info(index.row_of_path("plain.png"))["meta"]
    assert plain["time_source"] == "file" and "camera" not in plain and plain["orientation"] == "square"  # 512×512

    app = make_app(photo_site, tmp_path, weights_path)
    from app.extensions import db
    from app.storage.models import GalleryImage
    with app.app_context():
        row = db.session.get(GalleryImage, int(index.ids[index.row_of_path("cat.jpg")]))
        assert row.camera == "Canon EOS 5D" and row.time_from_exif and row.taken_at.year == 2021
        assert (row.width, row.height, row.orientation, row.iso) == (source.height, source.width, "portrait", 200)
    client = app.test_client()
    item = next(i for i in client.get("/api/gallery").get_json()["items"] if i["path"] == "cat.jpg")
    assert item["meta"]["camera"] == "Canon EOS 5D"
    cameras = client.get("/api/gallery/cameras").get_json()["cameras"]
    assert cameras == [{"camera": "Canon EOS 5D", "count": 3}, {"camera": "Google Pixel 7", "count": 3}]


def test_position_only_with_show_gps(photo_site, tmp_path, weights_path):
    build_gallery(str(photo_site / "gallery"), str(photo_site / "index"), weights_path, progress=False,
                  backend={"SHOW_GPS": True})
    index = load_index(str(photo_site / "index"))
    meta = index.info(index.row_of_path("coffee.jpg"))["meta"]
    assert (meta["latitude"], meta["longitude"]) == (48.858056, 2.294444)
    data = (photo_site / "gallery" / "coffee.jpg").read_bytes()
    hidden = make_app(photo_site, tmp_path / "a", weights_path).test_client()
    assert "latitude" not in post_search(hidden, data, top_k="1").get_json()["results"][0]["meta"]
    shown = make_app(photo_site, tmp_path / "b", weights_path, SHOW_GPS=True).test_client()
    assert post_search(shown, data, top_k="1").get_json()["results"][0]["meta"]["latitude"] == 48.858056


@pytest.mark.parametrize("database", database_urls(), ids=database_id)
@pytest.mark.parametrize("exact", [True, False], ids=["exact-among-matches", "backend-over-fetch"])
def test_filters_apply_before_the_top_k(photo_site, tmp_path, weights_path, monkeypatch, exact, database):
    if not exact:
        monkeypatch.setattr(engine_module, "EXACT_FILTERED", 0)
    client = make_app(photo_site, tmp_path, weights_path, database).test_client()
    data = (photo_site / "gallery" / "rocket.jpg").read_bytes()
    everything = post_search(client, data, top_k="3").get_json()["results"]
    assert everything[0]["path"] == "rocket.jpg"

    canon = post_search(client, data, top_k="3", camera="canon eos 5d").get_json()
    assert [r["meta"]["camera"] for r in canon["results"]] == ["Canon EOS 5D"] * 3  # still K
    assert canon["query"]["filter"]["matching"] == 3
    dated = post_search(client, data, top_k="5", taken_after="2021-07-01", taken_before="2021-12-31").get_json()
    assert sorted(r["path"] for r in dated["results"]) == ["astronaut.jpg", "coffee.jpg"]
    upright = post_search(client, data, top_k="5", orientation="portrait").get_json()["results"]
    assert [r["path"] for r in upright] == ["cat.jpg"]
    big = post_search(client, data, top_k="10", min_megapixels="0.25").get_json()["results"]
    assert all(r["meta"]["width"] * r["meta"]["height"] >= 250_000 for r in big) and len(big) >= 2
    assert len(big) < len(post_search(client, data, top_k="10").get_json()["results"])
    assert post_search(client, data, top_k="5", camera="Leica").get_json()["results"] == []

    listing = client.get("/api/gallery?camera=Google%20Pixel%207&taken_after=2023-08-01").get_json()
    assert [i["path"] for i in listing["items"]] == ["china.jpg", "eiffel.jpg"] and listing["total"] == 2


@pytest.mark.parametrize("fields", [{"taken_after": "yesterday"}, {"orientation": "diagonal"},
                                    {"min_megapixels": "-1"}, {"min_megapixels": "lots"},
                                    {"taken_after": "2024-02-01", "taken_before": "2024-01-01"}])
def test_bad_filters_are_refused_clearly(photo_site, tmp_path, weights_path, fields):
    client = make_app(photo_site, tmp_path, weights_path).test_client()
    r = post_search(client, (photo_site / "gallery" / "rocket.jpg").read_bytes(), **fields)
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_field"
    assert client.get("/api/gallery", query_string=fields).status_code == 400


FILTERS = [{"camera": "canon eos 5d"}, {"camera": "CANON EOS 5D", "orientation": "landscape"},
           {"orientation": "portrait"}, {"orientation": "square"}, {"taken_after": "2021-07-01"},
           {"taken_before": "2021-12-31"}, {"taken_after": "2021-12-31", "taken_before": "2021-12-31"},
           {"min_megapixels": 0.25}, {"min_megapixels": 0}, {"camera": "Leica"},
           {"camera": "Google Pixel 7", "taken_after": "2023-08-01", "min_megapixels": 0.1}]


def test_a_filter_is_a_mask_over_the_index_rows_equal_to_the_tables_answer(photo_site, tmp_path, weights_path):
    """The mask (app.services.row_filters) lets through exactly the rows the gallery table's metadata columns
    match, and a filtered search ranks exactly among them, asking the database nothing about pictures."""
    from datetime import date, datetime, time

    from sqlalchemy import event, func, select

    from app.extensions import db
    from app.services.row_filters import row_mask
    from app.storage.models import GalleryImage
    from app.storage.photo_filters import PhotoFilter
    app = make_app(photo_site, tmp_path, weights_path)
    index = load_index(str(photo_site / "index"))
    table = GalleryImage.__table__.c
    for fields in FILTERS:
        f = PhotoFilter(**{k: date.fromisoformat(v) if k.startswith("taken") else v for k, v in fields.items()})
        query = select(table.id)
        if f.taken_after:
            query = query.where(table.taken_at >= datetime.combine(f.taken_after, time.min))
        if f.taken_before:
            query = query.where(table.taken_at <= datetime.combine(f.taken_before, time(23, 59, 59)))
        if f.camera:
            query = query.where(func.lower(table.camera) == f.camera.lower())
        if f.orientation:
            query = query.where(table.orientation == f.orientation)
        if f.min_megapixels is not None:
            query = query.where(table.width * table.height >= f.min_megapixels * 1e6)
        with app.app_context():
            expected = set(db.session.scalars(query))
        mask = row_mask(index, f)
        assert mask.dtype == bool and mask.shape == (len(index),)
        assert set(index.ids[mask].tolist()) == expected, fields

    client = app.test_client()
    rocket = int(index.ids[index.row_of_path("rocket.jpg")])
    seen = []
    with app.app_context():
        engine = db.engine
    record = lambda conn, cursor, statement, *rest: seen.append(statement.upper())  # noqa: E731
    event.listen(engine, "before_cursor_execute", record)
    try:
        from tests.helpers import csrf_headers
        found = client.post("/api/search", json={"gallery_id": rocket, "top_k": 10, "camera": "canon eos 5d"},
                            headers=csrf_headers(client)).get_json()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert not [s for s in seen if "GALLERY_IMAGES" in s], seen
    mask = row_mask(index, PhotoFilter(camera="Canon EOS 5D"))
    scores = index.features[mask] @ index.vector(index.row_of_path("rocket.jpg"))
    order = sorted(range(len(scores)), key=lambda j: -scores[j])
    assert [r["id"] for r in found["results"]] == [int(index.ids[mask][j]) for j in order]
    assert found["query"]["filter"]["matching"] == 3
    # Over a generation with a segment and a dead row, the mask is over its live rows, in their order.
    import numpy as np

    from indexer.generations import append_change
    moved = index.vector(index.row_of_path("cat.jpg"))[None]
    facts = {"size": 1, "mtime_ns": 1, "sha256": "1" * 64,
             "meta": {"camera": "Canon EOS 5D", "width": 10, "height": 20, "orientation": "portrait"}}
    append_change(str(photo_site / "index"), ["new/cat.jpg"], moved, {"new/cat.jpg": facts}, remove=["coffee.jpg"])
    changed = load_index(str(photo_site / "index"))
    mask = row_mask(changed, PhotoFilter(camera="canon eos 5d"))
    assert mask.shape == (len(changed),)
    assert sorted(np.asarray(changed.paths)[mask].tolist()) == ["astronaut.jpg", "cat.jpg", "new/cat.jpg"]
