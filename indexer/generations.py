"""The persisted gallery index: a base segment (``gallery_features.npy``, float32 N x D L2-normalised;
``image_paths.json``, paths relative to the images folder in the same order; ``facts*``, each file's size,
time, content hash and metadata as columns in the same order (``indexer.file_facts``); ``manifest.json``, the
build's settings) and, on top of it, small append-only segments written by gallery changes (``seg-*.npy``,
``seg-*.json`` with their paths, ``seg-*.facts*``) with the rows they made dead, listed in ``segments.json``.

Each build or change writes a new generation folder and then switches the ``current`` symlink to it with one
atomic rename, so a reader (or a crash at any moment) sees either the old generation or the new one, never a
mix. A change costs about its own size: the new folder hard-links the unchanged segment files of the previous
one and adds one small segment. A compaction (any full build, or ``compact``) folds the segments back into one.
Segment files never change once written, so readers cache them by inode across generations.
"""
from __future__ import annotations

import collections
import collections.abc
import functools
import json
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .atomic import atomic_write
from .file_facts import FileFacts, has_facts, read_facts
from .ids import image_ids
from .mapped import release_pages

FEATURES = "gallery_features.npy"
COLOURS = "gallery_colours.npy"  # indexer.colour histograms, same rows
CLIP = "gallery_clip.npy"  # CLIP image embeddings, same rows, when CLIP_WEIGHTS is set (indexer.clip_set)
PATHS = "image_paths.json"
MANIFEST = "manifest.json"
SEGMENTS = "segments.json"
BASE = "base"
CURRENT = "current"
GENERATIONS = "generations"
KEEP_GENERATIONS = 2  # the previous one stays for readers that resolved it just before a switch
COMPACT_SEGMENTS = 16  # segments on top of the base before a compaction is due
COMPACT_FRACTION = 0.1  # ... or segment plus dead rows above this share of the base (and at least COMPACT_MIN)
COMPACT_MIN = 1000


class IndexFilesError(RuntimeError):
    """The index folder is missing or its files disagree."""


@dataclass(eq=False)
class Segment:
    """Rows written together and never changed afterwards: the base of a generation or one gallery change."""

    name: str
    features: np.ndarray  # (n, D) float32, memory-mapped
    paths: list[str]
    files: FileFacts  # path -> {"size", "mtime_ns", "sha256", "meta"}, held as columns in row order
    manifest: dict[str, Any] = field(default_factory=dict)  # the build's, for a base
    colours: np.ndarray | None = None  # (n, indexer.colour.DIM), absent in indexes built before colours
    clip: np.ndarray | None = None  # (n, CLIP's dim) unit rows, absent when CLIP was off for these rows

    def __post_init__(self) -> None:
        if len(self.paths) != self.features.shape[0]:
            raise IndexFilesError(f"{self.name}: {len(self.paths)} paths but {self.features.shape[0]} feature rows")

    @functools.cached_property
    def ids(self) -> np.ndarray:
        return image_ids(self.paths)

    @functools.cached_property
    def _id_order(self) -> np.ndarray:
        return np.argsort(self.ids, kind="stable")

    def row_of_id(self, image_id: int) -> int | None:
        """The row holding a public id (a sorted search: a dict of a million ids costs a hundred MB)."""
        order = self._id_order
        k = int(np.searchsorted(self.ids, image_id, sorter=order))
        return int(order[k]) if k < len(order) and self.ids[order[k]] == image_id else None

    def row_of_path(self, path: str) -> int | None:
        return self.files.row_of(path)


class GalleryIndex:
    """One consistent generation: its segments in order, minus their dead rows. Rows are numbered over the
    live rows only, in segment order (the base sorted by path, then each change's rows)."""

    def __init__(self, segments: list[Segment], dead: dict[str, Iterable[int]] | None = None,
                 manifest: dict[str, Any] | None = None, location: str | None = None) -> None:
        self.segments = segments
        self.manifest = manifest or {}
        self.location = location  # the generation folder it was loaded from
        self.dead = {s.name: np.unique(np.asarray(list((dead or {}).get(s.name, ())), np.int64)) for s in segments}
        sizes = [len(s.paths) for s in segments]
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        live = np.ones(int(self._starts[-1]), bool)
        for s, start in zip(segments, self._starts):
            live[start + self.dead[s.name]] = False
        self._live_raw = np.flatnonzero(live)
        self._live = live

    @classmethod
    def single(cls, features: np.ndarray, paths: list[str], manifest: dict[str, Any],
               colours: np.ndarray | None = None, clip: np.ndarray | None = None) -> "GalleryIndex":
        """A generation of one segment (what a full build writes)."""
        files = manifest.get("files", {})
        facts = files if isinstance(files, FileFacts) else FileFacts.from_dicts(paths, files)
        return cls([Segment(BASE, features, paths, facts, colours=colours, clip=clip)],
                   manifest={k: v for k, v in manifest.items() if k != "files"})

    def __len__(self) -> int:
        return len(self._live_raw)

    @property
    def dim(self) -> int:
        features = self.segments[0].features if self.segments else np.empty((0, 0))
        return int(features.shape[1]) if features.ndim == 2 else 0

    def _locate(self, raw: int) -> tuple[Segment, int]:
        k = int(np.searchsorted(self._starts, raw, side="right")) - 1
        return self.segments[k], raw - int(self._starts[k])

    def _live_row(self, segment_no: int, local: int | None) -> int | None:
        if local is None:
            return None
        raw = int(self._starts[segment_no]) + local
        if not self._live[raw]:
            return None
        return int(np.searchsorted(self._live_raw, raw))

    def row_of_id(self, image_id: int) -> int | None:
        """The row of a public id, or None."""
        return self._find(lambda segment: segment.row_of_id(int(image_id)))

    def row_of_path(self, path: str) -> int | None:
        """The row of a relative path, or None."""
        return self._find(lambda segment: segment.row_of_path(path))

    def _find(self, local_of: Callable[[Segment], int | None]) -> int | None:
        """The live row ``local_of`` finds in a segment, the newest segment first."""
        for k in range(len(self.segments) - 1, -1, -1):
            row = self._live_row(k, local_of(self.segments[k]))
            if row is not None:
                return row
        return None

    def path(self, row: int) -> str:
        segment, local = self._locate(int(self._live_raw[row]))
        return segment.paths[local]

    def vector(self, row: int) -> np.ndarray:
        """The stored embedding of a row."""
        segment, local = self._locate(int(self._live_raw[row]))
        return np.asarray(segment.features[local], np.float32)

    def vectors(self, rows) -> np.ndarray:
        """The stored embeddings of several rows, as one (len(rows), D) matrix."""
        return self._gather(rows, "features")

    def _gather(self, rows, attribute: str) -> np.ndarray:
        """Rows of each segment's ``attribute`` matrix, in the order of ``rows``."""
        raw = self._live_raw[np.asarray(rows, np.int64)]
        owner = np.searchsorted(self._starts, raw, side="right") - 1
        out = np.empty((len(raw), getattr(self.segments[0], attribute).shape[1]), np.float32)
        for k in np.unique(owner):
            picked = owner == k
            out[picked] = getattr(self.segments[k], attribute)[raw[picked] - self._starts[k]]
        return out

    def release_pages(self) -> None:
        """Let go of the pages this process has read of the segments' memory-mapped matrices
        (``indexer.mapped``): a build that reads every row once need not hold 2 GB of them."""
        for segment in self.segments:
            for matrix in (segment.features, segment.colours, segment.clip):
                release_pages(matrix)

    @property
    def has_colours(self) -> bool:
        return all(s.colours is not None for s in self.segments)

    def colours_of(self, rows) -> np.ndarray | None:
        """The colour histograms of several rows, or None when the index was built without them."""
        return self._gather(rows, "colours") if self.has_colours else None

    @property
    def has_clip(self) -> bool:
        """Whether every row has its CLIP image embedding (the second vector set)."""
        return bool(self.segments) and all(s.clip is not None for s in self.segments)

    @property
    def clip_dim(self) -> int:
        return int(self.segments[0].clip.shape[1]) if self.has_clip else 0

    def clip_of(self, rows) -> np.ndarray | None:
        """The CLIP image embeddings of several rows, or None when some rows have none."""
        return self._gather(rows, "clip") if self.has_clip else None

    def clip_blocks(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(ids, CLIP embeddings, live mask)`` of each segment, as ``blocks`` gives the descriptors."""
        return [(ids, s.clip, live) for s, (ids, _, live) in zip(self.segments, self.blocks())]

    def info(self, row: int) -> dict:
        """Size, mtime, content hash and metadata (``meta``) of a row's file."""
        segment, local = self._locate(int(self._live_raw[row]))
        return segment.files.facts(local)

    def has_info(self, row: int) -> bool:
        """Whether the index recorded a row's file facts (``info``), without reading them."""
        segment, local = self._locate(int(self._live_raw[row]))
        return segment.files.has(local)

    def path_of_sha(self, sha256: str) -> str | None:
        """The indexed path holding this content, or None."""
        for segment in reversed(self.segments):
            local = segment.files.row_of_sha(sha256)
            if local is not None and self.row_of_path(segment.paths[local]) is not None:
                return segment.paths[local]
        return None

    def blocks(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(ids, features, live mask)`` of each segment, for the vector backends."""
        return [(s.ids, s.features, self._live[a:b])
                for s, a, b in zip(self.segments, self._starts[:-1], self._starts[1:])]

    @functools.cached_property
    def paths(self) -> list[str]:
        """The live paths, by row."""
        return [p for s, (_, _, live) in zip(self.segments, self.blocks()) for p, ok in zip(s.paths, live) if ok]

    @functools.cached_property
    def rows_by_path(self) -> list[int]:
        """Rows in path order (changes append their rows at the end; listings show them in place)."""
        paths = self.paths
        return sorted(range(len(paths)), key=paths.__getitem__)

    @functools.cached_property
    def ids(self) -> np.ndarray:
        """The public id of each row (``indexer.ids.image_id`` of its path)."""
        blocks = self.blocks()
        return np.concatenate([ids[live] for ids, _, live in blocks]) if blocks else np.empty(0, np.int64)

    @functools.cached_property
    def features(self) -> np.ndarray:
        """The live embeddings as one matrix (the base's memory map itself when nothing was changed)."""
        blocks = self.blocks()
        if self.is_one_segment:
            return blocks[0][1]
        if not blocks:
            return np.empty((0, 0), np.float32)
        return np.concatenate([np.asarray(f)[live] for _, f, live in blocks])

    @functools.cached_property
    def files(self) -> "LiveFiles":
        """Size, mtime, content hash and metadata of each live path, looked up on demand."""
        return LiveFiles(self)

    @functools.cached_property
    def facts(self) -> FileFacts:
        """The file facts of the live rows, in row order (the base's own columns when nothing was changed)."""
        if self.is_one_segment:
            return self.segments[0].files
        return FileFacts.concat([(s.files, live) for s, (_, _, live) in zip(self.segments, self.blocks())])

    @property
    def is_one_segment(self) -> bool:
        """Whether the live rows are exactly one segment's rows (what a build publishes): then that segment's
        matrices and facts serve as they are, without a copy."""
        return len(self.segments) == 1 and len(self) == len(self.segments[0].paths)

    @property
    def skipped(self) -> dict[str, str]:
        """Files left out, with the reason (a build's and later changes')."""
        return self.manifest.get("skipped", {})

    def changed_rows(self) -> int:
        """Rows in segments plus dead rows: what a compaction would fold away."""
        return int(self._starts[-1] - self._starts[1]) + sum(len(d) for d in self.dead.values())

    def needs_compaction(self) -> bool:
        base = int(self._starts[1]) if len(self.segments) else 0
        return len(self.segments) - 1 > COMPACT_SEGMENTS or \
            self.changed_rows() > max(COMPACT_MIN, COMPACT_FRACTION * base)


class LiveFiles(collections.abc.Mapping):
    """A generation's file facts by path (``{"size", "mtime_ns", "sha256", "meta"}``), over its live rows;
    each lookup reads one row's columns."""

    def __init__(self, index: GalleryIndex) -> None:
        self._index = index

    def __getitem__(self, path: str) -> dict:
        row = self._index.row_of_path(path)
        facts = self._index.info(row) if row is not None else {}
        if not facts:
            raise KeyError(path)
        return facts

    def __contains__(self, path: object) -> bool:
        row = self._index.row_of_path(path) if isinstance(path, str) else None
        return row is not None and self._index.has_info(row)

    def __iter__(self):
        return (p for p in self._index.paths if p in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


_cache: collections.OrderedDict = collections.OrderedDict()
_cache_lock = threading.Lock()
_CACHE_SIZE = 64


def _load_segment(folder: str, name: str) -> Segment:
    """A segment's files, read once per process (the files never change; a hard link keeps the inode)."""
    features_path = os.path.join(folder, FEATURES if name == BASE else name + ".npy")
    st = os.stat(features_path)
    key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    features = np.load(features_path, mmap_mode="r")
    manifest: dict[str, Any] = {}
    if name == BASE:
        with open(os.path.join(folder, PATHS)) as f:
            paths = json.load(f)
        with open(os.path.join(folder, MANIFEST)) as f:
            manifest = json.load(f)
        legacy = manifest.pop("files", None)
    else:
        with open(os.path.join(folder, name + ".json")) as f:
            meta = json.load(f)
        paths, legacy = meta["paths"], meta.get("files")
    prefix = "" if name == BASE else name + "."
    # An index written before the facts were columns keeps them in its JSON: read once, rewritten by a build.
    files = read_facts(folder, paths, prefix) if has_facts(folder, prefix) else \
        FileFacts.from_dicts(paths, legacy or {}, legacy=True)
    if features.dtype != np.float32 or features.ndim != 2:
        raise IndexFilesError(f"{os.path.basename(features_path)} must be a float32 matrix, found "
                              f"{features.dtype} {features.shape}")
    colours_path = os.path.join(folder, COLOURS if name == BASE else name + ".colours.npy")
    colours = np.load(colours_path, mmap_mode="r") if os.path.exists(colours_path) else None
    if colours is not None and colours.shape[0] != features.shape[0]:
        raise IndexFilesError(f"{os.path.basename(colours_path)} has {colours.shape[0]} rows, not {features.shape[0]}")
    segment = Segment(name, features, paths, files, manifest, colours,
                      _aligned(folder, CLIP if name == BASE else name + ".clip.npy", features.shape[0]))
    with _cache_lock:
        _cache[key] = segment
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return segment


def _aligned(folder: str, file: str, rows: int) -> np.ndarray | None:
    """An optional matrix with a segment's rows (memory-mapped), or None when the segment has none."""
    path = os.path.join(folder, file)
    if not os.path.exists(path):
        return None
    matrix = np.load(path, mmap_mode="r")
    if matrix.ndim != 2 or matrix.shape[0] != rows:
        raise IndexFilesError(f"{file} has {matrix.shape[0] if matrix.ndim else 0} rows, not {rows}")
    return matrix


def current_dir(index_dir: str) -> str | None:
    """The generation folder ``current`` points at, or None if no index was built."""
    link = os.path.join(index_dir, CURRENT)
    if not os.path.islink(link) and not os.path.isdir(link):
        return None
    return os.path.realpath(link)


def load_index(index_dir: str) -> GalleryIndex | None:
    """Load the current generation, or None when there is none yet."""
    folder = current_dir(index_dir)
    if folder is None:
        return None
    try:
        try:
            with open(os.path.join(folder, SEGMENTS)) as f:
                changes = json.load(f)
        except FileNotFoundError:
            changes = {"segments": [], "dead": {}}
        base = _load_segment(folder, BASE)
        segments = [base] + [_load_segment(folder, name) for name in changes["segments"]]
    except (OSError, ValueError, KeyError) as e:
        raise IndexFilesError(f"the index in {folder} is unreadable ({e}); rebuild it with "
                              "'python build_gallery.py --rebuild'") from None
    manifest = dict(base.manifest)
    for key in ("skipped", "duplicates"):  # a change's own maps replace the build's
        if key in changes:
            manifest[key] = changes[key]
    return GalleryIndex(segments, changes["dead"], manifest, folder)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(index_dir: str, fill: Callable[[str], None]) -> str:
    """Make a new generation folder with ``fill(folder)`` and switch ``current`` to it atomically."""
    generations = os.path.join(index_dir, GENERATIONS)
    os.makedirs(generations, exist_ok=True)
    name = f"{time.time_ns():020d}"  # sorts by age
    tmp = os.path.join(generations, "." + name)
    os.makedirs(tmp)
    fill(tmp)
    final = os.path.join(generations, name)
    os.rename(tmp, final)
    link_tmp = os.path.join(index_dir, f".{CURRENT}-{uuid.uuid4().hex[:8]}")
    os.symlink(os.path.join(GENERATIONS, name), link_tmp)
    os.replace(link_tmp, os.path.join(index_dir, CURRENT))
    _fsync_dir(index_dir)
    _prune(generations, keep=name)
    return final


def save_index(index_dir: str, index: GalleryIndex, extra: Callable[[str], None] | None = None,
               written: Mapping[str, str] | None = None) -> str:
    """Write ``index`` as a new one-segment generation and switch ``current`` to it; returns the folder.
    ``extra(folder)`` may add files (a vector-index backend's) before the generation becomes visible.
    ``written``: files already holding some of its matrices (``FEATURES``, ``COLOURS``), used as they are."""
    written = written or {}

    def fill(tmp: str) -> None:
        _place(os.path.join(tmp, FEATURES), written.get(FEATURES), lambda: index.features)
        if index.has_colours:
            _place(os.path.join(tmp, COLOURS), written.get(COLOURS), lambda: _every_row(index, "colours"))
        if index.has_clip:
            clip = _every_row(index, "clip")
            atomic_write(os.path.join(tmp, CLIP), lambda f: np.save(f, clip))
        atomic_write(os.path.join(tmp, PATHS), json.dumps(index.paths).encode())
        index.facts.write(tmp)
        manifest = {k: v for k, v in index.manifest.items() if k != "files"}
        atomic_write(os.path.join(tmp, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True).encode())
        if extra is not None:
            extra(tmp)
    return _publish(index_dir, fill)


def _place(path: str, written: str | None, matrix: Callable[[], np.ndarray]) -> None:
    """Put a matrix's .npy file at ``path``: the file ``written`` (a build's, made a chunk at a time) linked
    when there is one, else ``matrix()`` written. ``np.save`` of a memory-mapped matrix would pass its every
    page through this process's memory."""
    if written is not None:
        try:
            os.link(written, path)
        except OSError:  # another file system
            shutil.copyfile(written, path)
        return
    data = np.ascontiguousarray(matrix(), dtype=np.float32)
    atomic_write(path, lambda f: np.save(f, data))


def _every_row(index: GalleryIndex, attribute: str) -> np.ndarray:
    """A row-aligned matrix (``colours``, ``clip``) of every live row: the segment's own when there is one
    without dead rows (what a build publishes: no copy of it), else gathered."""
    if index.is_one_segment:
        return np.ascontiguousarray(getattr(index.segments[0], attribute), np.float32)
    return np.ascontiguousarray(index._gather(np.arange(len(index)), attribute), np.float32)


@dataclass
class Change:
    """What one gallery change did to the rows: ``added`` paths (with their ``dim``-wide vectors) and
    ``removed`` paths (deleted, or replaced by a new version among ``added``)."""

    dim: int
    added: list[str] = field(default_factory=list)
    vectors: np.ndarray | None = None
    removed: list[str] = field(default_factory=list)
    clip: np.ndarray | None = None  # the added paths' CLIP embeddings, when the index keeps them
    clip_dim: int = 0  # the width of the index's CLIP embeddings before the change (0: it kept none)


def append_change(index_dir: str, paths: list[str], features: np.ndarray, files: dict[str, dict],
                  remove: Iterable[str] = (), colours: np.ndarray | None = None,
                  skipped: dict[str, str | None] | None = None,
                  duplicates: dict[str, str | None] | None = None,
                  extra: Callable[[str, Change], None] | None = None,
                  clip: np.ndarray | None = None) -> tuple[str, Change]:
    """Publish a generation that adds ``paths`` with their embeddings ``features`` (a new segment, written by
    ``write_segment``; a path already indexed is replaced) and drops ``remove``, hard-linking the previous
    generation's segments; ``clip`` are their CLIP embeddings, if kept. ``skipped`` and ``duplicates`` update the manifest's maps of files left out (a value
    of None clears an entry). ``extra(folder, change)`` updates a backend before the switch. Returns the new
    folder and the change made."""
    old = load_index(index_dir)
    if old is None:
        raise IndexFilesError("there is no index to change yet; build it first with 'python build_gallery.py'")
    if len(paths) and features.shape[1] != old.dim:
        raise IndexFilesError(f"new rows have {features.shape[1]} dimensions, the index {old.dim}")
    change = Change(old.dim, list(paths), np.ascontiguousarray(features, np.float32) if len(paths) else None,
                    clip=np.ascontiguousarray(clip, np.float32) if clip is not None and len(paths) else None,
                    clip_dim=old.clip_dim)
    dead = _dead_after(old, list(paths) + [p for p in remove if p not in set(paths)], change)
    maps = {key: _updated_map(old.manifest.get(key, {}), updates, paths)
            for key, updates in (("skipped", skipped), ("duplicates", duplicates))}
    names = [s.name for s in old.segments[1:]]

    def fill(tmp: str) -> None:
        for entry in os.listdir(old.location):
            if entry != SEGMENTS:
                os.link(os.path.join(old.location, entry), os.path.join(tmp, entry))
        if paths:
            names.append(write_segment(tmp, paths, change.vectors, colours, files, change.clip))
        state = {"segments": names, "dead": {k: sorted(v) for k, v in dead.items() if v}, **maps}
        atomic_write(os.path.join(tmp, SEGMENTS), json.dumps(state).encode())
        if extra is not None:
            extra(tmp, change)
    return _publish(index_dir, fill), change


def write_segment(folder: str, paths: list[str], embeddings: np.ndarray, colours: np.ndarray | None,
                  files: dict[str, dict], clip: np.ndarray | None = None) -> str:
    """Write the rows of a gallery change as a new segment in the generation ``folder``: ``seg-<time>.npy``
    (the embeddings), ``.colours.npy`` (their colour histograms, when the index keeps them), ``.clip.npy``
    (their CLIP embeddings, likewise), ``.json`` (the paths) and ``.facts*`` (their files' facts,
    ``indexer.file_facts``). Returns the segment's name, for ``segments.json``."""
    name = f"seg-{time.time_ns():020d}"
    atomic_write(os.path.join(folder, name + ".npy"), lambda f: np.save(f, embeddings))
    if colours is not None:
        rows = np.ascontiguousarray(colours, np.float32)
        atomic_write(os.path.join(folder, name + ".colours.npy"), lambda f: np.save(f, rows))
    if clip is not None:
        atomic_write(os.path.join(folder, name + ".clip.npy"), lambda f: np.save(f, clip))
    FileFacts.from_dicts(list(paths), files).write(folder, name + ".")
    atomic_write(os.path.join(folder, name + ".json"), json.dumps({"paths": list(paths)}).encode())
    return name


def _dead_after(old: GalleryIndex, gone: list[str], change: Change) -> dict[str, set[int]]:
    """The dead rows of each segment once the live rows of ``gone`` die too (recorded in ``change.removed``)."""
    dead = {name: set(rows.tolist()) for name, rows in old.dead.items()}
    for path in gone:
        for k in range(len(old.segments) - 1, -1, -1):
            local = old.segments[k].row_of_path(path)
            if local is not None and local not in dead[old.segments[k].name]:
                dead[old.segments[k].name].add(local)
                change.removed.append(path)
    return dead


def _updated_map(current: dict[str, str], updates: dict[str, str | None] | None, added: list[str]) -> dict:
    """A manifest map of files left out, with ``updates`` applied (None clears) and the ``added`` paths gone."""
    merged = dict(current)
    for path, value in (updates or {}).items():
        if value is None:
            merged.pop(path, None)
        else:
            merged[path] = value
    for path in added:
        merged.pop(path, None)
    return merged


def _prune(generations: str, keep: str) -> None:
    """Remove unfinished generations (dot folders) and all but the newest finished ones.
    Callers hold the build lock, so no other writer is using them."""
    names = os.listdir(generations)
    finished = sorted(n for n in names if not n.startswith("."))
    for n in finished[:-KEEP_GENERATIONS] + [n for n in names if n.startswith(".")]:
        if n != keep:
            shutil.rmtree(os.path.join(generations, n), ignore_errors=True)
