"""Search with words, end to end, with stand-in (random) CLIP weights: the CLIP set beside the descriptors
(builds, changes, compaction, backends), POST /api/search with text, in CLIP's space and with both, the 409
without CLIP. Random weights rank meaninglessly, so these tests assert structure, alignment, counts and
filters, never which picture words should find."""
from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from clip_numpy import load_model as load_clip
from indexer.builder import build_gallery, build_lock
from indexer.changes import compact, update_paths
from indexer.embedding import embed_pixels
from indexer.generations import load_index
from indexer.options import EmbedOptions
from tests.helpers import csrf_headers, make_app, sign_up
from tests.images import mvtb_photo, skimage_photo

FETCH = "python -m clip_numpy fetch --model b32"


def no_descriptors(_pixels):
    raise AssertionError("the build ran DINOv2, though only CLIP was missing")


def exact_clip_order(index, query: np.ndarray) -> list[str]:
    """The index's paths by exact cosine similarity of their CLIP embeddings to ``query``."""
    scores = index.clip_of(np.arange(len(index))) @ query
    return [index.paths[r] for r in np.argsort(-scores, kind="stable")]


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_an_old_index_gets_clip_vectors_from_one_incremental_build_that_embeds_only_clip(
        gallery_dirs, clip_weights, weights_path, tmp_path):
    root = tmp_path / "site"
    shutil.copytree(gallery_dirs, root, symlinks=True)
    before = load_index(str(root / "index"))
    assert not before.has_clip
    report = build_gallery(str(root / "gallery"), str(root / "index"), weights_path, progress=False,
                           clip_weights=clip_weights, embed=no_descriptors)
    assert (report.embedded, report.clip_embedded, report.images) == (0, len(before), len(before))
    assert "CLIP (random-clip): 7 embedded" in report.summary()
    index = load_index(str(root / "index"))
    assert index.has_clip and index.clip_of(np.arange(len(index))).shape == (len(index), 512)
    assert os.path.exists(os.path.join(index.location, "gallery_clip.npy"))
    np.testing.assert_array_equal(index.features, before.features)  # the descriptors were kept, not remade
    # Row by row, each picture's CLIP embedding is its own (the model run on the file directly).
    clip = load_clip(clip_weights)
    files = [str(root / "gallery" / p) for p in index.paths]
    np.testing.assert_allclose(index.clip_of(np.arange(len(index))), clip.embed_images(files), atol=2e-5)
    again = build_gallery(str(root / "gallery"), str(root / "index"), weights_path, progress=False,
                          clip_weights=clip_weights, embed=no_descriptors)
    assert (again.embedded, again.clip_embedded) == (0, 0)


def test_other_clip_weights_re_embed_clip_only(clip_gallery, weights_path, tmp_path):
    from clip_numpy.config import openai_config
    from clip_numpy.weights.random_init import write_random
    from tests.clip_helpers import open_clip_vocab
    other = tmp_path / "other-clip.npz"
    write_random(other, openai_config("b32", vision_layers=1, text_layers=1), open_clip_vocab(), seed=7)
    root = tmp_path / "site"
    shutil.copytree(clip_gallery, root, symlinks=True)
    old = load_index(str(root / "index"))
    report = build_gallery(str(root / "gallery"), str(root / "index"), weights_path, progress=False,
                           clip_weights=str(other), embed=no_descriptors)
    assert (report.embedded, report.clip_embedded) == (0, len(old))
    new = load_index(str(root / "index"))
    assert new.manifest["clip"]["source"] == "random (seed 7)"
    assert not np.allclose(new.clip_of([0]), old.clip_of([0]))


def test_changes_and_compaction_keep_both_sets_in_step(clip_gallery, clip_weights, model, weights_path, tmp_path):
    root = tmp_path / "site"
    shutil.copytree(clip_gallery, root, symlinks=True)
    gallery, index_dir = root / "gallery", str(root / "index")
    shutil.copy(mvtb_photo("street.png"), gallery / "street.png")
    options = EmbedOptions(clip_weights=clip_weights)
    with build_lock(index_dir):
        update_paths(str(gallery), index_dir, lambda p: embed_pixels(model, p), add=["street.png"],
                     remove=["coffee.png"], options=options)
    index = load_index(index_dir)
    assert index.has_clip and len(index.segments) == 2 and "coffee.png" not in index.paths
    clip = load_clip(clip_weights)
    street = clip.embed_images([str(gallery / "street.png")])[0]
    np.testing.assert_allclose(index.clip_of([index.row_of_path("street.png")])[0], street, atol=2e-5)
    assert exact_clip_order(index, street)[0] == "street.png"
    before = {p: index.clip_of([r])[0] for r, p in enumerate(index.paths)}
    with build_lock(index_dir):
        assert compact(index_dir) is not None
    folded = load_index(index_dir)
    assert len(folded.segments) == 1 and folded.has_clip
    for r, p in enumerate(folded.paths):  # each row's CLIP embedding travelled with its descriptor
        np.testing.assert_array_equal(folded.clip_of([r])[0], before[p])
    # With CLIP switched off, a change still works; its segment has no CLIP rows, so the set is incomplete
    # until the next build, which embeds only what CLIP lacks.
    shutil.copy(skimage_photo("coffee.png"), gallery / "coffee.png")
    with build_lock(index_dir):
        update_paths(str(gallery), index_dir, lambda p: embed_pixels(model, p), add=["coffee.png"])
    assert not load_index(index_dir).has_clip
    report = build_gallery(str(gallery), index_dir, weights_path, progress=False, clip_weights=clip_weights,
                           embed=no_descriptors)
    assert report.clip_embedded == 1 and load_index(index_dir).has_clip


# --- the API ---------------------------------------------------------------------------------------------

@pytest.fixture
def clip_app(clip_gallery, clip_weights, tmp_path, weights_path):
    root = tmp_path / "site"
    shutil.copytree(clip_gallery, root, symlinks=True)
    return make_app(root, tmp_path, weights_path, CLIP_WEIGHTS=clip_weights)


def search(client, **body):
    return client.post("/api/search", json=body, headers=csrf_headers(client))


def test_text_search_answers_k_results_with_cosine_scores(clip_app, clip_weights):
    client = clip_app.test_client()
    r = search(client, text="red car at night", top_k=4, threshold=0.9)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["query"]["mode"] == "text" and body["query"]["text"] == "red car at night"
    assert body["query"]["space"] == "clip" and body["analysis"]["text_model"] == "random-clip"
    assert {"queue", "text", "total"} <= set(body["analysis"]["timings_ms"])
    results = body["results"]
    assert len(results) == 4 and [h["rank"] for h in results] == [1, 2, 3, 4]
    index = load_index(clip_app.config["INDEX_DIR"])
    words = load_clip(clip_weights).embed_texts(["red car at night"])[0]
    assert [h["path"] for h in results] == exact_clip_order(index, words)[:4]
    expected = index.clip_of([index.row_of_path(h["path"]) for h in results]) @ words
    np.testing.assert_allclose([h["score"] for h in results], expected, atol=1e-5)
    best = results[0]["score"]
    assert body["analysis"]["match_count"] == sum(h["score"] >= best - 0.1 * abs(best) for h in results)


def test_text_search_applies_the_photo_filters(clip_app):
    client = clip_app.test_client()
    every = search(client, text="a cat", top_k=20).get_json()["results"]
    wide = [h for h in every if h["meta"]["width"] > h["meta"]["height"]]
    assert 0 < len(wide) < len(every)
    r = search(client, text="a cat", top_k=20, orientation="landscape")
    assert [h["path"] for h in r.get_json()["results"]] == [h["path"] for h in wide]
    assert r.get_json()["query"]["filter"]["matching"] == len(wide)


def test_a_picture_searched_in_clip_space_finds_itself_first(clip_app):
    client = clip_app.test_client()
    items = client.get("/api/gallery").get_json()["items"]
    for item in items[:3]:
        body = search(client, gallery_id=item["id"], space="clip", top_k=3).get_json()
        assert body["query"]["space"] == "clip" and body["analysis"]["text_model"] == "random-clip"
        assert body["results"][0]["id"] == item["id"] and body["results"][0]["score"] == pytest.approx(1, abs=1e-5)
    with open(skimage_photo("astronaut.png"), "rb") as f:
        data = f.read()
    r = client.post("/api/search", data={"image": (io.BytesIO(data), "a.png"), "space": "clip"},
                    headers=csrf_headers(client), content_type="multipart/form-data")
    assert r.status_code == 200 and r.get_json()["results"][0]["path"] == "astronaut.png"
    # By look (the default) the same picture is searched with DINOv2: no text model in the analysis.
    assert search(client, gallery_id=items[0]["id"]).get_json()["analysis"]["text_model"] is None


def test_a_picture_plus_words_searches_with_the_normalised_sum(clip_app, clip_weights):
    client = clip_app.test_client()
    index = load_index(clip_app.config["INDEX_DIR"])
    row = index.row_of_path("chelsea.png")
    words = load_clip(clip_weights).embed_texts(["but in winter"])[0]
    both = unit(index.clip_of([row])[0] + words)
    body = search(client, gallery_id=int(index.ids[row]), text="but in winter", top_k=7).get_json()
    assert body["query"]["mode"] == "gallery" and body["query"]["text"] == "but in winter"
    assert [h["path"] for h in body["results"]] == exact_clip_order(index, both)
    assert body["results"][0]["score"] == pytest.approx(float(index.clip_of([index.row_of_path(
        body["results"][0]["path"])])[0] @ both), abs=1e-5)


def test_upload_and_delete_keep_both_vector_sets_in_step(clip_app):
    client = clip_app.test_client()
    sign_up(client, "root@example.com")
    buf = io.BytesIO()
    Image.open(mvtb_photo("street.png")).convert("RGB").save(buf, "JPEG")
    r = client.post("/api/admin/images", data={"images": [(io.BytesIO(buf.getvalue()), "street.jpg")]},
                    headers=csrf_headers(client), content_type="multipart/form-data")
    assert r.status_code == 201
    added = r.get_json()["added"][0]
    index = load_index(clip_app.config["INDEX_DIR"])
    assert index.has_clip and len(index) == 8 and index.clip_of(np.arange(8)).shape == (8, 512)
    found = search(client, gallery_id=added["id"], space="clip", top_k=1).get_json()["results"]
    assert found[0]["id"] == added["id"]
    r = client.delete("/api/admin/images", json={"ids": [added["id"]]}, headers=csrf_headers(client))
    assert r.status_code == 200
    index = load_index(clip_app.config["INDEX_DIR"])
    assert index.has_clip and len(index) == 7 and added["path"] not in index.paths
    hits = search(client, text="a street", top_k=10).get_json()["results"]
    assert len(hits) == 7 and added["id"] not in {h["id"] for h in hits}


def test_without_clip_weights_words_answer_409_naming_the_fetch_command(client):
    r = search(client, text="red car at night")
    assert r.status_code == 409
    error = r.get_json()["error"]
    assert error["code"] == "text_search_off" and FETCH in error["message"]
    items = client.get("/api/gallery").get_json()["items"]
    r = search(client, gallery_id=items[0]["id"], space="clip")
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "text_search_off"
    assert search(client, gallery_id=items[0]["id"]).status_code == 200  # by look: as before


def test_with_clip_weights_but_an_index_without_clip_the_answer_says_to_build(gallery_dirs, clip_weights, tmp_path,
                                                                            weights_path):
    app = make_app(gallery_dirs, tmp_path, weights_path, CLIP_WEIGHTS=clip_weights)
    r = search(app.test_client(), text="a cat")
    assert r.status_code == 503 and "python build_gallery.py" in r.get_json()["error"]["message"]


def test_text_fields_are_checked(clip_app):
    client = clip_app.test_client()
    assert search(client, text="x" * 1001).get_json()["error"]["code"] == "invalid_field"
    assert search(client, text="a\x00b").status_code == 400
    assert search(client, text="a cat", space="words").status_code == 400
    assert search(client, text=5).status_code == 400
    assert search(client, text="   ").get_json()["error"]["code"] == "missing_field"


# --- the vector backends -----------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "faiss-hnsw", "faiss-ivf", "milvus", "milvus-server"])
def test_every_backend_answers_text_queries_like_exact_search(backend, clip_gallery, clip_weights, model,
                                                              weights_path, request, tmp_path):
    from app.services.engine import Engine
    from indexer.vector_index import CLIP_SET
    name, _, kind = backend.partition("-")
    uri = request.getfixturevalue("milvus_server") if backend == "milvus-server" else str(tmp_path / "m.db")
    cfg = {"VECTOR_BACKEND": name, "FAISS_INDEX": kind or "hnsw", "MILVUS_URI": uri,
           "MILVUS_COLLECTION": "clip" + str(abs(hash(str(tmp_path))))[:12], "CLIP_WEIGHTS": clip_weights}
    root = tmp_path / "site"
    shutil.copytree(clip_gallery, root, symlinks=True)
    gallery, index_dir = root / "gallery", str(root / "index")
    build_gallery(str(gallery), index_dir, weights_path, progress=False, backend=cfg, clip_weights=clip_weights,
                  embed=no_descriptors)  # a backend build reuses both sets: nothing is embedded again
    if name == "faiss":
        assert os.path.exists(os.path.join(load_index(index_dir).location, "faiss-clip.index"))
    engine = Engine({**cfg, "WEIGHTS": weights_path, "INDEX_DIR": index_dir})
    texts = ["red car at night", "a cat asleep", "coffee"]

    def answers():
        index = load_index(index_dir)
        queries = [engine.embed_text(t).vector for t in texts]
        got = [[h.path for h in engine.search(q, 10, space=CLIP_SET)] for q in queries]
        return got, [exact_clip_order(index, q) for q in queries], index

    got, want, index = answers()
    assert got == want and len(got[0]) == len(index) == 7
    shutil.copy(mvtb_photo("street.png"), gallery / "street.png")
    with build_lock(index_dir):
        update_paths(str(gallery), index_dir, lambda p: embed_pixels(model, p), add=["street.png"],
                     remove=["coffee.png"], options=EmbedOptions(backend=cfg, clip_weights=clip_weights))
    got, want, index = answers()
    assert got == want and "street.png" in got[0] and "coffee.png" not in got[0]
    if name == "milvus":
        from indexer.vector_index import for_set, open_backend
        held = open_backend(for_set(cfg, CLIP_SET, 512), 512)
        assert held.count() == len(index) == 7
        held.close()
    with build_lock(index_dir):
        assert compact(index_dir, cfg) is not None
    got_after, want_after, _ = answers()
    assert got_after == want_after == want
    engine._load()[1].close()
    engine.clip_current(engine.current())[1].close()


# --- the other paths a descriptor takes: Dask shards and the folder watcher ---------------------------------

@pytest.mark.slow
def test_a_cluster_build_embeds_clip_in_shards_as_a_local_build_does(gallery_dirs, clip_gallery, clip_weights,
                                                                     weights_path, tmp_path):
    root = tmp_path / "site"
    shutil.copytree(gallery_dirs, root, symlinks=True)
    environment = dict(os.environ)
    report = build_gallery(str(root / "gallery"), str(root / "index"), weights_path, progress=False,
                           clip_weights=clip_weights, cluster="local:1", shard_size=3)
    assert dict(os.environ) == environment
    assert (report.embedded, report.clip_embedded) == (0, 7)
    local, shards = load_index(str(clip_gallery / "index")), load_index(str(root / "index"))
    assert shards.paths == local.paths and shards.has_clip
    assert np.abs(shards.clip_of(np.arange(7)) - local.clip_of(np.arange(7))).max() <= 1e-5


@pytest.mark.slow
def test_the_folder_watcher_gives_new_photos_their_clip_embedding(clip_gallery, clip_weights, tmp_path,
                                                                  weights_path):
    from tests.test_watch import wait_until
    root = tmp_path / "site"
    shutil.copytree(clip_gallery, root, symlinks=True)
    app = make_app(root, tmp_path, weights_path, CLIP_WEIGHTS=clip_weights, WATCH_GALLERY=True,
                   WATCH_SETTLE_SECONDS=0.5)
    try:
        client = app.test_client()
        shutil.copy(mvtb_photo("street.png"), root / "gallery" / "street.png")
        wait_until(lambda: "street.png" in load_index(str(root / "index")).paths, "the watcher to index street.png")
        index = load_index(str(root / "index"))
        assert index.has_clip and len(index.segments) == 2
        row = index.row_of_path("street.png")
        found = search(client, gallery_id=int(index.ids[row]), space="clip", top_k=1).get_json()["results"]
        assert found[0]["path"] == "street.png"
    finally:
        app.extensions["gallery_watch"].stop()


def test_health_names_the_text_model_and_its_last_time(clip_app, client):
    c = clip_app.test_client()
    text = c.get("/api/health").get_json()["text_search"]
    assert text == {"enabled": True, "model": "random-clip", "dim": 512, "indexed": True, "last_text_ms": None}
    search(c, text="a cat")
    assert c.get("/api/health").get_json()["text_search"]["last_text_ms"] > 0
    assert client.get("/api/health").get_json()["text_search"] == {"enabled": False, "model": None, "indexed": False}


def test_the_command_line_searches_with_words_and_by_meaning(clip_gallery, clip_weights, weights_path):
    import json

    from tests.test_cli import cli
    env = dict(os.environ, GALLERY_DIR=str(clip_gallery / "gallery"), INDEX_DIR=str(clip_gallery / "index"),
               DINOV2_WEIGHTS=weights_path, CLIP_WEIGHTS=clip_weights)
    words = cli(env, "search", "--text", "red car at night", "--top-k", "3", "--json")
    assert words.returncode == 0, words.stderr
    (answer,) = json.loads(words.stdout)
    assert answer["query"]["mode"] == "text" and len(answer["results"]) == 3
    assert answer["analysis"]["text_model"] == "random-clip"
    table = cli(env, "search", skimage_photo("coffee.png"), "--space", "clip", "--top-k", "2")
    assert table.returncode == 0 and table.stdout.splitlines()[1].split()[-1] == "coffee.png"
    env.pop("CLIP_WEIGHTS")
    off = cli(env, "search", "--text", "red car at night")
    assert off.returncode == 2 and FETCH in off.stderr and len(off.stderr.strip().splitlines()) == 1


def test_a_change_never_fails_for_want_of_clip_weights(clip_gallery, model, tmp_path):
    root = tmp_path / "site"
    shutil.copytree(clip_gallery, root, symlinks=True)
    shutil.copy(mvtb_photo("street.png"), root / "gallery" / "street.png")
    with build_lock(str(root / "index")):
        report = update_paths(str(root / "gallery"), str(root / "index"), lambda p: embed_pixels(model, p),
                              add=["street.png"], options=EmbedOptions(clip_weights=str(tmp_path / "gone.npz")))
    index = load_index(str(root / "index"))
    assert report.added == ["street.png"] and "street.png" in index.paths and not index.has_clip
