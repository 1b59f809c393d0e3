"""Embeddings a build has made but not yet published, kept so that an interrupted build resumes."""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid

import numpy as np

from .atomic import atomic_write, write_json


class WorkCache:
    """Embeddings made by an unfinished build, saved batch by batch so that the next run resumes.

    Keyed by content hash and valid only for the model and preprocessing that made them.
    """

    def __init__(self, index_dir: str, key: dict, name: str = ".work") -> None:
        """``name``: the folder below ``index_dir``, one for each vector set a build makes."""
        self.folder = os.path.join(index_dir, name)
        self.key = key
        marker = os.path.join(self.folder, "fingerprint.json")
        try:
            with open(marker) as f:
                valid = json.load(f) == self.key
        except (OSError, ValueError):
            valid = False
        if not valid:
            shutil.rmtree(self.folder, ignore_errors=True)
            write_json(marker, self.key, durable=False)

    def load(self) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for name in sorted(os.listdir(self.folder)):
            if name.startswith("chunk-") and name.endswith(".npz"):
                try:
                    with np.load(os.path.join(self.folder, name)) as z:
                        found.update(zip(z["hashes"].tolist(), z["features"]))
                except (OSError, ValueError, KeyError):
                    continue  # a chunk torn by a crash: its images are simply embedded again
        return found

    def add(self, hashes: list[str], features: np.ndarray) -> None:
        name = f"chunk-{time.time_ns():020d}-{uuid.uuid4().hex[:6]}.npz"
        atomic_write(os.path.join(self.folder, name),
                     lambda f: np.savez(f, hashes=np.array(hashes), features=features.astype(np.float32)), durable=False)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
