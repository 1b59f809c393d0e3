"""The plan of a build or a gallery change, the step before embedding: which files are unchanged, what they
hold (content hashes, read again only for files whose size or modification time changed), which share a public
id or a content with another file, and the facts the index keeps of each (EXIF metadata reused while a file is
unchanged).

A build (``indexer.builder``) plans every file the scan finds against the index it replaces; a change
(``indexer.changes``) plans the files it names against the index it extends. Both then embed the plan's
contents that no stored embedding covers (``embed_missing``) and publish a generation.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np

from dinov2_numpy.weights.convert import sha256_file

from .exif import read_metadata
from .generations import GalleryIndex
from .ids import image_id
from .scan import FileEntry, Skipped

Batches = Iterator[tuple[list[str], np.ndarray, list[tuple[str, str]]]]  # (keys, rows, [(key, reason)])


HASH_WORKERS = 4  # files hashed and their headers read at once


def _none(_key: object) -> None:
    return None


@dataclass(frozen=True)
class Previous:
    """What a plan compares files with: the facts recorded for a path, the indexed path that holds a public
    id, and the indexed path that keeps holding a content after the change. Each answers None when unknown."""

    facts: Callable[[str], dict | None] = _none
    owner_of_id: Callable[[int], str | None] = _none
    holder_of: Callable[[str], str | None] = _none

    @classmethod
    def files(cls, files: Mapping[str, dict]) -> "Previous":
        """A build's: the files the replaced index recorded (their ids and contents start afresh)."""
        return cls(facts=files.get)

    @classmethod
    def index(cls, index: GalleryIndex, leaving: set[str]) -> "Previous":
        """A change's: the index it extends, without the paths ``leaving`` it (a file moved from one of them
        is a rename, not a duplicate)."""
        def facts(path: str) -> dict | None:
            row = index.row_of_path(path)
            return index.info(row) if row is not None else None

        def owner_of_id(public_id: int) -> str | None:
            row = index.row_of_id(public_id)
            return index.path(row) if row is not None else None

        def holder_of(sha: str) -> str | None:
            path = index.path_of_sha(sha)
            return None if path in leaving else path

        return cls(facts, owner_of_id, holder_of)


@dataclass
class Plan:
    """What to index. ``contents`` maps each content hash to the one path that will hold it; the other files
    are duplicates or skipped. ``files`` holds the facts of every file that could be read."""

    files: dict[str, dict] = field(default_factory=dict)  # path -> {"size", "mtime_ns", "sha256", "meta"}
    contents: dict[str, str] = field(default_factory=dict)  # sha256 -> path, in the order of the files given
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (path, path with the same content)
    skipped: list[Skipped] = field(default_factory=list)
    unchanged: set[str] = field(default_factory=set)  # size and mtime as the previous facts say

    def spend(self) -> None:
        """Let go of every file's facts and contents, once a generation holds them as columns. At a million
        files they are 1.7 GB of small objects; only when every one of them goes do their memory pages go
        back to the system (a FAISS graph is built after, beside what is left)."""
        self.files.clear()
        self.contents.clear()
        self.unchanged.clear()

    def changed(self) -> dict[str, str]:
        """``contents`` without the files that did not change: what a gallery change indexes anew."""
        return {sha: path for sha, path in self.contents.items() if path not in self.unchanged}


def to_embed(images_dir: str, contents: Mapping[str, str],
             known: Mapping[str, np.ndarray]) -> list[tuple[str, str]]:
    """``(sha256, file)`` of the ``contents`` (sha256 -> path) no row in ``known`` covers: what is left to embed."""
    return [(sha, os.path.join(images_dir, path)) for sha, path in contents.items() if sha not in known]


def plan_files(images_dir: str, entries: Iterable[FileEntry], previous: Previous, gps: bool) -> Plan:
    """The plan for ``entries`` (relative to ``images_dir``) against ``previous``. A path whose id another
    path already holds is skipped (the first keeps it: 53-bit ids can collide); a content already planned or
    held is a duplicate of that path. ``gps``: read the photos' positions too."""
    plan = Plan()
    hashed = _hash(images_dir, entries, previous, gps, plan)
    id_owner: dict[int, str] = {}
    for path, sha in hashed:
        public_id = image_id(path)
        owner = id_owner.setdefault(public_id, previous.owner_of_id(public_id) or path)
        same = plan.contents.get(sha) or previous.holder_of(sha)
        if owner != path:  # two paths, one id: never confuse them
            plan.skipped.append(Skipped(path, f"its id equals that of {owner}; rename the file"))
        elif same is not None and same != path:
            plan.duplicates.append((path, same))
        else:
            plan.contents[sha] = path
    return plan


def _hash(images_dir: str, entries: Iterable[FileEntry], previous: Previous, gps: bool,
          plan: Plan) -> list[tuple[str, str]]:
    """``(path, sha256)`` of the entries that can be read, recording their facts in ``plan`` (unreadable
    ones among its skipped); an unchanged file keeps the hash recorded for it. Files are hashed and their
    headers read ``HASH_WORKERS`` at a time (file reads and SHA-256 release the GIL: a camera's 50 MB RAW
    file costs tens of milliseconds of each), in the entries' order; an unchanged file, which needs no read,
    is looked at in this thread (a thread pool's hand-over costs more than that, a million times over)."""
    def look(entry: FileEntry, facts: dict | None) -> tuple[FileEntry, bool, str | Skipped, dict]:
        same = unchanged(entry, facts)
        try:
            sha = facts["sha256"] if same else sha256_file(os.path.join(images_dir, entry.path))
        except OSError as e:
            return entry, same, Skipped(entry.path, f"cannot read: {e.strerror}"), {}
        return entry, same, sha, file_facts(images_dir, entry, sha, facts, gps)

    def reused(entry: FileEntry, facts: dict | None) -> bool:  # nothing to read: looked at here, not in a thread
        return unchanged(entry, facts) and "meta" in facts and ("latitude" in facts["meta"]) == gps

    entries = list(entries)
    known = [previous.facts(e.path) for e in entries]  # once each: a lookup decodes the file's metadata
    inline = [reused(e, f) for e, f in zip(entries, known)]
    hashed = []
    with ThreadPoolExecutor(HASH_WORKERS, thread_name_prefix="plan") as pool:
        todo = [(e, f) for e, f, cheap in zip(entries, known, inline) if not cheap]
        read = pool.map(look, [e for e, _ in todo], [f for _, f in todo])
        for entry, same, sha, facts in (look(e, f) if cheap else next(read)
                                        for e, f, cheap in zip(entries, known, inline)):
            if isinstance(sha, Skipped):
                plan.skipped.append(sha)
                continue
            if same:
                plan.unchanged.add(entry.path)
            plan.files[entry.path] = facts
            hashed.append((entry.path, sha))
    return hashed


def unchanged(entry: FileEntry, facts: dict | None) -> bool:
    """Whether a file has the size and modification time its recorded ``facts`` give."""
    return bool(facts) and (facts["size"], facts["mtime_ns"]) == (entry.size, entry.mtime_ns)


def file_facts(images_dir: str, entry: FileEntry, sha: str, previous: dict | None, gps: bool) -> dict:
    """What the index keeps of a file: size, mtime, content hash and its photo metadata. The metadata are the
    ``previous`` facts' when the file did not change and the position setting agrees with them (with SHOW_GPS
    on, files without a position are read again: a header read is cheap)."""
    if unchanged(entry, previous) and "meta" in previous and ("latitude" in previous["meta"]) == gps:
        meta = previous["meta"]
    else:
        meta = read_metadata(os.path.join(images_dir, entry.path), gps=gps)
    return {"size": entry.size, "mtime_ns": entry.mtime_ns, "sha256": sha, "meta": meta}


def embed_missing(batches: Batches, rows: dict[str, np.ndarray],
                  on_batch: Callable[[list[str], np.ndarray, list[tuple[str, str]]], None] | None = None
                  ) -> dict[str, str]:
    """Add the embedded rows of each batch to ``rows`` (key -> row) and call ``on_batch`` with it; returns
    the keys that could not be embedded, with the reason."""
    failed: dict[str, str] = {}
    for keys, embeddings, failures in batches:
        rows.update(zip(keys, embeddings))
        failed.update(failures)
        if on_batch is not None:
            on_batch(keys, embeddings, failures)
    return failed
