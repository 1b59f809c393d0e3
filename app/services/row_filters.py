"""Photo filters at index speed: the metadata columns the filters use (capture time, camera, orientation,
pixel count) held as arrays aligned with each segment's rows, read once per segment from its file facts
(segments never change, and are shared by the generations that follow), so that a filter is a boolean mask
over an index generation's rows made by a few vectorised comparisons, and the search ranks under it
(``masked_top_k``): no set of a million ids per request, no per-id lookups.

The filter's meaning is the gallery table's (``app.storage.photo_filters``): an unknown value matches no
condition on it; the camera compares case-insensitively, cut to the table's column width."""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

import numpy as np

from indexer.exif import ORIENTATIONS
from indexer.generations import GalleryIndex, Segment
from indexer.vector_index import DINOV2_SET
from indexer.vector_index.numpy_exact import top_k_rows

CAMERA_WIDTH = 120  # the gallery table's camera column: a filter names a camera as that table shows it
_BLOCK = 1 << 16  # rows scored at a time by a masked search


@dataclass(frozen=True)
class SegmentFacts:
    """One segment's filter columns, row by row."""

    taken: np.ndarray  # datetime64[s], NaT when unknown
    camera: np.ndarray  # int32 code into ``cameras``, -1 when unknown
    cameras: dict[str, int]  # lower-cased camera -> code
    orientation: np.ndarray  # int8 index into ORIENTATIONS, -1 when unknown
    pixels: np.ndarray  # float64 width x height, NaN when unknown


_facts: "weakref.WeakKeyDictionary[Segment, SegmentFacts]" = weakref.WeakKeyDictionary()
_facts_lock = threading.Lock()


def segment_facts(segment: Segment) -> SegmentFacts:
    """The filter columns of a segment, made on first use and kept while the segment is."""
    with _facts_lock:
        found = _facts.get(segment)
    if found is None:
        found = _read_facts(segment)
        with _facts_lock:
            _facts[segment] = found
    return found


def _read_facts(segment: Segment) -> SegmentFacts:
    columns = segment.files.columns
    cameras: dict[str, int] = {}
    # The segment's camera codes, merged where names differ only in case or beyond the table's width.
    recode = np.array([cameras.setdefault(c[:CAMERA_WIDTH].lower(), len(cameras)) for c in segment.files.cameras]
                      + [-1], np.int32)
    width, height = columns["width"].astype(np.float64), columns["height"].astype(np.float64)
    pixels = np.where((width >= 0) & (height >= 0), width * height, np.nan)
    return SegmentFacts(np.array(columns["taken"]).view("datetime64[s]"), recode[columns["camera"]], cameras,
                        np.array(columns["orientation"], np.int8), pixels)


def row_mask(index: GalleryIndex, f: Any) -> np.ndarray:
    """Which rows of ``index`` pass the photo filter ``f`` (``app.storage.photo_filters.PhotoFilter``)."""
    parts = []
    for segment, (_, _, live) in zip(index.segments, index.blocks()):
        parts.append(_segment_mask(segment_facts(segment), f)[live])
    return np.concatenate(parts) if parts else np.zeros(0, bool)


class PhotoRows:
    """A photo filter as the engine takes it (``Engine.search``'s ``allowed``): called with the generation a
    search runs on, the mask of its rows that pass; ``matching`` is how many did, once called."""

    def __init__(self, f: Any) -> None:
        self.filter = f
        self.matching = 0

    def __call__(self, index: GalleryIndex) -> np.ndarray:
        mask = row_mask(index, self.filter)
        self.matching = int(mask.sum())
        return mask


_by_path: "weakref.WeakKeyDictionary[GalleryIndex, np.ndarray]" = weakref.WeakKeyDictionary()


def rows_by_path(index: GalleryIndex) -> np.ndarray:
    """``index.rows_by_path`` as an array, kept with the generation (a listing under a mask indexes it)."""
    with _facts_lock:
        found = _by_path.get(index)
    if found is None:
        found = np.asarray(index.rows_by_path, np.int64)
        with _facts_lock:
            _by_path[index] = found
    return found


def _segment_mask(facts: SegmentFacts, f: Any) -> np.ndarray:
    keep = np.ones(len(facts.camera), bool)
    if f.taken_after is not None:
        keep &= facts.taken >= _day(f.taken_after, time.min)
    if f.taken_before is not None:  # the whole day, to its last second (capture times are whole seconds)
        keep &= facts.taken <= _day(f.taken_before, time(23, 59, 59))
    if f.camera is not None:
        keep &= facts.camera == facts.cameras.get(f.camera[:CAMERA_WIDTH].lower(), -2)
    if f.orientation is not None:
        keep &= facts.orientation == ORIENTATIONS.index(f.orientation)
    if f.min_megapixels is not None:
        with np.errstate(invalid="ignore"):
            keep &= facts.pixels >= f.min_megapixels * 1e6
    return keep


def _day(day: date, at: time) -> np.datetime64:
    return np.datetime64(datetime.combine(day, at), "s")


def masked_top_k(index: GalleryIndex, query: np.ndarray, mask: np.ndarray, k: int,
                 space: str = DINOV2_SET) -> list[tuple[int, float]]:
    """``(id, score)`` of the ``k`` best rows of ``index`` under ``mask`` for a unit ``query`` (D,) in the
    vector set ``space`` (the descriptors, or CLIP_SET), exactly: a narrow mask gathers its rows; a broad one
    scores every row in blocks with the others at -inf, which costs what an unfiltered exact search does and
    never copies the matrix."""
    rows = np.flatnonzero(mask)
    if len(rows) == 0 or k == 0:
        return []
    descriptors = space == DINOV2_SET
    if len(rows) * 4 <= len(mask):
        scores = (index.vectors(rows) if descriptors else index.clip_of(rows)) @ query
        best = top_k_rows(scores[None], k)[0]
        return [(int(index.ids[rows[b]]), float(scores[b])) for b in best]
    found_rows, found_scores = [], []
    start = 0  # the row number of the next live row
    for _, features, live in index.blocks() if descriptors else index.clip_blocks():
        for a in range(0, len(live), _BLOCK):
            scores = (np.asarray(features[a:a + _BLOCK]) @ query)[live[a:a + _BLOCK]]
            scores = np.where(mask[start:start + len(scores)], scores, -np.inf)
            if len(scores):
                best = top_k_rows(scores[None], k)[0]
                found_rows.append(start + best)
                found_scores.append(scores[best])
            start += len(scores)
    rows, scores = np.concatenate(found_rows), np.concatenate(found_scores)
    best = top_k_rows(scores[None], k)[0]
    return [(int(index.ids[rows[b]]), float(scores[b])) for b in best if np.isfinite(scores[b])]
