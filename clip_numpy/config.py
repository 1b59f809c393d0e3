"""CLIP's hyper-parameters, read from the weights (Hugging Face ``CLIPModel`` naming) rather than hard-coded."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from dinov2_numpy.config import HEAD_DIM, WeightsError, check_shapes

ACTIVATIONS = ("quick_gelu", "gelu")  # OpenAI's weights use QuickGELU; some later CLIPs the erf GELU


@dataclass(frozen=True)
class TowerConfig:
    """Shape of one transformer tower (the vision or the text encoder)."""

    prefix: str  # "vision_model." or "text_model."
    hidden_size: int
    num_layers: int
    num_heads: int
    mlp_hidden: int
    layer_norm_eps: float = 1e-5
    activation: str = "quick_gelu"

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


@dataclass(frozen=True)
class ClipConfig:
    """Shape of a CLIP model: ViT-B/32, B/16, L/14 or any other sizes."""

    vision: TowerConfig
    text: TowerConfig
    patch_size: int
    image_size: int  # the square input the position embeddings were trained for (224 for OpenAI's)
    projection_dim: int  # width of the shared image-text space
    vocab_size: int
    context_length: int  # text positions (77)

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size


def _need(state: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in state:
        raise WeightsError(f"the weights have no tensor '{name}'")
    return state[name]


def _tower(state: Mapping[str, np.ndarray], prefix: str, width: int, heads: int | None, eps: float,
           activation: str) -> TowerConfig:
    layers = 0
    while f"{prefix}encoder.layers.{layers}.layer_norm1.weight" in state:
        layers += 1
    if layers == 0:
        raise WeightsError(f"the weights have no transformer layers ('{prefix}encoder.layers.0.*')")
    if heads is None:
        if width % HEAD_DIM:
            raise WeightsError(f"cannot infer the head count for width {width}; the weights need 'num_heads' metadata")
        heads = width // HEAD_DIM
    if activation not in ACTIVATIONS:
        raise WeightsError(f"unknown activation '{activation}' (supported: {', '.join(ACTIVATIONS)})")
    mlp_hidden = int(_need(state, f"{prefix}encoder.layers.0.mlp.fc1.weight").shape[0])
    return TowerConfig(prefix, width, layers, int(heads), mlp_hidden, float(eps), activation)


def config_from_state_dict(state: Mapping[str, np.ndarray], metadata: Mapping | None = None) -> ClipConfig:
    """Infer the configuration from a state dict in Hugging Face naming; ``metadata`` may name each tower's
    head count, LayerNorm epsilon and activation (``vision_num_heads``, ``text_layer_norm_eps``, ...)."""
    meta = dict(metadata or {})

    def tower(name: str, width: int) -> TowerConfig:
        return _tower(state, f"{name}_model.", width, meta.get(f"{name}_num_heads"),
                      meta.get(f"{name}_layer_norm_eps", 1e-5), meta.get(f"{name}_hidden_act", "quick_gelu"))

    patch = _need(state, "vision_model.embeddings.patch_embedding.weight")
    if patch.ndim != 4 or patch.shape[1] != 3 or patch.shape[2] != patch.shape[3]:
        raise WeightsError(f"patch embedding has shape {tuple(patch.shape)}, expected (D, 3, P, P)")
    positions = int(_need(state, "vision_model.embeddings.position_embedding.weight").shape[0]) - 1
    grid = math.isqrt(max(positions, 0))
    if grid * grid != positions or grid == 0:
        raise WeightsError(f"the vision position embedding has {positions} patch positions, not a square grid")
    tokens = _need(state, "text_model.embeddings.token_embedding.weight")
    projection = _need(state, "visual_projection.weight")
    return ClipConfig(
        vision=tower("vision", int(patch.shape[0])),
        text=tower("text", int(tokens.shape[1])),
        patch_size=int(patch.shape[-1]),
        image_size=grid * int(patch.shape[-1]),
        projection_dim=int(projection.shape[0]),
        vocab_size=int(tokens.shape[0]),
        context_length=int(_need(state, "text_model.embeddings.position_embedding.weight").shape[0]),
    )


def _tower_shapes(tower: TowerConfig) -> dict[str, tuple[int, ...]]:
    d, h = tower.hidden_size, tower.mlp_hidden
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(tower.num_layers):
        p = f"{tower.prefix}encoder.layers.{i}."
        for name in ("layer_norm1", "layer_norm2"):
            shapes[p + name + ".weight"] = (d,)
            shapes[p + name + ".bias"] = (d,)
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[p + f"self_attn.{name}.weight"] = (d, d)
            shapes[p + f"self_attn.{name}.bias"] = (d,)
        shapes[p + "mlp.fc1.weight"] = (h, d)
        shapes[p + "mlp.fc1.bias"] = (h,)
        shapes[p + "mlp.fc2.weight"] = (d, h)
        shapes[p + "mlp.fc2.bias"] = (d,)
    return shapes


def expected_shapes(config: ClipConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor the model reads, with its shape, in Hugging Face naming."""
    dv, dt, e = config.vision.hidden_size, config.text.hidden_size, config.projection_dim
    p = config.patch_size
    shapes: dict[str, tuple[int, ...]] = {
        "vision_model.embeddings.patch_embedding.weight": (dv, 3, p, p),
        "vision_model.embeddings.class_embedding": (dv,),
        "vision_model.embeddings.position_embedding.weight": (config.grid_size ** 2 + 1, dv),
        "text_model.embeddings.token_embedding.weight": (config.vocab_size, dt),
        "text_model.embeddings.position_embedding.weight": (config.context_length, dt),
        "visual_projection.weight": (e, dv),
        "text_projection.weight": (e, dt),
    }
    for name, width in (("vision_model.pre_layrnorm", dv), ("vision_model.post_layernorm", dv),
                        ("text_model.final_layer_norm", dt)):
        shapes[name + ".weight"] = (width,)
        shapes[name + ".bias"] = (width,)
    shapes.update(_tower_shapes(config.vision))
    shapes.update(_tower_shapes(config.text))
    return shapes


def validate_state(state: Mapping[str, np.ndarray], config: ClipConfig) -> None:
    """Raise ``WeightsError`` naming the first missing or misshapen tensor."""
    check_shapes(state, expected_shapes(config))
    for tower in (config.vision, config.text):
        if tower.hidden_size % tower.num_heads:
            raise WeightsError(f"width {tower.hidden_size} is not divisible by {tower.num_heads} heads")


# OpenAI's published shapes: (vision width, layers, heads, patch), (text width, layers, heads), projection.
OPENAI_SHAPES = {
    "b32": ((768, 12, 12, 32), (512, 12, 8), 512),
    "b16": ((768, 12, 12, 16), (512, 12, 8), 512),
    "l14": ((1024, 24, 16, 14), (768, 12, 12), 768),
}


def openai_config(model: str, vision_layers: int | None = None, text_layers: int | None = None) -> ClipConfig:
    """The configuration of OpenAI's ``b32``, ``b16`` or ``l14``, optionally with fewer layers."""
    (vw, vl, vh, patch), (tw, tl, th), projection = OPENAI_SHAPES[model]
    return ClipConfig(vision=TowerConfig("vision_model.", vw, vision_layers or vl, vh, 4 * vw),
                      text=TowerConfig("text_model.", tw, text_layers or tl, th, 4 * tw),
                      patch_size=patch, image_size=224, projection_dim=projection, vocab_size=49408,
                      context_length=77)
