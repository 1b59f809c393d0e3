"""The rows a build can reuse, by content hash: the replaced index's, read from its memory-mapped matrices
only when the new generation is written (a million of them are never copied into a dict of arrays, which
cost a build at 1M pictures several GB), and the rows added since (resumed from the work cache, or embedded
now). A row is an embedding followed by its colour histogram (``indexer.colour.with_colour``)."""
from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np

from . import colour
from .generations import COLOURS, FEATURES, GalleryIndex


class StoredRows:
    """Rows by content hash (``sha in rows``, ``rows.update``, as ``indexer.plan`` uses a dict of them);
    ``write`` gathers the embeddings and colour histograms of all a generation holds into its files."""

    def __init__(self, index: GalleryIndex | None, width: int) -> None:
        self.width = width  # of an embedding
        self._added: dict[str, np.ndarray] = {}
        self._index = index if _reusable(index) else None
        self._row_of: dict[str, int] = {}
        if self._index is not None:
            facts = self._index.facts
            self._row_of = {facts.sha256(r): r for r in np.flatnonzero(facts.columns["size"] >= 0).tolist()}

    def __contains__(self, sha: object) -> bool:
        return sha in self._added or sha in self._row_of

    def update(self, pairs: Iterable[tuple[str, np.ndarray]] | dict) -> None:
        """Add rows (a dict, or ``(sha, row)`` pairs)."""
        self._added.update(pairs)

    def write(self, shas: Sequence[str], folder: str) -> tuple[np.ndarray, np.ndarray]:
        """``(embeddings, colour histograms)`` of the rows ``shas``, in that order, written a chunk at a time
        to ``folder`` (``FEATURES``, ``COLOURS``) and returned memory-mapped. At a million pictures neither
        the two matrices (2 GB) nor the pages of the replaced index's ever stay in memory: each chunk's pages
        of those are let go once copied. The rows are then gone from here: a build writes them once."""
        os.makedirs(folder, exist_ok=True)
        paths = [os.path.join(folder, name) for name in (FEATURES, COLOURS)]
        with open(paths[0], "wb") as embeddings, open(paths[1], "wb") as colours:
            for out, width in ((embeddings, self.width), (colours, colour.DIM)):
                np.lib.format.write_array_header_1_0(out, {"descr": "<f4", "fortran_order": False,
                                                          "shape": (len(shas), width)})
            for start in range(0, len(shas), _GATHER):  # a bounded temporary whatever the library's size
                for out, part in zip((embeddings, colours), colour.split(self._chunk(shas[start:start + _GATHER]),
                                                                           self.width)):
                    out.write(part.tobytes())
            for f in (embeddings, colours):
                f.flush()
                os.fsync(f.fileno())
        self._added, self._row_of = {}, {}
        return tuple(np.load(path, mmap_mode="r") for path in paths)

    def _chunk(self, shas: Sequence[str]) -> np.ndarray:
        """The rows ``shas`` as one matrix of embeddings and colour histograms side by side."""
        out = np.empty((len(shas), self.width + colour.DIM), np.float32)
        stored = [(k, self._row_of[sha]) for k, sha in enumerate(shas) if sha not in self._added]
        if stored:
            at, rows = (np.array(c, np.int64) for c in zip(*stored))
            out[at, :self.width] = self._index.vectors(rows)
            out[at, self.width:] = self._index.colours_of(rows)
            self._index.release_pages()
        added = [(k, self._added[sha]) for k, sha in enumerate(shas) if sha in self._added]
        if added:
            out[[k for k, _ in added]] = np.stack([row for _, row in added])
        return out


_GATHER = 1 << 16  # rows copied at a time


def _reusable(index: GalleryIndex | None) -> bool:
    """Whether an index's rows can be reused: an index made before colours, or with other ones, is embedded
    again."""
    return index is not None and index.manifest.get("colour") == colour.VERSION and index.has_colours
