"""Every size and option against transformers' Dinov2Model with random weights, through our converter."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import (
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
)

from dinov2_numpy import load_model

META = dict(image_size=518, patch_size=14)  # Meta's 37 x 37 position grid, resized for every input below
CASES = {
    "small": (Dinov2Model, Dinov2Config(hidden_size=384, num_hidden_layers=2, num_attention_heads=6, **META), (224, 224)),
    "base": (Dinov2Model, Dinov2Config(hidden_size=768, num_hidden_layers=2, num_attention_heads=12, **META), (224, 224)),
    "small-registers-nonsquare": (
        Dinov2WithRegistersModel,
        Dinov2WithRegistersConfig(hidden_size=384, num_hidden_layers=2, num_attention_heads=6, num_register_tokens=4,
                                  **META),
        (280, 196)),
    "base-registers": (
        Dinov2WithRegistersModel,
        Dinov2WithRegistersConfig(hidden_size=768, num_hidden_layers=2, num_attention_heads=12, num_register_tokens=4,
                                  **META),
        (224, 224)),
    "swiglu-like-giant-nonsquare": (
        Dinov2Model, Dinov2Config(hidden_size=128, num_hidden_layers=3, num_attention_heads=2, use_swiglu_ffn=True,
                                **META),
        (196, 280)),
    "native-grid": (Dinov2Model, Dinov2Config(hidden_size=384, num_hidden_layers=1, num_attention_heads=6,
                                              image_size=224, patch_size=14), (224, 224)),
}


def build_reference(kind, config, seed=0):
    """A random-init reference whose LayerScale, norms and tokens are far from their initial values."""
    torch.manual_seed(seed)
    model = kind(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lambda1" in name or "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
            elif "position" in name or "register" in name or "cls_token" in name:
                p.normal_()
    return model


@pytest.mark.parametrize("case", list(CASES))
def test_matches_transformers(case, tmp_path):
    kind, config, (h, w) = CASES[case]
    reference = build_reference(kind, config)
    reference.save_pretrained(tmp_path / "hf")
    dst = tmp_path / "w.npz"
    subprocess.run([sys.executable, "-m", "dinov2_numpy", "convert", str(tmp_path / "hf" / "model.safetensors"), str(dst)],
                   check=True, capture_output=True)
    pixels = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = reference(pixels, output_hidden_states=True)
    ours = load_model(dst)(pixels.numpy(), intermediate_layers=[0, -1])
    expected = ref.last_hidden_state.numpy()
    assert ours.last_hidden_state.shape == expected.shape
    assert np.abs(ours.last_hidden_state - expected).max() <= 1e-4
    assert np.abs(ours.intermediate[0] - ref.hidden_states[1].numpy()).max() <= 1e-4
    assert np.abs(ours.intermediate[config.num_hidden_layers - 1] - ref.hidden_states[-1].numpy()).max() <= 1e-4
    registers = getattr(config, "num_register_tokens", 0)
    assert ours.register_tokens.shape == (2, registers, config.hidden_size)
    assert ours.patch_tokens.shape == (2, (h // 14) * (w // 14), config.hidden_size)
    assert ours.grid == (h // 14, w // 14)
    assert np.array_equal(ours.cls_token, ours.last_hidden_state[:, 0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_checkpoints(dtype, tmp_path):
    """fp16 and bf16 files convert exactly: the result equals the reference run on the rounded weights."""
    kind, config, (h, w) = CASES["small-registers-nonsquare"]
    reference = build_reference(kind, config, seed=3)
    reference.to(dtype).save_pretrained(tmp_path / "hf")
    reference = reference.to(torch.float32)  # the same rounded weights, computed in float32
    dst = tmp_path / "w.npz"
    result = subprocess.run([sys.executable, "-m", "dinov2_numpy", "convert",
                             str(tmp_path / "hf" / "model.safetensors"), str(dst)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert ("bf16" if dtype == torch.bfloat16 else "f16") in result.stdout
    pixels = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = reference(pixels).last_hidden_state.numpy()
    model = load_model(dst)
    assert model.metadata["source_dtype"] == ("bf16" if dtype == torch.bfloat16 else "f16")
    assert np.abs(model(pixels.numpy()).last_hidden_state - expected).max() <= 1e-4
