"""Colour-aware ranking: histograms made by the builder beside the descriptors, and a blend that moves
pictures of the query's colours up, on a controlled pair."""
import io

import numpy as np
from PIL import Image

from indexer.builder import build_gallery
from indexer.colour import DIM, colour_histograms
from indexer.generations import load_index
from tests.helpers import csrf_headers, make_app
from tests.images import skimage_photo


def hue_shifted(path: str, shift: int) -> Image.Image:
    """The same picture with every hue turned by ``shift``/256 of the circle (its shapes untouched)."""
    h, s, v = Image.open(path).convert("RGB").convert("HSV").split()
    h = h.point(lambda x: (x + shift) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def test_histograms_are_unit_rows_that_see_colour_not_shape():
    from dinov2_numpy import preprocess
    cat = preprocess(skimage_photo("chelsea.png"))
    blue_cat = preprocess(hue_shifted(skimage_photo("chelsea.png"), 128))
    coffee = preprocess(skimage_photo("coffee.png"))
    h = colour_histograms(np.stack([cat, blue_cat, coffee]))
    assert h.shape == (3, DIM) and np.allclose(np.linalg.norm(h, axis=1), 1, atol=1e-5)
    assert h[0] @ h[2] > h[0] @ h[1]  # the orange coffee is closer in colour than the same cat in blue


def test_the_blend_moves_the_query_colours_up(tmp_path, weights_path):
    root = tmp_path / "site"
    gallery = root / "gallery"
    gallery.mkdir(parents=True)
    hue_shifted(skimage_photo("chelsea.png"), 128).save(gallery / "blue-cat.png")
    Image.open(skimage_photo("coffee.png")).save(gallery / "coffee.png")
    Image.open(skimage_photo("camera.png")).convert("RGB").save(gallery / "camera.png")
    build_gallery(str(gallery), str(root / "index"), weights_path, progress=False)
    assert load_index(str(root / "index")).has_colours
    client = make_app(root, tmp_path, weights_path).test_client()
    query = io.BytesIO(open(skimage_photo("chelsea.png"), "rb").read()).getvalue()

    def ranked(**fields):
        r = client.post("/api/search", data={"image": (io.BytesIO(query), "cat.png"), "top_k": "3", **fields},
                        headers=csrf_headers(client), content_type="multipart/form-data")
        assert r.status_code == 200, r.get_json()
        return r.get_json()["results"]

    plain = ranked()
    assert plain[0]["path"] == "blue-cat.png" and "scores" not in plain[0]  # the same cat, whatever its colour
    assert ranked(color_weight="0")[0]["path"] == "blue-cat.png"
    blended = ranked(color_weight="0.8")
    by_path = {r["path"]: r for r in blended}
    assert blended[0]["path"] == "coffee.png"
    assert by_path["coffee.png"]["scores"]["colour"] > by_path["blue-cat.png"]["scores"]["colour"]
    visual = {r["path"]: r["score"] for r in plain}
    for r in blended:  # the score is the stated mix of the two parts, and the visual part is unchanged
        assert abs(r["scores"]["visual"] - visual[r["path"]]) < 1e-5
        assert abs(r["score"] - (0.2 * r["scores"]["visual"] + 0.8 * r["scores"]["colour"])) < 1e-5
    r = client.post("/api/search", data={"image": (io.BytesIO(query), "cat.png"), "color_weight": "2"},
                    headers=csrf_headers(client), content_type="multipart/form-data")
    assert r.status_code == 400 and "color_weight" in r.get_json()["error"]["message"]
