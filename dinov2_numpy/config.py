"""Model hyper-parameters, read from the weights rather than hard-coded."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class Dinov2Config:
    """Shape of a DINOv2 backbone (ViT-S/B/L/g, with or without registers)."""

    hidden_size: int
    num_layers: int
    num_heads: int
    patch_size: int
    num_registers: int
    num_positions: int  # patch positions the position embedding was trained for (37 x 37 for Meta's)
    mlp_hidden: int
    swiglu: bool
    layer_norm_eps: float = 1e-6
    # Meta's register models resize position embeddings with an antialiasing filter, the others without.
    interpolate_antialias: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def grid_size(self) -> int:
        return math.isqrt(self.num_positions)


# Published widths have 64-dimensional heads; the head count is not stored in the weights.
HEAD_DIM = 64


class WeightsError(ValueError):
    """The weights are missing a tensor or have an unexpected shape."""


def config_from_state_dict(state: Mapping[str, np.ndarray], num_heads: int | None = None) -> Dinov2Config:
    """Infer the configuration from a state dict in Hugging Face naming."""
    def need(name: str) -> np.ndarray:
        if name not in state:
            raise WeightsError(f"the weights have no tensor '{name}'")
        return state[name]

    cls = need("embeddings.cls_token")
    hidden = int(cls.shape[-1])
    proj = need("embeddings.patch_embeddings.projection.weight")
    if proj.ndim != 4 or proj.shape[0] != hidden or proj.shape[2] != proj.shape[3]:
        raise WeightsError(f"patch projection has shape {tuple(proj.shape)}, expected ({hidden}, 3, P, P)")
    pos = need("embeddings.position_embeddings")
    num_positions = int(pos.shape[1]) - 1
    if math.isqrt(num_positions) ** 2 != num_positions:
        raise WeightsError(f"position embedding has {num_positions} patch positions, not a square grid")
    layers = 0
    while f"encoder.layer.{layers}.norm1.weight" in state:
        layers += 1
    if layers == 0:
        raise WeightsError("the weights have no transformer layers ('encoder.layer.0.*')")
    swiglu = "encoder.layer.0.mlp.weights_in.weight" in state
    if swiglu:
        mlp_hidden = int(need("encoder.layer.0.mlp.weights_out.weight").shape[1])
    else:
        mlp_hidden = int(need("encoder.layer.0.mlp.fc1.weight").shape[0])
    registers = state.get("embeddings.register_tokens")
    num_registers = 0 if registers is None else int(registers.shape[1])
    if num_heads is None:
        if hidden % HEAD_DIM:
            raise WeightsError(f"cannot infer the head count for width {hidden}; pass num_heads")
        num_heads = hidden // HEAD_DIM
    return Dinov2Config(
        hidden_size=hidden,
        num_layers=layers,
        num_heads=num_heads,
        patch_size=int(proj.shape[-1]),
        num_registers=num_registers,
        num_positions=num_positions,
        mlp_hidden=mlp_hidden,
        swiglu=swiglu,
        interpolate_antialias=num_registers > 0,
    )


def expected_shapes(config: Dinov2Config) -> dict[str, tuple[int, ...]]:
    """Every tensor the model reads, with its shape, in Hugging Face naming."""
    d, p = config.hidden_size, config.patch_size
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.cls_token": (1, 1, d),
        "embeddings.position_embeddings": (1, config.num_positions + 1, d),
        "embeddings.patch_embeddings.projection.weight": (d, 3, p, p),
        "embeddings.patch_embeddings.projection.bias": (d,),
        "layernorm.weight": (d,),
        "layernorm.bias": (d,),
    }
    if config.num_registers:
        shapes["embeddings.register_tokens"] = (1, config.num_registers, d)
    for i in range(config.num_layers):
        p_ = f"encoder.layer.{i}."
        for name in ("norm1", "norm2"):
            shapes[p_ + name + ".weight"] = (d,)
            shapes[p_ + name + ".bias"] = (d,)
        for name in ("query", "key", "value"):
            shapes[p_ + f"attention.attention.{name}.weight"] = (d, d)
            shapes[p_ + f"attention.attention.{name}.bias"] = (d,)
        shapes[p_ + "attention.output.dense.weight"] = (d, d)
        shapes[p_ + "attention.output.dense.bias"] = (d,)
        shapes[p_ + "layer_scale1.lambda1"] = (d,)
        shapes[p_ + "layer_scale2.lambda1"] = (d,)
        h = config.mlp_hidden
        if config.swiglu:
            shapes[p_ + "mlp.weights_in.weight"] = (2 * h, d)
            shapes[p_ + "mlp.weights_in.bias"] = (2 * h,)
            shapes[p_ + "mlp.weights_out.weight"] = (d, h)
            shapes[p_ + "mlp.weights_out.bias"] = (d,)
        else:
            shapes[p_ + "mlp.fc1.weight"] = (h, d)
            shapes[p_ + "mlp.fc1.bias"] = (h,)
            shapes[p_ + "mlp.fc2.weight"] = (d, h)
            shapes[p_ + "mlp.fc2.bias"] = (d,)
    return shapes


def check_shapes(state: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]]) -> None:
    """Raise ``WeightsError`` naming the first tensor of ``expected`` that ``state`` lacks or has in another shape."""
    for name, shape in expected.items():
        if name not in state:
            raise WeightsError(f"the weights have no tensor '{name}'")
        if tuple(state[name].shape) != shape:
            raise WeightsError(f"tensor '{name}' has shape {tuple(state[name].shape)}, expected {shape}")


def validate_state(state: Mapping[str, np.ndarray], config: Dinov2Config) -> None:
    """Raise ``WeightsError`` naming the first missing or misshapen tensor."""
    check_shapes(state, expected_shapes(config))
    if config.hidden_size % config.num_heads:
        raise WeightsError(f"width {config.hidden_size} is not divisible by {config.num_heads} heads")
