"""Small changes to a built index: embed the files named and append them as a segment, drop deleted paths,
and fold the segments back into one (compaction). Each costs about the size of the change, not of the gallery:
nothing is scanned or rewritten but the rows that change. Callers hold ``build_lock``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from dinov2_numpy.weights.convert import sha256_file

from .colour import DIM, split, with_colour
from .embedding import embed_stream, manifest_descriptor
from .exif import read_metadata
from .generations import (
    GalleryIndex,
    IndexFilesError,
    append_change,
    load_index,
    save_index,
)
from .ids import image_id
from .scan import FileEntry, check_file
from .vector_index import apply_change, build_for_generation

Embed = Callable[[np.ndarray], np.ndarray]  # preprocessed pixels (B, 3, H, W) to unit descriptors


@dataclass
class ChangeReport:
    added: list[str] = field(default_factory=list)  # paths now indexed (new or replaced)
    removed: list[str] = field(default_factory=list)  # paths no longer indexed
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (path, indexed path with the same content)
    skipped: dict[str, str] = field(default_factory=dict)  # path -> why it was not indexed
    location: str = ""


def update_paths(images_dir: str, index_dir: str, embed: Embed, *, add: Iterable[str] = (),
                 remove: Iterable[str] = (), backend: Mapping[str, Any] | None = None, batch_size: int = 8,
                 workers: int = 2, max_pixels: int | None = 50_000_000) -> ChangeReport:
    """Index the files at the relative paths ``add`` (new, or changed since indexed) and drop ``remove``
    (deleted files; a path both removed and added counts as added). A file whose content is already indexed
    under another path is recorded as a duplicate, as a full build does, unless that path is among ``remove``
    (a rename, which keeps its descriptor); an unusable file is recorded as skipped with its reason, never
    retried until it changes. ``workers`` threads decode ahead of the model."""
    index = load_index(index_dir)
    if index is None:
        raise IndexFilesError("there is no index to change yet; build it first with 'python build_gallery.py'")
    report = ChangeReport()
    gps = bool((backend or {}).get("SHOW_GPS"))
    add = list(dict.fromkeys(add))
    remove = [p for p in dict.fromkeys(remove) if p not in set(add)]
    files: dict[str, dict] = {}
    todo: list[tuple[str, str]] = []
    moved: list[tuple[str, np.ndarray]] = []
    leaving = set(remove)
    seen: dict[str, str] = {}
    for path in add:
        found = check_file(images_dir, path)
        if not isinstance(found, FileEntry):
            if found is not None:
                report.skipped[found.path] = found.reason
            elif index.row_of_path(path) is not None:
                remove.append(path)  # gone again before it was read
            continue
        indexed_row = index.row_of_path(path)
        old = index.info(indexed_row) if indexed_row is not None else None
        if old and old["size"] == found.size and old["mtime_ns"] == found.mtime_ns:
            continue  # unchanged
        try:
            sha = sha256_file(os.path.join(images_dir, path))
        except OSError as e:
            report.skipped[path] = f"cannot read: {e.strerror}"
            continue
        same = seen.get(sha) or index.path_of_sha(sha)
        if same is not None and same in leaving and same != path:  # a rename: keep its descriptor
            files[path] = _file_info(images_dir, found, sha, gps)
            row = index.row_of_path(same)
            kept = index.colours_of([row])
            moved.append((path, np.concatenate([index.vector(row), kept[0] if kept is not None else np.zeros(DIM)])))
            seen[sha] = path
            continue
        if same is not None and same != path:
            report.duplicates.append((path, same))
            if index.row_of_path(path) is not None:
                remove.append(path)  # it was replaced by a copy of another picture
            continue
        holder = index.row_of_id(image_id(path))
        owner = index.path(holder) if holder is not None else path
        if owner != path:
            report.skipped[path] = f"its id equals that of {owner}; rename the file"
            continue
        seen[sha] = path
        files[path] = _file_info(images_dir, found, sha, gps)
        todo.append((path, os.path.join(images_dir, path)))
    paths = [p for p, _ in moved]
    rows = [np.stack([v for _, v in moved])] if moved else []
    width = index.dim + DIM  # descriptor and colour histogram in one row (indexer.colour.with_colour)
    # New rows are prepared the way the index's rows were; the caller checks that ``embed`` describes alike.
    prepared_as = manifest_descriptor(index.manifest)
    for keys, features, failures in embed_stream(with_colour(embed), width, todo, batch_size, workers, max_pixels,
                                                 prepared_as):
        paths += keys
        rows.append(features)
        for key, reason in failures:
            report.skipped[key] = reason
            if index.row_of_path(key) is not None:
                remove.append(key)  # its new content cannot be read: the old descriptor would lie
    features, colours = split(np.concatenate(rows) if rows else np.empty((0, width), np.float32), index.dim)
    duplicates = {p: q for p, q in report.duplicates}
    if not paths and not remove and not report.skipped and not duplicates:
        return report
    cleared = {p: None for p in list(paths) + remove if p not in report.skipped}
    report.location, change = append_change(
        index_dir, paths, features, files, remove=remove, colours=colours if index.has_colours else None,
        skipped={**cleared, **report.skipped},
        duplicates=duplicates, extra=lambda folder, change: apply_change(dict(backend or {}), folder, change))
    report.added, report.removed = change.added, [p for p in change.removed if p not in set(change.added)]
    return report


def _file_info(images_dir: str, entry: FileEntry, sha: str, gps: bool) -> dict:
    """What the index keeps of an indexed file: size, mtime, content hash and its photo metadata."""
    return {"size": entry.size, "mtime_ns": entry.mtime_ns, "sha256": sha,
            "meta": read_metadata(os.path.join(images_dir, entry.path), gps=gps)}


def compact(index_dir: str, backend: Mapping[str, Any] | None = None) -> str | None:
    """Fold the current generation's segments and dead rows into one base; returns the new folder, or None
    when there was nothing to fold. Descriptors are copied, never recomputed."""
    index = load_index(index_dir)
    if index is None or (len(index.segments) == 1 and not index.changed_rows()):
        return None
    order = index.rows_by_path
    paths = [index.paths[r] for r in order]
    features = np.ascontiguousarray(index.features[order], np.float32)
    manifest = {**index.manifest, "files": {p: index.files[p] for p in paths if p in index.files}}
    compacted = GalleryIndex.single(features, paths, manifest, index.colours_of(order))
    return save_index(index_dir, compacted, extra=lambda folder: build_for_generation(
        dict(backend or {}), folder, paths, features, fresh=set()))
