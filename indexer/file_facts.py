"""What the index keeps of each file (size, modification time, content hash, photo metadata), as columns
aligned with a segment's rows rather than one JSON document of a million dicts: the fixed-width facts in one
structured array (``FACT_COLUMNS``), memory-mapped, and each row's metadata as compact JSON in one byte
array that is decoded only for the rows asked for. A start-up reads neither; a filter reads four columns
(capture time, camera, width and height, orientation) held beside the hashes; a listing decodes the
metadata of the rows it shows.

``FileFacts`` is a read-only mapping (path -> ``{"size", "mtime_ns", "sha256", "meta"}``) over those columns,
so code that asks for one file's facts reads them as before.

Files, in a generation folder, for a segment whose files start with ``prefix``: ``<prefix>facts.npy``
(the columns), ``<prefix>facts-meta.npy`` (the metadata bytes, uint8) and ``<prefix>facts.json`` (the names
of the cameras the camera column codes, and the format version).
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .atomic import atomic_write
from .exif import ORIENTATIONS

FORMAT = 1
FACT_COLUMNS = np.dtype([
    ("size", "<i8"),  # -1: no facts recorded for this row
    # The modification time in whole seconds and the nanoseconds beyond (a time in year 10000 passes int64 ns).
    ("mtime_s", "<i8"), ("mtime_frac", "<i4"),
    ("sha256", "S32"),  # the digest's bytes (NumPy drops trailing NUL bytes when it reads one: ``_hex``)
    ("meta_end", "<i8"),  # the end of this row's metadata in the metadata bytes (the previous row's: its start)
    ("taken", "<i8"),  # capture time, whole seconds since 1970 as datetime64[s] counts them; NaT when unknown
    ("camera", "<i4"),  # a code into the cameras list; -1 when unknown
    ("width", "<i4"), ("height", "<i4"),  # -1 when unknown
    ("orientation", "i1"),  # an index into ORIENTATIONS; -1 when unknown
])
NAT = np.iinfo(np.int64).min  # what datetime64 reads as NaT


class FileFacts(Mapping[str, dict]):
    """The facts of one segment's files, row by row in the order of ``paths``."""

    def __init__(self, paths: Sequence[str], columns: np.ndarray, meta: np.ndarray, cameras: list[str],
                 legacy: bool = False) -> None:
        if len(columns) != len(paths):
            raise ValueError(f"{len(columns)} rows of file facts for {len(paths)} paths")
        self.paths = paths
        # Plain arrays over the same memory: indexing a memmap costs a microsecond more, a million times over.
        self.columns = np.asarray(columns)
        self.meta_bytes = np.asarray(meta)
        self.cameras = cameras
        self.legacy = legacy  # read from an older index's JSON manifest: a build rewrites it in this form
        self._rows: dict[str, int] | None = None
        self._order: np.ndarray | None = None

    @classmethod
    def from_dicts(cls, paths: Sequence[str], files: Mapping[str, dict], legacy: bool = False) -> "FileFacts":
        """The columns of ``files`` (path -> facts, as a plan records them) for the rows ``paths``."""
        cameras: dict[str, int] = {}
        values, chunks, end = [], [], 0
        for path in paths:
            info = files.get(path)
            if info is None:
                values.append((-1, 0, 0, b"", end, NAT, -1, -1, -1, -1))
                continue
            meta = info.get("meta")
            encoded = b"" if meta is None else json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()
            chunks.append(encoded)
            end += len(encoded)
            values.append((info["size"], *divmod(info["mtime_ns"], 10**9), bytes.fromhex(info["sha256"]), end,
                           *_filter_values(meta or {}, cameras)))
        columns = np.array(values, FACT_COLUMNS) if values else np.zeros(0, FACT_COLUMNS)
        meta_bytes = np.frombuffer(b"".join(chunks), np.uint8)
        return cls(paths, columns, meta_bytes, list(cameras), legacy)

    def take(self, rows: np.ndarray) -> "FileFacts":
        """The facts of ``rows`` (row numbers), in that order."""
        return FileFacts.concat([(self, np.asarray(rows, np.int64))])

    @classmethod
    def concat(cls, parts: Sequence[tuple["FileFacts", np.ndarray]]) -> "FileFacts":
        """The ``rows`` (row numbers, or a boolean mask) of each part, one after the other, as one table."""
        paths: list[str] = []
        columns, metas, cameras = [], [], {}
        offset = 0
        for facts, rows in parts:
            rows = np.flatnonzero(rows) if rows.dtype == bool else rows
            picked = facts.columns[rows].copy()
            starts = facts._starts()[rows]
            lengths = picked["meta_end"] - starts
            metas.append(facts.meta_bytes[_ranges(starts, lengths)])
            picked["meta_end"] = offset + np.cumsum(lengths)
            offset += int(lengths.sum())
            recode = np.array([cameras.setdefault(c, len(cameras)) for c in facts.cameras] + [-1], np.int32)
            picked["camera"] = recode[picked["camera"]]  # -1 picks the last entry: -1
            columns.append(picked)
            paths.extend(facts.paths[r] for r in rows.tolist())
        meta = np.concatenate(metas) if metas else np.zeros(0, np.uint8)
        table = np.concatenate(columns) if columns else np.zeros(0, FACT_COLUMNS)
        return cls(paths, table, meta, list(cameras))

    def _starts(self) -> np.ndarray:
        ends = self.columns["meta_end"]
        return np.concatenate([[0], ends[:-1]]).astype(np.int64) if len(ends) else np.zeros(0, np.int64)

    def row_of(self, path: str) -> int | None:
        """The row of ``path``, or None."""
        if self._rows is None:
            self._rows = {p: r for r, p in enumerate(self.paths)}
        return self._rows.get(path)

    def has(self, row: int) -> bool:
        """Whether facts were recorded for a row."""
        return bool(self.columns["size"][row] >= 0)

    def facts(self, row: int) -> dict:
        """A row's facts as a plan records them; empty when none were recorded, and without ``meta`` when the
        file's metadata were never read (an index from before them: the next plan reads them)."""
        entry = self.columns[row]
        if entry["size"] < 0:
            return {}
        facts = {"size": int(entry["size"]), "mtime_ns": self.mtime_ns(row), "sha256": _hex(entry["sha256"])}
        if self._meta_length(row):
            facts["meta"] = self.meta(row)
        return facts

    def meta(self, row: int) -> dict:
        """A row's photo metadata (``indexer.exif.read_metadata``)."""
        end = int(self.columns["meta_end"][row])
        start = end - self._meta_length(row)
        return json.loads(self.meta_bytes[start:end].tobytes()) if end > start else {}

    def _meta_length(self, row: int) -> int:
        """The bytes of a row's metadata: 0 when none were recorded (an empty dict is two, ``{}``)."""
        end = int(self.columns["meta_end"][row])
        return end - (int(self.columns["meta_end"][row - 1]) if row else 0)

    def mtime_ns(self, row: int) -> int:
        """A row's modification time in nanoseconds."""
        return int(self.columns["mtime_s"][row]) * 10**9 + int(self.columns["mtime_frac"][row])

    def sha256(self, row: int) -> str:
        """A row's content hash, in hex."""
        return _hex(self.columns["sha256"][row])

    def row_of_sha(self, sha256: str) -> int | None:
        """The first row holding this content, or None."""
        digests = self.columns["sha256"]
        order = self._sha_order()
        key = np.array(bytes.fromhex(sha256), "S32")
        k = int(np.searchsorted(digests[order], key))
        if k < len(order) and digests[order[k]] == key and self.has(int(order[k])):
            return int(order[k])
        return None

    def _sha_order(self) -> np.ndarray:
        if self._order is None:
            self._order = np.argsort(self.columns["sha256"], kind="stable")
        return self._order

    def __getitem__(self, path: str) -> dict:
        row = self.row_of(path)
        if row is None or not self.has(row):
            raise KeyError(path)
        return self.facts(row)

    def __contains__(self, path: object) -> bool:
        row = self.row_of(path) if isinstance(path, str) else None
        return row is not None and self.has(row)

    def __iter__(self) -> Iterator[str]:
        sizes = self.columns["size"]
        return (p for p, size in zip(self.paths, sizes.tolist()) if size >= 0)

    def __len__(self) -> int:
        return int((self.columns["size"] >= 0).sum())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FileFacts):
            return NotImplemented
        return list(self.paths) == list(other.paths) and _same_columns(self, other) and \
            all(self.meta(r) == other.meta(r) for r in _differing_meta_rows(self, other))

    __hash__ = None  # type: ignore[assignment]

    def write(self, folder: str, prefix: str = "") -> None:
        """Write the three files of these facts into a generation ``folder``."""
        columns, meta = np.ascontiguousarray(self.columns), np.ascontiguousarray(self.meta_bytes)
        atomic_write(os.path.join(folder, prefix + "facts.npy"), lambda f: np.save(f, columns))
        atomic_write(os.path.join(folder, prefix + "facts-meta.npy"), lambda f: np.save(f, meta))
        atomic_write(os.path.join(folder, prefix + "facts.json"),
                     json.dumps({"format": FORMAT, "cameras": self.cameras}).encode())


def has_facts(folder: str, prefix: str = "") -> bool:
    """Whether a segment's facts were written in this form (else an older index keeps them in JSON)."""
    return os.path.exists(os.path.join(folder, prefix + "facts.json"))


def read_facts(folder: str, paths: Sequence[str], prefix: str = "") -> FileFacts:
    """A segment's facts as ``FileFacts.write`` left them, memory-mapped."""
    with open(os.path.join(folder, prefix + "facts.json")) as f:
        head = json.load(f)
    if head.get("format") != FORMAT:
        raise ValueError(f"file facts of format {head.get('format')}, this version reads {FORMAT}")
    columns = np.load(os.path.join(folder, prefix + "facts.npy"), mmap_mode="r")
    meta = np.load(os.path.join(folder, prefix + "facts-meta.npy"), mmap_mode="r")
    if columns.dtype != FACT_COLUMNS:
        raise ValueError(f"{prefix}facts.npy has the columns {columns.dtype}, not {FACT_COLUMNS}")
    return FileFacts(paths, columns, meta, list(head["cameras"]))


def _filter_values(meta: Mapping[str, Any], cameras: dict[str, int]) -> tuple[int, int, int, int, int]:
    """The filter columns of one row's metadata: capture time, camera code, width, height, orientation."""
    camera = meta.get("camera")
    width, height = meta.get("width"), meta.get("height")
    return (_seconds(meta.get("taken_at")),
            cameras.setdefault(camera, len(cameras)) if isinstance(camera, str) else -1,
            int(width) if isinstance(width, (int, float)) else -1,
            int(height) if isinstance(height, (int, float)) else -1,
            ORIENTATIONS.index(meta["orientation"]) if meta.get("orientation") in ORIENTATIONS else -1)


def _seconds(iso: Any) -> int:
    """An ISO capture time as whole seconds since 1970 (its time zone dropped: capture times are local), else
    NaT."""
    try:
        when = datetime.fromisoformat(iso).replace(tzinfo=None)
    except (TypeError, ValueError):
        return NAT
    return (when - _EPOCH) // _SECOND


_EPOCH, _SECOND = datetime(1970, 1, 1), timedelta(seconds=1)


def _hex(digest: bytes) -> str:
    return digest.ljust(32, b"\0").hex()


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices ``start .. start + length`` of every range, one after the other."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(total, dtype=np.int64) + offsets


def _same_columns(a: FileFacts, b: FileFacts) -> bool:
    fixed = [n for n in FACT_COLUMNS.names if n not in ("meta_end", "camera")]
    if len(a.columns) != len(b.columns) or any(not np.array_equal(a.columns[n], b.columns[n]) for n in fixed):
        return False
    names_a = np.array(a.cameras + [None], object)[a.columns["camera"]]
    names_b = np.array(b.cameras + [None], object)[b.columns["camera"]]
    return bool(np.array_equal(names_a, names_b))


def _differing_meta_rows(a: FileFacts, b: FileFacts) -> list[int]:
    """The rows whose metadata bytes differ (equal bytes are equal metadata; unequal ones are compared as
    values, since an older index's JSON may order keys otherwise)."""
    if np.array_equal(a.columns["meta_end"], b.columns["meta_end"]) and \
            np.array_equal(np.asarray(a.meta_bytes), np.asarray(b.meta_bytes)):
        return []
    starts_a, starts_b = a._starts(), b._starts()
    ends_a, ends_b = a.columns["meta_end"], b.columns["meta_end"]
    return [r for r in range(len(ends_a)) if a.meta_bytes[starts_a[r]:ends_a[r]].tobytes()
            != b.meta_bytes[starts_b[r]:ends_b[r]].tobytes()]
