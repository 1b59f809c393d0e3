"""Command-line search and the retrieval-quality evaluation."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from indexer.builder import build_gallery
from indexer.evaluate import labelled_images, make_near_duplicate_set, retrieval_metrics
from tests.images import mvtb_photo, skimage_photo, sklearn_photo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = [skimage_photo("chelsea.png"), skimage_photo("coffee.png"), sklearn_photo("china.jpg"),
          mvtb_photo("eiffel-1.png"), mvtb_photo("penguins.png"), mvtb_photo("street.png")]


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, weights_path):
    root = tmp_path_factory.mktemp("cli")
    os.makedirs(root / "gallery")
    for p in PHOTOS:
        shutil.copy(p, root / "gallery")
    build_gallery(str(root / "gallery"), str(root / "index"), weights_path, progress=False)
    env = dict(os.environ, GALLERY_DIR=str(root / "gallery"), INDEX_DIR=str(root / "index"), DINOV2_WEIGHTS=weights_path)
    return root, env


def cli(env, *args):
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True)


def test_search_finds_an_edited_copy(gallery, tmp_path):
    root, env = gallery
    copy = tmp_path / "copy.jpg"
    image = Image.open(PHOTOS[2]).convert("RGB")
    image.resize((image.width // 2, image.height // 2)).save(copy, quality=40)
    result = cli(env, "search", str(copy), "--top-k", "3", "--jsonl", "--grid", str(tmp_path / "grid.png"))
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.strip().splitlines()
    hits = json.loads(line)["results"]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["path"] == "china.jpg" and hits[0]["score"] > 0.9 > hits[1]["score"]
    assert Image.open(tmp_path / "grid.png").size == (4 * 160, 180)


def test_search_a_folder_reports_bad_queries(gallery, tmp_path):
    root, env = gallery
    (tmp_path / "q").mkdir()
    shutil.copy(PHOTOS[0], tmp_path / "q" / "a.png")
    (tmp_path / "q" / "b.jpg").write_bytes(b"nope")
    result = cli(env, "search", str(tmp_path / "q"), "--json")
    assert result.returncode == 1
    out = json.loads(result.stdout)
    assert out[0]["results"][0]["path"] == "chelsea.png" and out[0]["results"][0]["score"] > 0.999
    assert "not a readable image" in out[1]["error"]
    table = cli(env, "search", str(tmp_path / "q" / "a.png"))
    assert "chelsea.png" in table.stdout.splitlines()[1]


def test_search_without_index_says_how_to_build(tmp_path, weights_path):
    env = dict(os.environ, INDEX_DIR=str(tmp_path / "none"), DINOV2_WEIGHTS=weights_path)
    result = cli(env, "search", PHOTOS[0])
    assert result.returncode == 2 and "python build_gallery.py" in result.stderr


def test_metrics_by_hand():
    features = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.8, 0.6]], np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    m = retrieval_metrics(features, ["a", "a", "b", "b"])
    # 0 -> 1 (a) hit; 1 -> 0 hit; 2 -> 3 (b) hit; 3 -> 1 (a) miss, then 0 (a), then 2 (b): AP 1/3
    assert m["P@1"] == 0.75 and m["mAP"] == pytest.approx((1 + 1 + 1 + 1 / 3) / 4)
    assert m["recall@10"] == 1.0 and m["queries"] == 4


def test_evaluate_command_on_a_labelled_folder(gallery, tmp_path):
    root, env = gallery
    for label, photo in (("cat", PHOTOS[0]), ("cup", PHOTOS[1])):
        (tmp_path / label).mkdir()
        image = Image.open(photo).convert("RGB")
        image.save(tmp_path / label / "a.png")
        image.transpose(Image.FLIP_LEFT_RIGHT).save(tmp_path / label / "b.png")
    assert len(labelled_images(str(tmp_path))) == 4
    result = cli(env, "evaluate", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "P@1 1.000" in result.stdout


@pytest.mark.slow
def test_near_duplicate_benchmark_quality(model, tmp_path):
    """A slice of the near-duplicate benchmark (docs/benchmarks.md): each original plus 17 edits must find its family."""
    from indexer.evaluate import benchmark_originals
    items = make_near_duplicate_set(benchmark_originals(limit=8), str(tmp_path))
    assert len(items) == 8 * 18
    features = model.embed([p for p, _ in items])
    metrics = retrieval_metrics(features, [label for _, label in items])
    assert metrics["P@1"] >= 0.9 and metrics["mAP"] >= 0.7


def test_cli_and_api_return_the_same_result(gallery_dirs, app, tmp_path, weights_path):
    """One search service behind both doors: the same query gives the same JSON, but for the API's links and
    the timings."""
    from tests.helpers import csrf_headers
    query = tmp_path / "q.jpg"
    Image.open(skimage_photo("coffee.png")).convert("RGB").save(query, quality=60)
    env = dict(os.environ, GALLERY_DIR=str(gallery_dirs / "gallery"), INDEX_DIR=str(gallery_dirs / "index"),
               DINOV2_WEIGHTS=weights_path)
    result = cli(env, "search", str(query), "--top-k", "4", "--json")
    assert result.returncode == 0, result.stderr
    (from_cli,) = json.loads(result.stdout)
    client = app.test_client()
    r = client.post("/api/search", data={"image": (open(query, "rb"), "q.jpg"), "top_k": "4"},
                    headers=csrf_headers(client), content_type="multipart/form-data")
    from_api = r.get_json()
    links = {"url", "thumbnail_url"}
    assert [{k: v for k, v in h.items() if k not in links} for h in from_api["results"]] == from_cli["results"]
    assert from_cli["results"][0]["path"] == "coffee.png" and len(from_cli["results"]) == 4
    assert set(from_api) == set(from_cli) and set(from_api["analysis"]) == set(from_cli["analysis"])
    for part in ("query", "analysis"):
        for key in from_cli[part]:
            if key not in ("timings_ms", "mode", "filename"):
                assert from_api[part][key] == from_cli[part][key], (part, key)
    assert set(from_api["analysis"]["timings_ms"]) == set(from_cli["analysis"]["timings_ms"])
