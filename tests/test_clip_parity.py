"""CLIP against transformers' CLIPModel with random weights in OpenAI's shapes, converted by our CLI: image
and text features equal ``get_image_features`` / ``get_text_features`` fed the same pixels and token ids."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPImageProcessorPil

from clip_numpy import WeightsError, load_model
from clip_numpy.config import openai_config
from clip_numpy.tokenizer import Tokenizer
from clip_numpy.weights import convert
from clip_numpy.weights.random_init import write_random
from clip_numpy.weights.vocab import read_merges
from dinov2_numpy.weights.npz import save_npz
from tests.clip_helpers import clip_config, convert_with_cli, open_clip_vocab, random_clip
from tests.images import mvtb_photo, skimage_photo, sklearn_photo

PHOTOS = [skimage_photo("chelsea.png"), skimage_photo("camera.png"), sklearn_photo("flower.jpg"),
          mvtb_photo("monalisa.png")]
TEXTS = ["a photo of a cat", "", "Red car at night", "東京の夜景 🌃", "Tom &amp; Jerry, ﬁsh &amp; chips",
         "a photo of a red car at night in the rain " * 12]  # the last is cut to 77 tokens
# OpenAI's widths, heads, patch, MLP, vocabulary and context: ViT-B/32 and ViT-B/16 at two layers a tower (the
# blocks repeat), ViT-L/14 at one, and the default ViT-B/32 whole (12 + 12 layers, 151M parameters; slow).
CASES = {"ViT-B/32, 2+2 layers": ("b32", 2, 2), "ViT-B/16, 2+2 layers": ("b16", 2, 2),
         "ViT-L/14, 1+1 layers": ("l14", 1, 1), "ViT-B/32, 12+12 layers": ("b32", None, None)}


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module",
                params=[pytest.param(case, marks=[pytest.mark.slow] if i else []) for i, case in enumerate(CASES)])
def pair(request, tmp_path_factory):
    shape, vision_layers, text_layers = CASES[request.param]
    reference = random_clip(clip_config(shape, vision_layers, text_layers))
    folder = tmp_path_factory.mktemp("hf")
    reference.save_pretrained(folder)
    result = convert_with_cli(folder, folder / "clip.npz")
    assert result.returncode == 0, result.stderr
    return reference, load_model(folder / "clip.npz"), shape


def test_text_features_match(pair):
    reference, model, _ = pair
    ids = model.tokenize(TEXTS)
    assert ids[-1, -1] == model.tokenizer.end  # the long text fills the context
    with torch.no_grad():
        expected = reference.get_text_features(input_ids=torch.from_numpy(ids)).pooler_output.numpy()
    ours = model.encode_texts(ids)
    assert ours.shape == expected.shape == (len(TEXTS), model.dim)
    assert np.abs(unit(ours) - unit(expected)).max() <= 1e-4
    assert np.abs(model.embed_texts(TEXTS) - unit(expected)).max() <= 1e-4
    assert np.abs(model.encode_texts(ids[2:3]) - ours[2:3]).max() <= 1e-5  # alone or in a batch


def test_image_features_match_through_the_reference_processor(pair):
    reference, model, shape = pair
    images = [Image.open(p) for p in PHOTOS]
    pixels = CLIPImageProcessorPil()(images, return_tensors="np")["pixel_values"]
    with torch.no_grad():
        expected = reference.get_image_features(pixel_values=torch.from_numpy(pixels)).pooler_output.numpy()
    assert np.abs(unit(model.encode_images(pixels)) - unit(expected)).max() <= 1e-4
    ours = model.embed_images(PHOTOS, batch_size=3)  # our own preprocessing, in two batches
    assert ours.shape == (len(PHOTOS), model.dim)
    assert np.abs(ours - unit(expected)).max() <= 1e-4
    config = model.config
    assert (config.patch_size, config.vision.hidden_size, config.text.hidden_size) == {
        "b32": (32, 768, 512), "b16": (16, 768, 512), "l14": (14, 1024, 768)}[shape]


def test_other_widths_heads_and_gelu_come_from_config_json(tmp_path):
    """Widths that are not multiples of 64 need config.json's head counts; hidden_act 'gelu' is the erf GELU."""
    config = CLIPConfig(vision_config=dict(hidden_size=96, intermediate_size=200, num_hidden_layers=2,
                                           num_attention_heads=4, patch_size=32, image_size=64, hidden_act="gelu",
                                           layer_norm_eps=1e-6),
                        text_config=dict(hidden_size=96, intermediate_size=160, num_hidden_layers=2,
                                         num_attention_heads=3, eos_token_id=2, hidden_act="gelu",
                                         max_position_embeddings=16),
                        projection_dim=48)
    reference = random_clip(config, seed=4)
    reference.save_pretrained(tmp_path / "hf")
    result = convert_with_cli(tmp_path / "hf", tmp_path / "w.npz")
    assert result.returncode == 0, result.stderr
    model = load_model(tmp_path / "w.npz")
    assert (model.config.vision.num_heads, model.config.text.num_heads) == (4, 3)
    assert model.config.vision.activation == "gelu" and model.config.vision.layer_norm_eps == 1e-6
    ids = model.tokenize(["a cat", "a very long caption that does not fit in sixteen tokens at all, no"])
    assert ids.shape == (2, 16)
    pixels = np.random.default_rng(0).standard_normal((2, 3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        text = reference.get_text_features(input_ids=torch.from_numpy(ids)).pooler_output.numpy()
        image = reference.get_image_features(pixel_values=torch.from_numpy(pixels)).pooler_output.numpy()
    assert np.abs(unit(model.encode_texts(ids)) - unit(text)).max() <= 1e-4
    assert np.abs(unit(model.encode_images(pixels)) - unit(image)).max() <= 1e-4

    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(tmp_path / "hf" / "model.safetensors", alone)  # without its config.json
    result = convert_with_cli(alone / "model.safetensors", tmp_path / "x.npz")
    assert result.returncode == 2 and "cannot infer the head count for width 96" in result.stderr


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A one-layer ViT-B/32-shaped checkpoint folder (no tokenizer files in it) and its conversion."""
    folder = tmp_path_factory.mktemp("b32")
    random_clip(clip_config("b32", 1, 1), seed=1).save_pretrained(folder / "hf")
    assert convert_with_cli(folder / "hf", folder / "w.npz").returncode == 0
    return folder


def test_refusals(converted, tmp_path):
    result = subprocess.run([sys.executable, "-m", "clip_numpy", "convert", str(converted / "hf"),
                             str(tmp_path / "w.npz")], capture_output=True, text=True)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "pass --vocab" in lines[0]
    assert not (tmp_path / "w.npz").exists()
    (tmp_path / "short.txt").write_text("#version: 0.2\nt h\n")
    with pytest.raises(WeightsError, match="does not hold the 48894 merges"):
        convert(converted / "hf", tmp_path / "w.npz", vocab=tmp_path / "short.txt")
    save_npz(tmp_path / "dino.npz", {"embeddings.cls_token": np.zeros((1, 1, 8))}, {"model": "dinov2-small"})
    with pytest.raises(WeightsError, match="holds no CLIP weights"):
        load_model(tmp_path / "dino.npz")


def test_info_and_the_stored_tokenizer(converted):
    result = subprocess.run([sys.executable, "-m", "clip_numpy", "info", str(converted / "w.npz")],
                            capture_output=True, text=True)
    info = json.loads(result.stdout)
    assert info["config"]["vision"]["num_layers"] == 1 and info["metadata"]["vocab_source"].endswith(".txt.gz")
    assert info["metadata"]["tokenizer"] == "49408 tokens, context 77" and "bpe_merges" not in info["metadata"]
    stored = load_model(converted / "w.npz").tokenizer
    direct = Tokenizer(read_merges(open_clip_vocab(), 49408))
    assert np.array_equal(stored(TEXTS), direct(TEXTS))


def test_random_stand_in_weights_load_in_their_shape(tmp_path):
    config = openai_config("b16", 1, 1)
    write_random(tmp_path / "r.npz", config, open_clip_vocab(), seed=3)
    model = load_model(tmp_path / "r.npz")
    assert model.config == config and model.metadata["source"] == "random (seed 3)"
    texts = model.embed_texts(["a", "b c"])
    images = model.embed_images([PHOTOS[0]])
    assert texts.shape == (2, 512) and images.shape == (1, 512)
    assert np.allclose(np.linalg.norm(np.concatenate([texts, images]), axis=1), 1, atol=1e-5)
