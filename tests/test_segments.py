"""Append-only gallery changes: a change adds a small segment and leaves the base files alone, every backend
answers as exact search over the live rows, a compaction folds the segments into what a full build makes, and
a change that fails half-way leaves the previous generation in place."""
import functools
import os
import shutil
import time

import numpy as np
import pytest

from app.services.engine import Engine
from app.services.gallery_changes import compact_if_due
from build_gallery import main as build_gallery_cli
from indexer import generations
from indexer.builder import build_gallery, build_lock
from indexer.changes import compact, update_paths
from indexer.embedding import embed_pixels
from indexer.generations import FEATURES, load_index
from tests.images import mvtb_photo, skimage_photo

@pytest.fixture
def built(four_photos):
    """A gallery of four photos (chelsea, coffee, china, eiffel-1), not built yet."""
    return four_photos


def change(model, gallery, index_dir, cfg=None, **kwargs):
    with build_lock(str(index_dir)):
        return update_paths(str(gallery), str(index_dir), functools.partial(embed_pixels, model), backend=cfg,
                            **kwargs)


def inode(index_dir, name=FEATURES):
    return os.stat(os.path.join(load_index(str(index_dir)).location, name)).st_ino


def test_a_change_appends_a_segment_and_links_the_base(built, model, weights_path):
    gallery, index_dir = built
    build_gallery(str(gallery), str(index_dir), weights_path, progress=False)
    before = inode(index_dir)
    shutil.copy(skimage_photo("astronaut.png"), gallery / "astronaut.png")
    report = change(model, gallery, index_dir, add=["astronaut.png"])
    assert report.added == ["astronaut.png"] and report.removed == []
    index = load_index(str(index_dir))
    assert inode(index_dir) == before  # the base was linked, not written again
    assert [s.name for s in index.segments][0] == "base" and len(index.segments) == 2
    assert len(index) == 5 and index.paths[-1] == "astronaut.png"
    row = index.row_of_path("astronaut.png")
    assert np.abs(index.vector(row) - model.embed([str(gallery / "astronaut.png")])[0]).max() < 1e-4

    os.unlink(gallery / "coffee.png")
    report = change(model, gallery, index_dir, remove=["coffee.png"])
    assert report.removed == ["coffee.png"]
    index = load_index(str(index_dir))
    assert len(index) == 4 and index.row_of_path("coffee.png") is None and "coffee.png" not in index.files
    assert inode(index_dir) == before

    shutil.copy(skimage_photo("rocket.jpg"), gallery / "chelsea.png")  # same name, new picture
    os.utime(gallery / "chelsea.png", ns=(1, 1))
    report = change(model, gallery, index_dir, add=["chelsea.png"])
    assert report.added == ["chelsea.png"]
    index = load_index(str(index_dir))
    assert len(index) == 4 and index.paths.count("chelsea.png") == 1
    assert np.abs(index.vector(index.row_of_path("chelsea.png")) -
                  model.embed([str(gallery / "chelsea.png")])[0]).max() < 1e-4

    assert change(model, gallery, index_dir, add=["chelsea.png"]).added == []  # unchanged: nothing to do


def test_duplicates_and_bad_files_are_recorded_not_indexed(built, model, weights_path):
    gallery, index_dir = built
    build_gallery(str(gallery), str(index_dir), weights_path, progress=False)
    shutil.copy(gallery / "china.jpg", gallery / "copy-of-china.jpg")
    (gallery / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    report = change(model, gallery, index_dir, add=["copy-of-china.jpg", "broken.jpg"])
    assert report.added == [] and report.duplicates == [("copy-of-china.jpg", "china.jpg")]
    assert set(report.skipped) == {"broken.jpg"}
    index = load_index(str(index_dir))
    assert index.manifest["duplicates"]["copy-of-china.jpg"] == "china.jpg"
    assert "broken.jpg" in index.skipped and index.row_of_path("broken.jpg") is None
    shutil.copy(skimage_photo("camera.png"), gallery / "broken.jpg")  # fixed: indexed, no longer skipped
    os.utime(gallery / "broken.jpg", ns=(2, 2))
    change(model, gallery, index_dir, add=["broken.jpg"])
    index = load_index(str(index_dir))
    assert "broken.jpg" not in index.skipped and index.row_of_path("broken.jpg") is not None


@pytest.mark.parametrize("backend", ["numpy", "faiss-hnsw", "milvus", "milvus-server"])
def test_every_backend_answers_like_exact_search_over_the_live_rows(backend, built, model, weights_path,
                                                                    request, tmp_path):
    name, _, kind = backend.partition("-")
    uri = request.getfixturevalue("milvus_server") if backend == "milvus-server" else str(tmp_path / "m.db")
    cfg = {"VECTOR_BACKEND": name, "FAISS_INDEX": kind or "hnsw", "MILVUS_URI": uri,
           "MILVUS_COLLECTION": "seg" + str(abs(hash(str(tmp_path))))[:12]}
    gallery, index_dir = built
    build_gallery(str(gallery), str(index_dir), weights_path, progress=False, backend=cfg)
    engine = Engine({**cfg, "WEIGHTS": weights_path, "INDEX_DIR": str(index_dir)})
    for p in (skimage_photo("astronaut.png"), skimage_photo("rocket.jpg"), mvtb_photo("street.png")):
        shutil.copy(p, gallery)
    change(model, gallery, index_dir, cfg, add=["astronaut.png", "rocket.jpg"])
    change(model, gallery, index_dir, cfg, add=["street.png"], remove=["coffee.png", "rocket.jpg"])
    queries = model.embed([skimage_photo("coffee.png"), skimage_photo("rocket.jpg"), str(gallery / "street.png")])

    def answers():
        index = load_index(str(index_dir))
        exact = index.features @ queries.T
        want = [[index.paths[r] for r in np.argsort(-exact[:, q])] for q in range(len(queries))]
        got = [[h.path for h in engine.search(q, 10)] for q in queries]
        return got, want

    got, want = answers()
    assert got == want and len(got[0]) == 5
    assert not {"coffee.png", "rocket.jpg"} & set(got[0])
    with build_lock(str(index_dir)):
        assert compact(str(index_dir), cfg) is not None
    assert len(load_index(str(index_dir)).segments) == 1
    got_after, want_after = answers()
    assert got_after == want_after == want
    engine._load()[1].close()


def test_compaction_gives_what_a_full_build_gives(built, model, weights_path, tmp_path):
    gallery, index_dir = built
    build_gallery(str(gallery), str(index_dir), weights_path, progress=False)
    shutil.copy(skimage_photo("astronaut.png"), gallery)
    change(model, gallery, index_dir, add=["astronaut.png"])
    os.unlink(gallery / "china.jpg")
    change(model, gallery, index_dir, remove=["china.jpg"])
    assert build_gallery_cli(["--output", str(index_dir), "--compact"]) == 0
    with build_lock(str(index_dir)):
        assert compact(str(index_dir)) is None  # nothing left to fold
    folded = load_index(str(index_dir))
    build_gallery(str(gallery), str(tmp_path / "fresh"), weights_path, progress=False)
    fresh = load_index(str(tmp_path / "fresh"))
    assert folded.paths == fresh.paths
    assert np.abs(np.asarray(folded.features) - np.asarray(fresh.features)).max() < 1e-4
    assert folded.files == fresh.files


def test_a_change_that_fails_before_the_switch_leaves_the_previous_generation(built, model, weights_path):
    gallery, index_dir = built
    build_gallery(str(gallery), str(index_dir), weights_path, progress=False)
    before = load_index(str(index_dir))
    shutil.copy(skimage_photo("astronaut.png"), gallery)

    def failing_backend(folder, change):
        raise OSError("the disk filled up")

    with pytest.raises(OSError):
        generations.append_change(str(index_dir), ["astronaut.png"], np.zeros((1, before.dim), np.float32),
                                  {"astronaut.png": {"size": 1, "mtime_ns": 1, "sha256": "ab" * 32}},
                                  extra=failing_backend)
    after = load_index(str(index_dir))
    assert after.location == before.location and after.paths == before.paths
    change(model, gallery, index_dir, add=["astronaut.png"])  # the next change tidies the unfinished folder
    names = os.listdir(os.path.join(str(index_dir), generations.GENERATIONS))
    assert not [n for n in names if n.startswith(".")]


def test_compaction_starts_by_itself_once_changes_pile_up(built, model, weights_path, monkeypatch):
    gallery, index_dir = built
    build_gallery(str(gallery), str(index_dir), weights_path, progress=False)
    monkeypatch.setattr(generations, "COMPACT_SEGMENTS", 1)
    engine = Engine({"INDEX_DIR": str(index_dir), "GALLERY_DIR": str(gallery), "VECTOR_BACKEND": "numpy",
                     "WEIGHTS": weights_path})
    for p in (skimage_photo("astronaut.png"), skimage_photo("rocket.jpg")):
        shutil.copy(p, gallery)
        assert not compact_if_due(engine)  # one segment is below the threshold
        change(model, gallery, index_dir, add=[os.path.basename(p)])
    done = []
    assert compact_if_due(engine, on_done=lambda: done.append(True))
    deadline = time.monotonic() + 60
    while not done and time.monotonic() < deadline:
        time.sleep(0.05)
    index = load_index(str(index_dir))
    assert done and len(index.segments) == 1 and len(index) == 6
    assert index.paths == sorted(index.paths)
    # Compaction copies descriptors: each row still describes the picture at its path.
    for name in ("astronaut.png", "rocket.jpg", "chelsea.png"):
        want = model.embed([str(gallery / name)])[0]
        assert np.abs(index.vector(index.row_of_path(name)) - want).max() < 1e-4
