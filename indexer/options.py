"""How a build or a gallery change runs: the options of each, with their defaults defined here once."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

import numpy as np

from .config import BATCH_SIZE, DECODE_WORKERS, MAX_IMAGE_PIXELS

Embed = Callable[[np.ndarray], np.ndarray]  # preprocessed pixels (B, 3, H, W) to unit embeddings (B, width)
Options = TypeVar("Options", bound="EmbedOptions")


@dataclass
class EmbedOptions:
    """What a build and a gallery change share: how pictures are decoded and embedded, and the settings of
    the vector backend (``VECTOR_BACKEND`` and its parameters; ``SHOW_GPS`` for the photos' positions)."""

    batch_size: int = BATCH_SIZE
    workers: int = DECODE_WORKERS  # threads decoding pictures ahead of the model
    max_pixels: int | None = MAX_IMAGE_PIXELS
    backend: Mapping[str, Any] | None = None  # None: NumPy, no positions
    clip_weights: str | None = None  # CLIP_WEIGHTS: also keep each picture's CLIP embedding (None: off)
    clip_embed: Embed | None = None  # CLIP-preprocessed pixels to unit CLIP embeddings, instead of the model's own

    def __post_init__(self) -> None:
        self.backend = dict(self.backend or {})

    @property
    def gps(self) -> bool:
        """Whether the photos' positions are read."""
        return bool(self.backend.get("SHOW_GPS"))

    @classmethod
    def from_settings(cls: type[Options], cfg: Mapping[str, Any], **fields: Any) -> Options:
        """The options ``indexer.config.load_settings`` (or the app's settings) describe, ``fields`` replaced."""
        return cls(**{"batch_size": cfg["BATCH_SIZE"], "max_pixels": cfg["MAX_IMAGE_PIXELS"], "backend": dict(cfg),
                      "clip_weights": cfg.get("CLIP_WEIGHTS") or None, **fields})

    @classmethod
    def merged(cls: type[Options], options: Options | None, fields: Mapping[str, Any]) -> Options:
        """``options`` (the defaults when None) with ``fields`` replaced: the keyword arguments of a call."""
        return dataclasses.replace(options or cls(), **fields)


@dataclass
class BuildOptions(EmbedOptions):
    """The options of a full build (``indexer.builder.build_gallery``)."""

    rebuild: bool = False  # embed everything again (after a model change)
    rebuild_on_model_change: bool = False  # rebuild instead of refusing an index made with other weights
    progress: bool = True  # a progress bar on the terminal
    log_path: str | None = None  # where the summary is appended; None: build.log in the index folder
    cluster: str | None = None  # a Dask scheduler (tcp://host:8786) or local:N, see indexer.cluster
    ship_bytes: bool = False  # with cluster: send the files' bytes, not their paths
    shard_size: int = 64  # with cluster: pictures per task
    embed: Embed | None = None  # instead of the model's own pass (the web app routes it through its queue)
    on_progress: Callable[[int, int], None] | None = None  # (done, total) as pictures are embedded
    lock_held: bool = False  # the caller holds build_lock already
