"""The DINOv2 Vision Transformer: embeddings, a stack of blocks, a final LayerNorm."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .config import Dinov2Config, config_from_state_dict, validate_state
from .layers import Block, Embeddings
from .ops import layer_norm
from .parallel import can_shard, map_shards
from .preprocess import ImageInput
from .weights.npz import load_cached, load_npz


@dataclass
class Dinov2Output:
    """Named outputs of one forward pass; token axes are (batch, tokens, width)."""

    last_hidden_state: np.ndarray  # (B, 1 + R + N, D), after the final LayerNorm
    cls_token: np.ndarray  # (B, D)
    register_tokens: np.ndarray  # (B, R, D)
    patch_tokens: np.ndarray  # (B, N, D), row-major over the patch grid
    grid: tuple[int, int]  # patch rows and columns
    intermediate: dict[int, np.ndarray] = field(default_factory=dict)  # block index -> (B, 1 + R + N, D), before norm


class Dinov2:
    """DINOv2 backbone with weights in Hugging Face naming. Immutable after construction, so one instance
    can serve several threads at once."""

    def __init__(self, state: Mapping[str, np.ndarray], config: Dinov2Config, metadata: Mapping[str, Any] | None = None):
        validate_state(state, config)
        self.config = config
        self.metadata = dict(metadata or {})
        self.embeddings = Embeddings(state, config)
        self.blocks = [Block(state, f"encoder.layer.{i}.", config) for i in range(config.num_layers)]
        self.norm = (np.asarray(state["layernorm.weight"], np.float32), np.asarray(state["layernorm.bias"], np.float32))

    @property
    def dim(self) -> int:
        """Width of every token, and of the embeddings ``embed`` returns."""
        return self.config.hidden_size

    @property
    def name(self) -> str:
        return str(self.metadata.get("model", "dinov2"))

    def __call__(self, pixels: np.ndarray, intermediate_layers: Iterable[int] = (),
                 depth: int | None = None) -> Dinov2Output:
        """Run the backbone on float32 ``pixels`` of shape (B, 3, H, W), H and W multiples of the patch size.

        ``intermediate_layers`` lists block indices (0-based, negative counts from the end) whose raw
        outputs are returned in ``Dinov2Output.intermediate``. ``depth`` runs only the first ``depth``
        blocks: the final LayerNorm then applies to block ``depth - 1``'s output, and the blocks after it
        cost nothing.
        """
        pixels = np.asarray(pixels, dtype=np.float32)
        if pixels.ndim != 4:
            raise ValueError(f"pixels must have shape (B, 3, H, W), got {pixels.shape}")
        layers = self.config.num_layers
        depth = layers if depth is None else depth
        if not 1 <= depth <= layers:
            raise ValueError(f"depth must be between 1 and {layers}, got {depth}")
        wanted = frozenset(i % layers for i in intermediate_layers if -layers <= i < layers) & frozenset(range(depth))
        batch = pixels.shape[0]
        if can_shard(batch):
            parts = map_shards(lambda s: self._forward(pixels[s], wanted, depth), batch)
            hidden = np.concatenate([p[0] for p in parts])
            intermediate = {i: np.concatenate([p[1][i] for p in parts]) for i in wanted}
        else:
            hidden, intermediate = self._forward(pixels, wanted, depth)
        r = self.config.num_registers
        p = self.config.patch_size
        return Dinov2Output(
            last_hidden_state=hidden,
            cls_token=hidden[:, 0],
            register_tokens=hidden[:, 1:1 + r],
            patch_tokens=hidden[:, 1 + r:],
            grid=(pixels.shape[2] // p, pixels.shape[3] // p),
            intermediate=intermediate,
        )

    def _forward(self, pixels: np.ndarray, wanted: frozenset[int], depth: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        batch = pixels.shape[0]
        tokens = self.embeddings(pixels)
        n = tokens.shape[1]
        x = tokens.reshape(batch * n, -1)
        intermediate: dict[int, np.ndarray] = {}
        for i, block in enumerate(self.blocks[:depth]):
            x = block(x, batch)
            if i in wanted:
                intermediate[i] = x.reshape(batch, n, -1).copy()
        return layer_norm(x, *self.norm, self.config.layer_norm_eps).reshape(batch, n, -1), intermediate

    def final_norm(self, tokens: np.ndarray) -> np.ndarray:
        """The model's final LayerNorm applied to ``tokens`` (..., D), e.g. an intermediate block's output."""
        return layer_norm(np.ascontiguousarray(tokens, np.float32), *self.norm, self.config.layer_norm_eps)

    def embed(self, images: Sequence[ImageInput], batch_size: int = 8, descriptor: Any = None) -> np.ndarray:
        """Unit descriptors (len(images), width) of PIL images, paths or encoded bytes, prepared and pooled
        as ``descriptor`` says (``dinov2_numpy.descriptor``; by default the one stored with the weights).
        Images that come out in different shapes (whole-image preprocessing) run in separate batches."""
        from .descriptor import by_shape, describe, descriptor_of, prepare
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        descriptor = descriptor or descriptor_of(self)
        parts = [by_shape(lambda pixels: describe(self, pixels, descriptor),
                          [prepare(im, descriptor, self.config.patch_size) for im in images[start:start + batch_size]])
                 for start in range(0, len(images), batch_size)]
        return np.concatenate(parts) if parts else np.empty((0, descriptor.width(self)), np.float32)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Scale each row to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, np.float32(1e-12), out=norms)
    return (x / norms).astype(np.float32)


def load_model(path: str | os.PathLike) -> Dinov2:
    """Load a canonical ``.npz``. Tensors are memory-mapped, and a file already loaded in this process
    (same path, size and modification time) returns the same model."""
    return load_cached(path, _build)


def _build(path: str) -> Dinov2:
    state, metadata = load_npz(path)
    config = config_from_state_dict(state, metadata.get("num_heads"))
    config = replace(
        config,
        layer_norm_eps=float(metadata.get("layer_norm_eps", config.layer_norm_eps)),
        interpolate_antialias=bool(metadata.get("interpolate_antialias", config.interpolate_antialias)),
    )
    return Dinov2(state, config, metadata)
