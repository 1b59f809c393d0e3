"""Small changes to a built index: embed the files named and append them as a segment, drop deleted paths,
and fold the segments back into one (compaction). Each costs about the size of the change, not of the gallery:
nothing is scanned or rewritten but the rows that change. Callers hold ``build_lock``.

A change is a build's pipeline on fewer files: the plan (``indexer.plan``), the embedding of what no stored
row covers, and a new generation whose new rows are one more segment (``indexer.generations.write_segment``).
"""
from __future__ import annotations

import os

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from . import clip_set
from .colour import DIM, split, with_colour
from .embedding import embed_stream, manifest_descriptor
from .generations import (
    GalleryIndex,
    IndexFilesError,
    append_change,
    load_index,
    save_index,
)
from .options import Embed, EmbedOptions
from .plan import Previous, embed_missing, plan_files, to_embed
from .scan import FileEntry, check_file
from .vector_index import CLIP_SET, apply_change, build_for_generation


@dataclass
class ChangeReport:
    added: list[str] = field(default_factory=list)  # paths now indexed (new or replaced)
    removed: list[str] = field(default_factory=list)  # paths no longer indexed
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (path, indexed path with the same content)
    skipped: dict[str, str] = field(default_factory=dict)  # path -> why it was not indexed
    location: str = ""


def update_paths(images_dir: str, index_dir: str, embed: Embed, *, add: Iterable[str] = (),
                 remove: Iterable[str] = (), options: EmbedOptions | None = None, **fields: Any) -> ChangeReport:
    """Index the files at the relative paths ``add`` (new, or changed since indexed) and drop ``remove``
    (deleted files; a path both removed and added counts as added). A file whose content is already indexed
    under another path is recorded as a duplicate, as a full build does, unless that path is among ``remove``
    (a rename, which keeps its embedding); an unusable file is recorded as skipped with its reason, never
    retried until it changes.

    ``embed`` turns pixels into unit embeddings; ``options`` (``indexer.options.EmbedOptions``, or keyword
    arguments setting its fields) says how pictures are decoded and which backend follows the change."""
    options = EmbedOptions.merged(options, fields)
    index = load_index(index_dir)
    if index is None:
        raise IndexFilesError("there is no index to change yet; build it first with 'python build_gallery.py'")
    add = list(dict.fromkeys(add))
    remove = [p for p in dict.fromkeys(remove) if p not in set(add)]
    add += _orphaned_copies(images_dir, index, remove, add)
    entries, gone, report = _look_at(images_dir, add)
    plan = plan_files(images_dir, entries, Previous.index(index, set(remove)), options.gps)
    report.skipped.update((s.path, s.reason) for s in plan.skipped)
    report.duplicates = plan.duplicates
    new = plan.changed()
    rows = _stored_rows(index, new)
    # New rows are prepared the way the index's rows were; the caller checks that ``embed`` describes alike.
    batches = embed_stream(with_colour(embed), index.dim + DIM, to_embed(images_dir, new, rows),
                           options.batch_size, options.workers, options.max_pixels, manifest_descriptor(index.manifest))
    failed = embed_missing(batches, rows)
    report.skipped.update((new[sha], reason) for sha, reason in failed.items())
    unusable = set(gone) | set(report.skipped) | {p for p, _ in plan.duplicates} | {new[sha] for sha in failed}
    remove += _dropped(index, add, unusable)
    paths = [p for sha, p in new.items() if sha in rows]
    clip = clip_set.for_change(index, images_dir, {sha: p for sha, p in new.items() if sha in rows}, options)
    return _publish(index_dir, index, {p: rows[plan.files[p]["sha256"]] for p in paths}, plan.files, remove,
                    report, options.backend,
                    None if clip is None else clip_set.matrix(clip[0], (plan.files[p]["sha256"] for p in paths), clip[1]))


def _orphaned_copies(images_dir: str, index: GalleryIndex, remove: list[str], add: list[str]) -> list[str]:
    """Files recorded as copies of a path being removed: one of them is indexed in its place (the embedding
    is kept), else the picture would vanish from the index while its copies are still in the folder."""
    leaving, adding = set(remove), set(add)
    return [copy for copy, original in index.manifest.get("duplicates", {}).items()
            if original in leaving and copy not in leaving | adding and os.path.lexists(os.path.join(images_dir, copy))]


def _look_at(images_dir: str, add: list[str]) -> tuple[list[FileEntry], list[str], ChangeReport]:
    """The entries of the paths ``add`` that can be indexed, the paths no longer there (or not images), and a
    report with the unusable ones skipped."""
    entries, gone, report = [], [], ChangeReport()
    for path in add:
        found = check_file(images_dir, path)
        if isinstance(found, FileEntry):
            entries.append(found)
        elif found is None:
            gone.append(path)
        else:
            report.skipped[found.path] = found.reason
    return entries, gone, report


def _dropped(index: GalleryIndex, add: list[str], unusable: set[str]) -> list[str]:
    """The paths of ``add`` that are indexed but ``unusable`` now (the file is gone again, copies another
    picture or cannot be read): their old rows would lie."""
    return [p for p in add if p in unusable and index.row_of_path(p) is not None]


def _stored_rows(index: GalleryIndex, new: dict[str, str]) -> dict[str, np.ndarray]:
    """The rows (embedding and colour histogram, zeros when the index has none) the index holds already for
    contents of ``new`` (content hash -> path): a renamed file's, or a file touched but not changed."""
    rows = {}
    for sha in new:
        holder = index.path_of_sha(sha)
        if holder is not None:
            row = index.row_of_path(holder)
            kept = index.colours_of([row])
            rows[sha] = np.concatenate([index.vector(row), kept[0] if kept is not None else np.zeros(DIM)])
    return rows


def _publish(index_dir: str, index: GalleryIndex, added: dict[str, np.ndarray], files: dict[str, dict],
             remove: list[str], report: ChangeReport, backend: Mapping[str, Any],
             clip: np.ndarray | None = None) -> ChangeReport:
    """Append the ``added`` paths with their rows (and ``clip``, their CLIP embeddings) as a new segment and
    drop ``remove``, recording the report's skipped files and duplicates in the manifest; the backend follows.
    Nothing is written when nothing changes."""
    paths = list(added)
    rows = np.stack(list(added.values())) if added else np.empty((0, index.dim + DIM), np.float32)
    embeddings, colours = split(rows, index.dim)
    duplicates = dict(report.duplicates)
    if not paths and not remove and not report.skipped and not duplicates:
        return report
    cleared = {p: None for p in list(paths) + remove if p not in report.skipped}
    report.location, change = append_change(
        index_dir, paths, embeddings, files, remove=remove, colours=colours if index.has_colours else None,
        skipped={**cleared, **report.skipped},
        duplicates=duplicates, extra=lambda folder, change: apply_change(backend, folder, change), clip=clip)
    report.added, report.removed = change.added, [p for p in change.removed if p not in set(change.added)]
    return report


def compact(index_dir: str, backend: Mapping[str, Any] | None = None) -> str | None:
    """Fold the current generation's segments and dead rows into one base; returns the new folder, or None
    when there was nothing to fold. Embeddings are copied, never recomputed."""
    index = load_index(index_dir)
    if index is None or (len(index.segments) == 1 and not index.changed_rows()):
        return None
    order = index.rows_by_path
    paths = [index.paths[r] for r in order]
    embeddings = np.ascontiguousarray(index.features[order], np.float32)
    manifest = {**index.manifest, "files": index.facts.take(np.asarray(order, np.int64))}
    clip = index.clip_of(order)
    compacted = GalleryIndex.single(embeddings, paths, manifest, index.colours_of(order), clip)

    def backends(folder: str) -> None:
        build_for_generation(dict(backend or {}), folder, paths, embeddings, fresh=set())
        if clip is not None:
            build_for_generation(dict(backend or {}), folder, paths, clip, fresh=set(), vector_set=CLIP_SET)
    return save_index(index_dir, compacted, extra=backends)
