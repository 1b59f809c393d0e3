"""The same behaviour from every vector-index backend: NumPy exact, FAISS (HNSW, IVF), Milvus Lite and a real
Milvus server."""
import hashlib
import os
import shutil

import numpy as np
import pytest

from app.services.engine import Engine
from dinov2_numpy import load_rgb
from indexer.builder import build_gallery
from indexer.ids import image_ids
from indexer.generations import GalleryIndex, append_change, load_index, save_index
from indexer.vector_index import DimensionMismatch, NumpyIndex, open_backend, open_for_generation
from tests.images import mvtb_photo, skimage_photo, sklearn_photo

BACKENDS = ["numpy", "faiss-hnsw", "faiss-ivf", "milvus", "milvus-server"]


@pytest.fixture
def settings(request, tmp_path):
    """backend name -> its settings; a real Milvus server gets a collection of this test's own."""
    def make(backend, folder=tmp_path):
        name, _, kind = backend.partition("-")
        uri = str(folder / "milvus.db")
        if backend == "milvus-server":
            uri, kind = request.getfixturevalue("milvus_server"), ""
        collection = "t" + hashlib.sha1(str(folder).encode()).hexdigest()[:16]
        return {"VECTOR_BACKEND": name, "FAISS_INDEX": kind or "hnsw", "MILVUS_URI": uri,
                "MILVUS_COLLECTION": collection}
    return make


@pytest.fixture(scope="module")
def vectors(model):
    """Realistic vectors: real photo embeddings, each perturbed into a small cloud."""
    photos = [skimage_photo(n) for n in ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "camera.png")]
    photos += [sklearn_photo("china.jpg"), mvtb_photo("eiffel-1.png"), mvtb_photo("street.png")]
    base = model.embed(photos)
    rng = np.random.default_rng(0)
    cloud = np.repeat(base, 60, axis=0) + rng.normal(0, 0.03, (len(base) * 60, base.shape[1])).astype(np.float32)
    cloud /= np.linalg.norm(cloud, axis=1, keepdims=True)
    return cloud.astype(np.float32)


def reopen(index, backend, tmp_path, settings, paths, vectors):
    """What a restart does: persist, drop the object, open it again. NumPy's rows live in the generation's
    segment files: written by a build, the removed rows marked dead by a change, opened as the app does."""
    name = backend.split("-")[0]
    if name == "numpy":
        folder = str(tmp_path / "np")
        save_index(folder, GalleryIndex.single(vectors, paths, {"files": {}}))
        gone = [p for p, i in zip(paths, image_ids(paths)) if not np.isin(i, index.ids)]
        append_change(folder, [], np.empty((0, index.dim), np.float32), {}, remove=gone)
        return open_for_generation(settings(backend, tmp_path), load_index(folder))
    if name == "faiss":
        from indexer.vector_index.faiss_index import FaissIndex
        index.save(str(tmp_path / "faiss"))
        return FaissIndex.load(str(tmp_path / "faiss"), backend.split("-")[1])
    index.close()
    return open_backend(settings(backend, tmp_path), index.dim)


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_top_k_as_exact_search_deletes_and_reload(backend, vectors, tmp_path, settings):
    paths = [f"img{i}.jpg" for i in range(len(vectors))]
    ids = image_ids(paths)
    exact = NumpyIndex(vectors.shape[1])
    exact.add(ids, vectors)
    index = open_backend(settings(backend, tmp_path), vectors.shape[1])
    try:
        index.add(ids, vectors, paths)
        assert index.count() == len(vectors)
        queries = vectors[::37]
        want_ids, want_scores = exact.search(queries, 10)
        got_ids, got_scores = index.search(queries, 10)
        assert np.array_equal(got_ids, want_ids)
        assert np.allclose(got_scores, want_scores, atol=1e-4)

        gone = want_ids[:, 0]
        index.remove(gone)
        exact.remove(gone)
        assert index.count() == len(vectors) - len(set(gone.tolist()))
        got_ids, _ = index.search(queries, 10)
        assert not np.isin(got_ids, gone).any()
        assert np.array_equal(got_ids, exact.search(queries, 10)[0])

        index = reopen(index, backend, tmp_path, settings, paths, vectors)
        assert index.count() == exact.count()
        assert np.array_equal(index.search(queries, 10)[0], exact.search(queries, 10)[0])
        too_many, scores = index.search(queries[:1], len(vectors) + 5)
        assert (too_many[0, exact.count():] == -1).all() and np.isneginf(scores[0, exact.count():]).all()
    finally:
        index.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_mismatched_dimension_is_refused(backend, tmp_path, settings):
    index = open_backend(settings(backend, tmp_path), 8)
    try:
        index.add(np.arange(3), np.eye(3, 8, dtype=np.float32))
        with pytest.raises(DimensionMismatch, match="8-dimensional"):
            index.add(np.arange(3, 5), np.ones((2, 16), np.float32))
        with pytest.raises(DimensionMismatch):
            index.search(np.ones((1, 4), np.float32), 2)
    finally:
        index.close()
    if backend.startswith("milvus"):  # an existing collection of another width is refused on opening
        with pytest.raises(DimensionMismatch, match="holds 8-dimensional"):
            open_backend(settings(backend, tmp_path), 16)


@pytest.mark.parametrize("backend", ["faiss-hnsw", "milvus", "milvus-server"])
def test_builder_and_engine_work_unchanged(backend, weights_path, tmp_path, settings):
    """One configuration line switches the backend; the builder and the app's engine give the same answers."""
    gallery = tmp_path / "g"
    gallery.mkdir()
    for p in (skimage_photo("chelsea.png"), skimage_photo("coffee.png"), sklearn_photo("china.jpg"),
              mvtb_photo("eiffel-1.png")):
        shutil.copy(p, gallery)
    cfg = settings(backend, tmp_path)
    build_gallery(str(gallery), str(tmp_path / "idx"), weights_path, progress=False, backend=cfg)
    exact = Engine({"WEIGHTS": weights_path, "INDEX_DIR": str(tmp_path / "idx")})
    other = Engine({**cfg, "WEIGHTS": weights_path, "INDEX_DIR": str(tmp_path / "idx")})
    query = exact.embed_query(load_rgb(skimage_photo("coffee.png"))).vector
    want = [(h.path, round(h.score, 4)) for h in exact.search(query, 3)]
    assert want[0][0] == "coffee.png"
    assert [(h.path, round(h.score, 4)) for h in other.search(query, 3)] == want
    os.unlink(gallery / "coffee.png")
    build_gallery(str(gallery), str(tmp_path / "idx"), weights_path, progress=False, backend=cfg)
    assert "coffee.png" not in [h.path for h in other.search(query, 5)]
    assert len(other.search(query, 5)) == 3
    other._load()[1].close()


def test_stable_ids_do_not_depend_on_order():
    a = image_ids(["x/1.jpg", "y.png"])
    b = image_ids(["y.png", "x/1.jpg"])
    assert a[0] == b[1] and a[1] == b[0] and (a > 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("which", ["Milvus Lite", "a Milvus server"])
def test_the_readme_milvus_lines_work_as_written(which, weights_path, tmp_path, request):
    """The documented command lines (docs/operations.md), with only the folders and the server's port put in."""
    import re
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    readme = open(os.path.join(root, "docs", "operations.md")).read()
    line = next(l for l in readme.splitlines() if l.startswith("VECTOR_BACKEND=milvus") and l.endswith(which))
    env_part = line.split(" python build_gallery.py")[0]
    env = dict(os.environ, **dict(pair.split("=", 1) for pair in env_part.split()))
    if which == "a Milvus server":
        env["GALLERY_MILVUS_URI"] = request.getfixturevalue("milvus_server")
    env["MILVUS_COLLECTION"] = "readme" + re.sub(r"\W", "", which)
    (tmp_path / "g").mkdir()
    for p in (skimage_photo("chelsea.png"), skimage_photo("coffee.png"), sklearn_photo("china.jpg")):
        shutil.copy(p, tmp_path / "g")
    env.update(GALLERY_DIR=str(tmp_path / "g"), INDEX_DIR=str(tmp_path / "idx"), INSTANCE_DIR=str(tmp_path),
               DINOV2_WEIGHTS=weights_path)
    env["PYTHONPATH"] = root
    cwd = tmp_path  # where the relative path of the Lite line lands
    run = subprocess.run([sys.executable, os.path.join(root, "build_gallery.py"), "--quiet"], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    if which == "Milvus Lite":
        assert (tmp_path / "instance" / "milvus.db").exists()  # the relative path of the documented line
    found = subprocess.run([sys.executable, "-m", "app.cli", "search", skimage_photo("coffee.png"), "--top-k", "1",
                            "--jsonl"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert found.returncode == 0, found.stderr
    import json
    assert json.loads(found.stdout)["results"][0]["path"] == "coffee.png"
