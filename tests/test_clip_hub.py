"""Fetching CLIP from the model hub, against a local stand-in for it (the one thing we mock): the checkpoint,
its config.json and the tokenizer files, through DINOv2's download code (progress, resume, checksum)."""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import CLIPConfig

from clip_numpy import load_model
from clip_numpy.weights.hub import fetch
from dinov2_numpy.weights.hub import HubError
from tests.clip_helpers import hub_tokenizer_files, open_clip_tokenizer, random_clip
from tests.helpers import local_http_server
from tests.test_hub import FakeHub

REPO = "/openai/clip-vit-base-patch32/resolve/main/"
DOWNLOADS = ".clip-vit-base-patch32"


class ClipHub(FakeHub):
    """The hub for one CLIP repository: LFS files (the checkpoint) name their SHA-256 in X-Linked-Etag, the
    small git files (config and tokenizer) carry a git blob id as their ETag, which is no SHA-256."""
    files: dict = {}
    log: list = []

    def _head(self):
        if self.path.endswith(".safetensors"):
            return super()._head()
        data = self.files.get(self.path)
        self.send_response(200 if data is not None else 404)
        if data is not None:
            self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        return data


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    # A stand-in in the place of ViT-B/32: OpenAI's vocabulary and context at small widths, so it serves fast.
    config = CLIPConfig(vision_config=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=1,
                                           num_attention_heads=1, patch_size=32, image_size=224),
                        text_config=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=1,
                                         num_attention_heads=1, eos_token_id=2),
                        projection_dim=32)
    reference = random_clip(config, seed=5)
    folder = tmp_path_factory.mktemp("hf")
    reference.save_pretrained(folder)
    files = {name: (folder / name).read_bytes() for name in ("model.safetensors", "config.json")}
    files.update(hub_tokenizer_files(open_clip_tokenizer()))
    ClipHub.files = {REPO + name: data for name, data in files.items()}
    with local_http_server(ClipHub) as url:
        yield url, reference


def test_fetch_with_hf_endpoint_downloads_checks_and_converts(hub, tmp_path):
    url, reference = hub
    ClipHub.log.clear()
    out = tmp_path / "clip.npz"
    result = subprocess.run([sys.executable, "-m", "clip_numpy", "fetch", "--model", "b32", "--output", str(out),
                             "--quiet"], capture_output=True, text=True, env={**os.environ, "HF_ENDPOINT": url})
    assert result.returncode == 0, result.stderr
    assert ClipHub.log == [("full", 0)] * 4
    model = load_model(out)
    assert model.name == "openai/clip-vit-base-patch32" and model.metadata["vocab_source"] == "merges.txt"
    assert model.metadata["source_sha256"] == hashlib.sha256(ClipHub.files[REPO + "model.safetensors"]).hexdigest()
    assert model.metadata["source"] == url + REPO + "model.safetensors"
    ids = model.tokenize(["a photo of a cat", "東京の夜景"])
    with torch.no_grad():
        expected = reference.get_text_features(input_ids=torch.from_numpy(ids)).pooler_output.numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.abs(model.embed_texts(["a photo of a cat", "東京の夜景"]) - expected).max() <= 1e-4
    assert os.listdir(tmp_path) == ["clip.npz"]  # the downloads were removed


def test_fetch_resumes_a_partial_download(hub, tmp_path):
    url, _ = hub
    data = ClipHub.files[REPO + "model.safetensors"]
    (tmp_path / DOWNLOADS).mkdir()
    (tmp_path / DOWNLOADS / "model.safetensors.part").write_bytes(data[: len(data) // 3])
    ClipHub.log.clear()
    meta = fetch("b32", str(tmp_path / "w.npz"), hub_url=url, quiet=True)
    assert ClipHub.log == [("range", len(data) // 3)] + [("full", 0)] * 3
    assert meta["source_sha256"] == hashlib.sha256(data).hexdigest()
    assert load_model(tmp_path / "w.npz").dim == 32


def test_checksum_mismatch_is_refused(hub, tmp_path):
    url, _ = hub
    ClipHub.etag_override = "0" * 64
    try:
        with pytest.raises(HubError, match="checksum mismatch"):
            fetch("b32", str(tmp_path / "w.npz"), hub_url=url, quiet=True)
    finally:
        ClipHub.etag_override = None
    assert not (tmp_path / "w.npz").exists()
    assert os.listdir(tmp_path / DOWNLOADS) == []  # the refused download is gone


def test_missing_repository_and_unreachable_hub(hub, tmp_path):
    url, _ = hub
    with pytest.raises(HubError, match="answered 404"):
        fetch("l14", str(tmp_path / "w.npz"), hub_url=url, quiet=True)
    result = subprocess.run([sys.executable, "-m", "clip_numpy", "fetch", "--model", "b16", "--hub-url",
                             "http://127.0.0.1:9", "--output", str(tmp_path / "w.npz")], capture_output=True, text=True)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "cannot reach the model hub at http://127.0.0.1:9" in lines[0]
