"""Why it matched (POST /api/explain): the correspondences are geometrically right on real photos and their
edits (a mirrored copy, a centre crop, a region, a picture against itself), and the route is bounded and
refuses bad input as a search does."""
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, ImageOps

from app.extensions import engine
from tests.helpers import csrf_headers, make_app
from tests.images import mvtb_photo, skimage_photo, sklearn_photo

PHOTOS = {"chelsea.png": skimage_photo("chelsea.png"), "astronaut.png": skimage_photo("astronaut.png"),
          "coffee.png": skimage_photo("coffee.png"), "sub/china.jpg": sklearn_photo("china.jpg"),
          "sub/eiffel.png": mvtb_photo("eiffel-1.png")}


@pytest.fixture
def app(gallery_dirs, tmp_path, weights_path):
    """SQLite only: an explanation reads no table (the search route it shares its checks with runs on all three
    databases), so the geometry need not be checked three times."""
    return make_app(gallery_dirs, tmp_path, weights_path)


def gallery_id(app, path: str) -> int:
    with app.app_context():
        index = engine().index()
        return int(index.ids[index.row_of_path(path)])


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def photo(path: str) -> Image.Image:
    return Image.open(PHOTOS[path]).convert("RGB")


def explain(client, image: bytes | None, result_id, headers=None, **fields):
    """``POST /api/explain`` with ``image`` uploaded (if any) and ``fields`` beside it."""
    import json
    form = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in fields.items()}
    if result_id is not None:
        form["gallery_id"] = str(result_id)
    if image is not None:
        form["image"] = (io.BytesIO(image), "query.png")
    return client.post("/api/explain", data=form, headers=csrf_headers(client) if headers is None else headers,
                       content_type="multipart/form-data")


def points(body, side: str) -> np.ndarray:
    return np.array([[p[side]["x"], p[side]["y"]] for p in body["pairs"]])


def test_a_picture_against_itself_is_the_identity(app, client):
    whole = app.extensions["engine"].descriptor.preprocessing == "whole"
    target = gallery_id(app, "chelsea.png")
    for body in (explain(client, open(PHOTOS["chelsea.png"], "rb").read(), target).get_json(),
                 client.post("/api/explain", json={"query_gallery_id": target, "gallery_id": target},
                             headers=csrf_headers(client)).get_json()):
        heat = body["query_heat"]
        assert len(body["pairs"]) == heat["rows"] * heat["cols"]  # every patch is its own best partner
        assert np.array_equal(points(body, "query"), points(body, "result"))
        assert all(p["score"] == 1.0 and p["similarity"] > 0.999 for p in body["pairs"])
        assert body["query"]["image_size"] == [451, 300]
        if whole:  # the whole 451 x 300 picture, 20 x 13 patches of 22.6 x 23.1 px
            grid, box, across, down = (13, 20), {"x": 0.0, "y": 0.0, "w": 451.0, "h": 300.0}, 451 / 20, 300 / 13
        else:  # its centre crop: 263 px square, 16 patches of 16.4 px
            grid, box, across, down = (16, 16), {"x": 94.0, "y": 18.8, "w": 263.1, "h": 262.5}, 16.44, 16.41
        assert (heat["rows"], heat["cols"]) == grid and heat["box"] == box
        assert body["query"]["patch_size"] == pytest.approx((across * down) ** 0.5, abs=0.1)
        assert np.allclose(heat["values"], 1.0, atol=1e-3)
        xs = points(body, "query")[:, 0]
        assert xs.min() == pytest.approx(box["x"] + across / 2, abs=0.2)
        assert xs.max() == pytest.approx(box["x"] + box["w"] - across / 2, abs=0.2)


@pytest.mark.parametrize("path", PHOTOS)
def test_a_mirrored_copy_matches_at_mirrored_x(app, client, path):
    original = photo(path)
    body = explain(client, png(ImageOps.mirror(original)), gallery_id(app, path)).get_json()
    q, r = points(body, "query"), points(body, "result")
    assert len(q) >= 60
    assert np.corrcoef(q[:, 0], r[:, 0])[0, 1] <= -0.9
    assert np.corrcoef(q[:, 1], r[:, 1])[0, 1] >= 0.9  # rows stay rows
    mirrored_error = np.abs(q[:, 0] - (original.width - r[:, 0]))
    assert np.median(mirrored_error) < body["query"]["patch_size"]


@pytest.mark.parametrize("path", ["chelsea.png", "astronaut.png", "coffee.png"])
@pytest.mark.parametrize("fraction", [0.6, 0.75])
def test_a_centre_crop_matches_where_the_crop_came_from(app, client, path, fraction):
    original = photo(path)
    w, h = int(original.width * fraction), int(original.height * fraction)
    x0, y0 = (original.width - w) // 2, (original.height - h) // 2
    body = explain(client, png(original.crop((x0, y0, x0 + w, y0 + h))), gallery_id(app, path)).get_json()
    q, r = points(body, "query"), points(body, "result")
    assert len(q) >= 15
    error = np.linalg.norm(q + [x0, y0] - r, axis=1)  # the crop's pixels are the original's, moved
    patch = body["query"]["patch_size"]
    heat = body["query_heat"]
    if app.extensions["engine"].descriptor.preprocessing == "whole":  # the whole crop, in rows x cols patches
        assert heat["box"] == {"x": 0.0, "y": 0.0, "w": float(w), "h": float(h)}
        assert patch == pytest.approx((w / heat["cols"] * h / heat["rows"]) ** 0.5, rel=0.01)
    else:  # its centre crop: 14 model pixels of 224 after the shortest side went to 256
        assert patch == pytest.approx(14 * min(w, h) / 256, rel=0.01)
    assert np.median(error) < patch


def test_a_region_is_placed_in_the_whole_picture(app, client):
    """The region's pairs are in the uploaded picture's pixels, not the box's: against the same photo, each
    lands where it is."""
    original = photo("astronaut.png")
    region = {"x": 120, "y": 60, "w": 300, "h": 300}
    body = explain(client, png(original), gallery_id(app, "astronaut.png"), region=region).get_json()
    q, r = points(body, "query"), points(body, "result")
    assert len(q) >= 40
    assert q[:, 0].min() >= region["x"] and q[:, 0].max() <= region["x"] + region["w"]
    assert np.median(np.linalg.norm(q - r, axis=1)) < body["query"]["patch_size"]


def test_a_large_jpeg_decoded_reduced_is_answered_in_its_full_pixels(app, client):
    """A 4x upscaled JPEG is decoded at a quarter of its size (as the builder decodes it); its pairs are
    still in its own full-size pixels."""
    big = photo("chelsea.png").resize((451 * 4, 300 * 4), Image.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=92)
    body = explain(client, buf.getvalue(), gallery_id(app, "chelsea.png")).get_json()
    assert body["query"]["image_size"] == [1804, 1200]
    q, r = points(body, "query"), points(body, "result")
    assert len(q) >= 100 and np.median(np.linalg.norm(q / 4 - r, axis=1)) < body["result"]["patch_size"]


def test_the_answer_shape_and_timings(app, client):
    """Another shot of the Eiffel tower against the gallery's: many pairs, ranked; a cat against a cup: few."""
    from tests.images import mvtb_photo
    body = explain(client, open(mvtb_photo("eiffel-2.png"), "rb").read(), gallery_id(app, "sub/eiffel.png")).get_json()
    assert body["result"]["path"] == "sub/eiffel.png" and body["result"]["url"].endswith("/sub/eiffel.png")
    assert body["result"]["thumbnail_url"].startswith("/thumbs/")
    scores = [p["score"] for p in body["pairs"]]
    assert 40 <= len(scores) <= 200
    assert scores == sorted(scores, reverse=True) and all(0.1 <= s <= 1 for s in scores)
    assert all(p["similarity"] >= 0.5 for p in body["pairs"])
    width, height = body["result"]["image_size"]
    assert all(0 <= p["result"]["x"] <= width and 0 <= p["result"]["y"] <= height for p in body["pairs"])
    assert {"decode", "decode_result", "preprocess", "queue", "inference", "match", "total"} <= set(body["timings_ms"])
    assert body["batch_size"] >= 1  # one pass for both where their model inputs have one shape
    for side in ("query_heat", "result_heat"):
        values = np.array(body[side]["values"])
        assert values.shape == (body[side]["rows"], body[side]["cols"]) and (values <= 1.0).all() and (values >= -1.0).all()
    unrelated = explain(client, png(photo("coffee.png")), gallery_id(app, "chelsea.png")).get_json()
    assert len(unrelated["pairs"]) < 20
    assert np.mean(unrelated["query_heat"]["values"]) < np.mean(body["query_heat"]["values"]) - 0.1


def test_bad_input_is_refused_like_a_search(app, client):
    image = png(photo("coffee.png"))
    r = explain(client, image, 999_999)
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    r = client.post("/api/explain", json={"query_gallery_id": 999_999, "gallery_id": gallery_id(app, "coffee.png")},
                    headers=csrf_headers(client))
    assert r.status_code == 404
    r = explain(client, None, gallery_id(app, "coffee.png"))
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "missing_field"
    r = explain(client, image, None)
    assert r.status_code == 400 and "gallery_id" in r.get_json()["error"]["message"]
    r = explain(client, image, "seven")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_field"
    r = explain(client, b"not a picture", gallery_id(app, "coffee.png"))
    assert r.status_code == 415
    r = explain(client, image, gallery_id(app, "coffee.png"), region={"x": 900, "y": 0, "w": 10, "h": 10})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_region"
    r = explain(client, image, gallery_id(app, "coffee.png"), headers={})
    assert r.status_code == 400  # no CSRF token


def test_pixel_limit_and_overload(gallery_dirs, tmp_path, weights_path):
    app = make_app(gallery_dirs, tmp_path, weights_path, MAX_IMAGE_PIXELS=300_000, QUEUE_LIMIT=1)
    client = app.test_client()
    headers = csrf_headers(client)
    target = gallery_id(app, "coffee.png")
    r = explain(client, png(photo("coffee.png").resize((700, 500))), target, headers=headers)
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "image_too_large"
    small = png(photo("coffee.png").resize((300, 200)))
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda _: explain(client, small, target, headers=headers), range(6)))
    assert {r.status_code for r in statuses} == {200, 503}
    assert all(int(r.headers["Retry-After"]) >= 1 for r in statuses if r.status_code == 503)


def test_the_command_line_gives_the_api_pairs_and_draws_them(gallery_dirs, app, client, tmp_path, weights_path):
    import json
    import os
    import subprocess
    import sys
    query = tmp_path / "mirrored.png"
    ImageOps.mirror(photo("sub/china.jpg")).save(query)
    env = dict(os.environ, GALLERY_DIR=str(gallery_dirs / "gallery"), INDEX_DIR=str(gallery_dirs / "index"),
               DINOV2_WEIGHTS=weights_path)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "pairs.png"
    run = subprocess.run([sys.executable, "-m", "app.cli", "explain", str(query), "sub/china.jpg", "--json",
                          "--out", str(out), "--pairs", "20"], cwd=root, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    from_cli = json.loads(run.stdout)
    from_api = explain(client, query.read_bytes(), gallery_id(app, "sub/china.jpg")).get_json()
    # The same pairs; their scores agree to the float rounding of two processes' forward passes.
    joined = lambda body: sorted((p["query"]["x"], p["query"]["y"], p["result"]["x"], p["result"]["y"])  # noqa: E731
                                 for p in body["pairs"])
    assert joined(from_cli) == joined(from_api) and len(from_cli["pairs"]) > 50
    assert np.allclose([p["score"] for p in from_cli["pairs"]], [p["score"] for p in from_api["pairs"]], atol=2e-3)
    for heat in ("query_heat", "result_heat"):
        assert from_cli[heat]["box"] == from_api[heat]["box"]
        assert np.allclose(from_cli[heat]["values"], from_api[heat]["values"], atol=2e-3)
    sheet = Image.open(out).convert("RGB")
    assert sheet.height == 480 and sheet.width == 2 * 719 + 24  # two 640 x 427 pictures at 480 px, and the gap
    # the lines are drawn: the gap between the pictures, white before, now holds their colours
    gap = np.asarray(sheet)[:, 719:719 + 24]
    assert (gap.min(axis=2) < 200).sum() > 20 * 10
    missing = subprocess.run([sys.executable, "-m", "app.cli", "explain", str(query), "nowhere.jpg"], cwd=root,
                             env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and "nowhere.jpg" in missing.stderr


def test_every_query_mode_is_explained(gallery_dirs, tmp_path, weights_path):
    """An object under a click (its pairs start inside the object, in the collage's pixels), a drawing, a URL and
    base64 data: the same answer shape, each in its own picture's pixels."""
    import base64

    from tests.helpers import image_handler, local_http_server
    from tests.test_query_modes import collage, sketch_png
    app = make_app(gallery_dirs, tmp_path, weights_path, URL_FETCH_ALLOW=["127.0.0.0/8"])
    client = app.test_client()
    headers = csrf_headers(client)
    coffee = gallery_id(app, "coffee.png")
    body = explain(client, collage(), coffee, headers=headers, point={"x": 676, "y": 130}).get_json()
    box = body["query"]["segment"]["bbox"]
    q = points(body, "query")
    assert body["query"]["image_size"] == [901, 300] and len(q) >= 20
    assert (q[:, 0] >= box["x"]).all() and (q[:, 0] <= box["x"] + box["w"]).all() and box["x"] >= 440
    assert "segment" in body["timings_ms"]
    sketch = client.post("/api/explain", json={"sketch_base64": sketch_png(True), "gallery_id": coffee},
                         headers=headers).get_json()
    assert sketch["query"]["mode"] == "sketch" and sketch["query"]["image_size"] == [400, 300]
    assert all(0 <= p["query"]["x"] <= 400 and 0 <= p["query"]["y"] <= 300 for p in sketch["pairs"])
    blank = client.post("/api/explain", json={"sketch_base64": sketch_png(False), "gallery_id": coffee}, headers=headers)
    assert blank.status_code == 400 and blank.get_json()["error"]["code"] == "empty_drawing"
    picture = png(photo("coffee.png"))
    data = client.post("/api/explain", json={"image_base64": base64.b64encode(picture).decode(), "gallery_id": coffee},
                       headers=headers).get_json()
    with local_http_server(image_handler(picture, "image/png")) as url:
        fetched = client.post("/api/explain", json={"url": url + "/coffee.png", "gallery_id": coffee},
                              headers=headers).get_json()
    for body in (data, fetched):
        grid = body["query_heat"]["rows"] * body["query_heat"]["cols"]
        assert len(body["pairs"]) == grid and np.array_equal(points(body, "query"), points(body, "result"))
    assert "fetch" in fetched["timings_ms"] and fetched["query"]["mode"] == "url"


def test_an_explanation_shares_one_pass_and_keeps_nobody_waiting(gallery_dirs, tmp_path, weights_path):
    """Its two pictures ride in one forward pass; after it, the queue does not wait for company that is not
    coming (the batch of two held one request, not two; the next explanation of that result runs its query
    alone, since the result's tokens are remembered)."""
    app = make_app(gallery_dirs, tmp_path, weights_path, INFER_MAX_WAIT_MS=3000)
    client = app.test_client()
    headers = csrf_headers(client)
    target = gallery_id(app, "coffee.png")
    original = photo("coffee.png")  # edits of the result's shape: one model input size for both
    queries = [png(ImageOps.mirror(original)), png(ImageOps.flip(original))]
    answers = [explain(client, query, target, headers=headers).get_json() for query in queries]
    assert [(a["pictures_run"], a["batch_size"]) for a in answers] == [(2, 2), (1, 1)]
    assert answers[1]["timings_ms"]["queue"] < 1000
    with app.app_context():
        stats = engine().queue.stats()
    assert stats["batches"] == 2 and stats["jobs"] == 3


def test_why_after_a_search_runs_the_model_once(gallery_dirs, tmp_path, weights_path):
    """The search kept its query's patch tokens: explaining a result runs only the result, then nothing, and
    gives the pairs a cold explanation gives."""
    cold = make_app(gallery_dirs, tmp_path / "cold", weights_path)
    app = make_app(gallery_dirs, tmp_path / "warm", weights_path)
    query = png(ImageOps.mirror(photo("chelsea.png")))
    client = app.test_client()
    headers = csrf_headers(client)
    found = client.post("/api/search", data={"image": (io.BytesIO(query), "q.png")}, headers=headers,
                        content_type="multipart/form-data").get_json()["results"]
    target = next(r["id"] for r in found if r["path"] == "chelsea.png")
    after_search, again = (explain(client, query, target, headers=headers).get_json() for _ in range(2))
    reference = explain(cold.test_client(), query, target).get_json()
    assert reference["pictures_run"] == 2
    assert (after_search["pictures_run"], again["pictures_run"]) == (1, 0)
    assert again["timings_ms"]["inference"] == 0.0
    for body in (after_search, again):
        assert body["pairs"] == reference["pairs"] and body["query_heat"] == reference["query_heat"]


def test_pairs_that_lose_their_neighbourhood_are_dropped():
    """A mirrored grid of pairs keeps every pair, ties in distance and all; pairs sent to the far side of
    the picture (a repeated texture's false partners) are dropped."""
    from indexer.correspondence import locally_consistent
    rows, cols = np.divmod(np.arange(16 * 16), 16)
    query = np.stack([cols, rows], axis=1).astype(float)
    result = np.stack([15 - cols, rows], axis=1).astype(float)
    assert np.array_equal(locally_consistent(query, result), np.arange(256))
    wrong = np.random.default_rng(0).choice(256, 12, replace=False)
    result[wrong] = query[wrong]  # matched at the same x: on the wrong side unless near the middle
    kept = locally_consistent(query, result)
    far = wrong[np.abs(query[wrong, 0] - 7.5) > 2]
    assert not set(far) & set(kept) and len(kept) >= 256 - len(wrong)
