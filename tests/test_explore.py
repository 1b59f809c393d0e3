"""Duplicates, groups and the map, on real photos with planted copies (re-encoded, resized, cropped)."""
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.builder import build_gallery
from indexer.duplicate_job import find_pairs
from indexer.explore import duplicate_groups, minibatch_kmeans, neighbour_edges, similar_pairs
from indexer.generations import load_index
from indexer.vector_index import NumpyIndex
from tests.helpers import csrf_headers, make_app, sign_up
from tests.images import mvtb_photo, skimage_photo, sklearn_photo

DISTINCT = [skimage_photo("chelsea.png"), skimage_photo("coffee.png"), skimage_photo("rocket.jpg"),
            skimage_photo("astronaut.png"), sklearn_photo("china.jpg"), mvtb_photo("street.png"),
            mvtb_photo("penguins.png"), mvtb_photo("church.png")]


def planted(root):
    """The distinct photos, plus copies of two of them: the expected duplicate groups."""
    gallery = root / "gallery"
    gallery.mkdir(parents=True)
    for path in DISTINCT:
        Image.open(path).convert("RGB").save(gallery / (path.rsplit("/", 1)[1].split(".")[0] + ".png"))
    cat = Image.open(skimage_photo("chelsea.png")).convert("RGB")
    cat.save(gallery / "cat-reencoded.jpg", quality=60)
    cat.resize((cat.width // 2, cat.height // 2)).save(gallery / "cat-small.png")
    church = Image.open(mvtb_photo("church.png")).convert("RGB")
    w, h = church.size
    church.crop((w // 20, h // 20, w - w // 20, h - h // 20)).save(gallery / "church-cropped.jpg", quality=90)
    return [{"chelsea.png", "cat-reencoded.jpg", "cat-small.png"}, {"church.png", "church-cropped.jpg"}]


@pytest.fixture(params=["numpy", "faiss"])
def explored(request, tmp_path, weights_path):
    root = tmp_path / "site"
    expected = planted(root)
    cfg = {"VECTOR_BACKEND": request.param}
    build_gallery(str(root / "gallery"), str(root / "index"), weights_path, progress=False, backend=cfg)
    app = make_app(root, tmp_path, weights_path, **cfg)
    return app, app.test_client(), expected


def ready(client, url):
    """Poll a 202-until-computed endpoint; its final answer."""
    end = time.monotonic() + 120
    while time.monotonic() < end:
        r = client.get(url)
        if r.status_code != 202:
            assert r.status_code == 200, r.get_json()
            return r.get_json()
        assert r.headers["Retry-After"]
        time.sleep(0.1)
    pytest.fail(f"{url} never finished")


def test_planted_duplicates_are_grouped_and_nothing_else(explored, tmp_path):
    app, client, expected = explored
    body = ready(client, "/api/duplicates")  # 0.95: these weights put distinct photos at up to 0.82
    found = [{i["path"] for i in g["items"]} for g in body["groups"]]
    assert sorted(found, key=len) == sorted(expected, key=len)
    cat = next(g for g in body["groups"] if g["size"] == 3)
    assert cat["items"][0]["path"] == "chelsea.png"  # most pixels first
    assert cat["items"][0]["meta"]["width"] > cat["items"][-1]["meta"]["width"] or \
        cat["items"][0]["bytes"] >= cat["items"][-1]["bytes"]
    # A threshold between the cropped copy's cosine and the re-encoded copies' lowest: the crop drops out.
    index = load_index(str(tmp_path / "site" / "index"))

    def cosine(a, b):
        return float(index.vector(index.row_of_path(a)) @ index.vector(index.row_of_path(b)))
    crop = cosine("church.png", "church-cropped.jpg")
    copies = min(cosine(a, b) for a, b in [("chelsea.png", "cat-reencoded.jpg"), ("chelsea.png", "cat-small.png"),
                                             ("cat-reencoded.jpg", "cat-small.png")])
    assert crop < copies
    stricter = ready(client, f"/api/duplicates?threshold={(crop + copies) / 2:.6f}")
    assert sorted([sorted(i["path"] for i in g["items"]) for g in stricter["groups"]]) == \
        [["cat-reencoded.jpg", "cat-small.png", "chelsea.png"]]
    assert client.get("/api/duplicates?threshold=0.2").status_code == 400


def test_groups_are_stable_and_cover_the_gallery_and_the_map_places_everyone(explored, tmp_path, weights_path):
    app, client, _ = explored
    index = load_index(app.config["INDEX_DIR"])
    body = ready(client, "/api/groups?k=3")
    assert body["k"] == 3 and sum(g["size"] for g in body["groups"]) == len(index)
    members = []
    for card in body["groups"]:
        listing = ready(client, f"/api/groups/{card['n']}?k=3&per_page=200")
        assert listing["total"] == card["size"] and listing["items"][0]["id"] == card["preview"][0]["id"]
        members.append({i["path"] for i in listing["items"]})
    assert {"chelsea.png", "cat-reencoded.jpg", "cat-small.png"} <= next(m for m in members if "chelsea.png" in m)
    again = make_app(Path(app.config["INDEX_DIR"]).parent, tmp_path / "again", weights_path,
                     VECTOR_BACKEND=app.config["VECTOR_BACKEND"]).test_client()
    assert [sorted(i["id"] for i in g["preview"]) for g in ready(again, "/api/groups?k=3")["groups"]] == \
        [sorted(i["id"] for i in g["preview"]) for g in body["groups"]]  # the same seed, the same groups
    assert client.get("/api/groups/99?k=3").status_code == 404
    points = ready(client, "/api/map")["points"]
    assert len(points) == len(index) and {p["id"] for p in points} == {int(i) for i in index.ids}
    assert all(-1 <= p["x"] <= 1 and -1 <= p["y"] <= 1 for p in points)


def test_keep_the_best_deletes_the_others_consistently(explored):
    from tests.test_admin import assert_consistent
    app, client, _ = explored
    sign_up(client, "admin@example.com")
    group = next(g for g in ready(client, "/api/duplicates")["groups"] if g["size"] == 3)
    others = [i["id"] for i in group["items"][1:]]
    r = client.delete("/api/admin/images", json={"ids": others}, headers=csrf_headers(client))
    assert r.status_code == 200 and sorted(r.get_json()["deleted"]) == ["cat-reencoded.jpg", "cat-small.png"]
    assert_consistent(app)
    after = ready(client, "/api/duplicates")  # recomputed for the new generation
    assert [{i["path"] for i in g["items"]} for g in after["groups"]] == [{"church.png", "church-cropped.jpg"}]


def test_edges_and_groups_on_synthetic_vectors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[7] = x[3]
    x[9] = x[3] + 0.02 * rng.normal(size=64)
    x[9] /= np.linalg.norm(x[9])
    ids = np.arange(2000) * 7 + 1
    a, b, s = neighbour_edges(x, ids, NumpyIndex(64, ids, x), k=5, floor=0.8)
    assert duplicate_groups(len(x), a, b, s, 0.95) == [[3, 7, 9]]
    assert len(a) < 10 * len(x)  # neighbour lists, not a similarity matrix
    first = minibatch_kmeans(x, 8, seed=1)[1]
    assert np.array_equal(first, minibatch_kmeans(x, 8, seed=1)[1]) and len(np.unique(first)) == 8


def clustered(n, dim, seed):
    """Unit vectors around a few hundred centres, with planted near-copies (cosine ~0.97) of some rows."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(2, n // 200), dim)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.7 * rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    copies = rng.choice(n, n // 50, replace=False)
    x[copies[1::2]] = x[copies[::2]] + 0.03 * rng.normal(size=(len(copies) // 2, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_the_inverted_file_finds_the_exact_groups_and_nearly_every_pair():
    x = clustered(6000, 48, seed=3)
    ids = np.arange(len(x))
    exact = similar_pairs(x, k=10, floor=0.8)  # below EXACT_BELOW: every pair compared
    reference = neighbour_edges(x, ids, NumpyIndex(48, ids, x), k=10, floor=0.8)
    assert {(a, b) for a, b in zip(*exact[:2])} == {(a, b) for a, b in zip(*reference[:2])}
    done = []
    blocked = similar_pairs(x, k=10, floor=0.8, exact_below=0, progress=lambda d, t: done.append((d, t)))
    for threshold in (0.95, 0.9):
        groups = duplicate_groups(len(x), *exact, threshold)
        assert len(groups) >= 50 and duplicate_groups(len(x), *blocked, threshold) == groups
    pairs = {(a, b) for a, b in zip(*exact[:2])}
    found = pairs & {(a, b) for a, b in zip(*blocked[:2])}
    assert len(found) >= 0.95 * len(pairs)
    assert done[-1][0] == done[-1][1] and all(d1 <= d2 for (d1, _), (d2, _) in zip(done, done[1:]))


def test_the_inverted_file_groups_real_photos_as_exact_search_does(explored, tmp_path):
    index = load_index(str(tmp_path / "site" / "index"))
    x = np.asarray(index.features)
    exact = similar_pairs(x, k=10, floor=0.8)
    blocked = similar_pairs(x, k=10, floor=0.8, exact_below=0, probes=2)
    for threshold in (0.8, 0.9, 0.95):
        assert duplicate_groups(len(x), *blocked, threshold) == duplicate_groups(len(x), *exact, threshold)
    assert len(duplicate_groups(len(x), *exact, 0.95)) == 2


def test_the_status_shows_progress_and_an_estimate_that_holds(monkeypatch):
    import threading

    from app.services import exploration
    monkeypatch.setattr(exploration, "ESTIMATE_AFTER", 1.0)
    x = clustered(120_000, 64, seed=4)
    job = exploration.Job(index=None)
    job.started = time.monotonic()
    answer = {}
    worker = threading.Thread(target=lambda: answer.update(pairs=find_pairs(x, 10, 0.8, progress=job.progress)))
    worker.start()
    seen = []
    while worker.is_alive():
        seen.append((time.monotonic(), job.status()))
        time.sleep(0.2)
    worker.join()
    end = time.monotonic()
    assert answer["pairs"][0].size > 0
    estimates = [(t, s) for t, s in seen if s["eta_seconds"] is not None]
    assert estimates and all(0 < s["done"] < s["total"] for _, s in estimates)
    assert all(s["elapsed_seconds"] >= 1.0 for _, s in estimates)
    # Made with a third of the work done or more, the estimate is within a factor of three of what it took.
    t, later = next((t, s) for t, s in estimates if s["done"] >= s["total"] / 3)
    assert (end - t) / 3 <= later["eta_seconds"] <= 3 * (end - t) + 1


def test_a_killed_duplicate_search_reports_failed_then_starts_again(explored):
    import os
    import signal
    app, client, _ = explored
    assert client.get("/api/duplicates").status_code == 202
    job = app.extensions["exploration"]._jobs["edges"]
    end = time.monotonic() + 30
    while job.pid is None and time.monotonic() < end:
        time.sleep(0.002)
    os.kill(job.pid, signal.SIGKILL)
    job.finished.wait(30)
    r = client.get("/api/duplicates")
    assert r.status_code == 500, r.get_json()
    error = r.get_json()["error"]
    assert error["code"] == "computation_failed" and "killed (signal 9)" in error["message"]
    assert len(ready(client, "/api/duplicates")["groups"]) == 2  # the next request computes it afresh
