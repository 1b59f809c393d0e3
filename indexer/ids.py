"""The one public identity of a gallery picture: a hash of its path relative to the gallery folder.

The same number in the index, every vector backend, the database and the API, and stable across rebuilds for
as long as the file keeps its path. 53 bits, so that it is exact as a JSON number in every browser; at a
million pictures the chance that two paths share an id is about 1 in 18,000, and the builder refuses the
second path of such a pair rather than confuse them.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

ID_BITS = 53
SCHEME = "sha256-53"  # recorded in each index manifest


def image_id(path: str) -> int:
    """The id of the picture at ``path`` (relative, forward slashes). Names that are not valid UTF-8 (kept by
    Python as surrogate escapes) hash by their original bytes."""
    raw = path.encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.sha256(raw).digest()[:8], "big") & ((1 << ID_BITS) - 1)


def image_ids(paths: Sequence[str]) -> np.ndarray:
    """``image_id`` of each path, as int64."""
    return np.fromiter((image_id(p) for p in paths), dtype=np.int64, count=len(paths))
