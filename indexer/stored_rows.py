"""The rows a build can reuse, by content hash: the replaced index's, read from its memory-mapped matrices
only when the new generation is written (a million of them are never copied into a dict of arrays, which
cost a build at 1M pictures several GB), and the rows added since (resumed from the work cache, or embedded
now). A row is an embedding followed by its colour histogram (``indexer.colour.with_colour``)."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from . import colour
from .generations import GalleryIndex


class StoredRows:
    """Rows by content hash (``sha in rows``, ``rows.update``, as ``indexer.plan`` uses a dict of them);
    ``matrices`` gathers the embeddings and colour histograms of many at once."""

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

    def matrices(self, shas: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(embeddings, colour histograms)`` of the rows ``shas``, in that order, as two contiguous
        float32 matrices: the stored ones gathered from the index's matrices in one pass each."""
        embeddings = np.empty((len(shas), self.width), np.float32)
        colours = np.empty((len(shas), colour.DIM), np.float32)
        stored = [(k, self._row_of[sha]) for k, sha in enumerate(shas) if sha not in self._added]
        if stored:
            at, rows = (np.array(c, np.int64) for c in zip(*stored))
            for start in range(0, len(at), _GATHER):  # a bounded temporary whatever the library's size
                part = slice(start, start + _GATHER)
                embeddings[at[part]] = self._index.vectors(rows[part])
                colours[at[part]] = self._index.colours_of(rows[part])
        added = [(k, self._added[sha]) for k, sha in enumerate(shas) if sha in self._added]
        if added:
            at = np.array([k for k, _ in added], np.int64)
            both = np.stack([row for _, row in added])
            embeddings[at], colours[at] = colour.split(both, self.width)
        return embeddings, colours


_GATHER = 1 << 16  # rows copied at a time


def _reusable(index: GalleryIndex | None) -> bool:
    """Whether an index's rows can be reused: an index made before colours, or with other ones, is embedded
    again."""
    return index is not None and index.manifest.get("colour") == colour.VERSION and index.has_colours
