"""The persisted gallery index: ``gallery_features.npy`` (float32, N x D, L2-normalised), ``image_paths.json``
(paths relative to the images folder, same order) and ``manifest.json``.

Each build writes a new generation folder and then switches the ``current`` symlink to it with one atomic
rename, so a reader (or a crash at any moment) sees either the old three files or the new three, never a mix.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .atomic import atomic_write
from .ids import image_ids

FEATURES = "gallery_features.npy"
PATHS = "image_paths.json"
MANIFEST = "manifest.json"
CURRENT = "current"
GENERATIONS = "generations"
KEEP_GENERATIONS = 2  # the previous one stays for readers that resolved it just before a switch


class IndexFilesError(RuntimeError):
    """The index folder is missing or its files disagree."""


@dataclass
class GalleryIndex:
    """One consistent generation of the index."""

    features: np.ndarray  # (N, D) float32, memory-mapped when loaded
    paths: list[str]
    manifest: dict[str, Any] = field(default_factory=dict)
    location: str | None = None  # the generation folder it was loaded from

    def __post_init__(self) -> None:
        if len(self.paths) != self.features.shape[0]:
            raise IndexFilesError(f"{len(self.paths)} paths but {self.features.shape[0]} feature rows")

    @property
    def dim(self) -> int:
        return int(self.features.shape[1]) if self.features.ndim == 2 else 0

    def __len__(self) -> int:
        return len(self.paths)

    @functools.cached_property
    def row_of(self) -> dict[str, int]:
        """Row number of each path."""
        return {p: i for i, p in enumerate(self.paths)}

    @functools.cached_property
    def ids(self) -> np.ndarray:
        """The public id of each row (``indexer.ids.image_id`` of its path)."""
        return image_ids(self.paths)

    @functools.cached_property
    def row_of_id(self) -> dict[int, int]:
        """Row number of each public id."""
        return {int(i): r for r, i in enumerate(self.ids)}


def current_dir(index_dir: str) -> str | None:
    """The generation folder ``current`` points at, or None if no index was built."""
    link = os.path.join(index_dir, CURRENT)
    if not os.path.islink(link) and not os.path.isdir(link):
        return None
    return os.path.realpath(link)


def load_index(index_dir: str, mmap: bool = True) -> GalleryIndex | None:
    """Load the current generation, or None when there is none yet."""
    folder = current_dir(index_dir)
    if folder is None:
        return None
    try:
        features = np.load(os.path.join(folder, FEATURES), mmap_mode="r" if mmap else None)
        with open(os.path.join(folder, PATHS)) as f:
            paths = json.load(f)
        with open(os.path.join(folder, MANIFEST)) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise IndexFilesError(f"the index in {folder} is unreadable ({e}); rebuild it with "
                              "'python build_gallery.py --rebuild'") from None
    if features.dtype != np.float32 or features.ndim != 2:
        raise IndexFilesError(f"{FEATURES} must be a float32 matrix, found {features.dtype} {features.shape}")
    return GalleryIndex(features, paths, manifest, folder)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_index(index_dir: str, index: GalleryIndex, extra: Callable[[str], None] | None = None) -> str:
    """Write a new generation and switch ``current`` to it atomically; returns the generation folder.
    ``extra(folder)`` may add files (a vector-index backend's) before the generation becomes visible."""
    generations = os.path.join(index_dir, GENERATIONS)
    os.makedirs(generations, exist_ok=True)
    name = f"{time.time_ns():020d}"  # sorts by age
    tmp = os.path.join(generations, "." + name)
    os.makedirs(tmp)
    features = np.ascontiguousarray(index.features, dtype=np.float32)
    atomic_write(os.path.join(tmp, FEATURES), lambda f: np.save(f, features))
    atomic_write(os.path.join(tmp, PATHS), json.dumps(index.paths).encode())
    atomic_write(os.path.join(tmp, MANIFEST), json.dumps(index.manifest, indent=1, sort_keys=True).encode())
    if extra is not None:
        extra(tmp)
    final = os.path.join(generations, name)
    os.rename(tmp, final)
    link_tmp = os.path.join(index_dir, f".{CURRENT}-{uuid.uuid4().hex[:8]}")
    os.symlink(os.path.join(GENERATIONS, name), link_tmp)
    os.replace(link_tmp, os.path.join(index_dir, CURRENT))
    _fsync_dir(index_dir)
    _prune(generations, keep=name)
    return final


def _prune(generations: str, keep: str) -> None:
    """Remove unfinished generations (dot folders) and all but the newest finished ones.
    Callers hold the build lock, so no other writer is using them."""
    names = os.listdir(generations)
    finished = sorted(n for n in names if not n.startswith("."))
    for n in finished[:-KEEP_GENERATIONS] + [n for n in names if n.startswith(".")]:
        if n != keep:
            shutil.rmtree(os.path.join(generations, n), ignore_errors=True)
