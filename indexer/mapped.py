"""Letting go of a memory-mapped matrix's pages. A build reads every row of a million-picture index once (and
FAISS copies every vector it is given): the pages read stay mapped, and count as the process's memory, until
the mapping is closed. Dropped from the process, they stay in the page cache, and a later read is served from
there."""
from __future__ import annotations

import mmap

import numpy as np


def release_pages(matrix: np.ndarray | None) -> None:
    """Drop from this process the pages it has read of a read-only memory-mapped ``matrix`` (as ``np.load``
    with ``mmap_mode="r"`` gives it); anything else is left alone."""
    mapped = getattr(matrix, "_mmap", None)
    if isinstance(mapped, mmap.mmap) and getattr(matrix, "mode", None) == "r":
        mapped.madvise(mmap.MADV_DONTNEED)
