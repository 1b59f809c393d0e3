"""OpenAI's CLIP: a vision tower and a text tower that map pictures and texts into one space."""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from dinov2_numpy.config import WeightsError
from dinov2_numpy.model import normalize_rows
from dinov2_numpy.preprocess import ImageInput
from dinov2_numpy.weights.npz import load_cached, load_npz

from .config import ClipConfig, config_from_state_dict, validate_state
from .preprocess import preprocess
from .text import TextTower
from .tokenizer import Tokenizer
from .vision import VisionTower
from .weights.vocab import merges_from_metadata


class Clip:
    """CLIP with weights in Hugging Face naming and its tokenizer. Immutable after construction, so one
    instance can serve several threads at once."""

    def __init__(self, state: Mapping[str, np.ndarray], config: ClipConfig, metadata: Mapping[str, Any]) -> None:
        validate_state(state, config)
        self.config = config
        self.metadata = dict(metadata)
        self.tokenizer = Tokenizer(merges_from_metadata(metadata), config.context_length)
        if self.tokenizer.vocab_size != config.vocab_size:
            raise WeightsError(f"the tokenizer has {self.tokenizer.vocab_size} tokens, the weights {config.vocab_size}")
        self.vision = VisionTower(state, config)
        self.text = TextTower(state, config)

    @property
    def dim(self) -> int:
        """Width of the shared space, and of the embeddings ``embed_images`` and ``embed_texts`` return."""
        return self.config.projection_dim

    @property
    def name(self) -> str:
        return str(self.metadata.get("model", "clip"))

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) preprocessed pixels to (B, dim) image features, not normalised."""
        return self.vision(pixels)

    def encode_texts(self, ids: np.ndarray) -> np.ndarray:
        """(B, context) token ids to (B, dim) text features, not normalised."""
        return self.text(ids)

    def tokenize(self, texts: str | Iterable[str]) -> np.ndarray:
        """(N, context) int64 token ids."""
        return self.tokenizer(texts)

    def embed_images(self, images: Sequence[ImageInput], batch_size: int = 8,
                     max_pixels: int | None = None) -> np.ndarray:
        """Unit image embeddings (len(images), dim) of PIL images, paths or encoded bytes."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        size = self.config.image_size
        parts = [self.encode_images(np.stack([preprocess(im, size, max_pixels) for im in images[i:i + batch_size]]))
                 for i in range(0, len(images), batch_size)]
        return normalize_rows(np.concatenate(parts)) if parts else np.empty((0, self.dim), np.float32)

    def embed_texts(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit text embeddings (len(texts), dim), in the same space as ``embed_images``."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        parts = [self.encode_texts(self.tokenize(texts[i:i + batch_size])) for i in range(0, len(texts), batch_size)]
        return normalize_rows(np.concatenate(parts)) if parts else np.empty((0, self.dim), np.float32)


def load_model(path: str | os.PathLike) -> Clip:
    """Load a CLIP ``.npz`` made by ``python -m clip_numpy convert`` or ``fetch``. Tensors are memory-mapped,
    and a file already loaded in this process (same path, size and modification time) returns the same model."""
    return load_cached(path, _build)


def _build(path: str) -> Clip:
    state, metadata = load_npz(path)
    if metadata.get("architecture") != "clip":
        raise WeightsError(f"{path} holds no CLIP weights (convert them with python -m clip_numpy convert)")
    return Clip(state, config_from_state_dict(state, metadata), metadata)
