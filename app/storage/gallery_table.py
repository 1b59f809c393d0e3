"""The gallery_images table follows the published index: rows are added, updated and removed by an explicit
``sync`` after every change (start-up, an upload, a delete, a rebuild), never while serving a read. Results
come from the index itself, so a table that lags a build made outside the app shows nothing wrong.

A sync at start-up costs what changed since the generation the table reflects (``gallery_sync``): nothing
when it is the current one; the rows of the segments added since (and of the rows they made dead) when the
base is the same; a comparison of the whole table otherwise (a new build). Rows are written in bulk through
SQLAlchemy Core: a million ORM objects cost a minute of flushing."""
from __future__ import annotations

import os
from datetime import datetime
from typing import Iterable, Iterator

import numpy as np
from sqlalchemy import bindparam, delete, insert, select, update

from indexer.generations import FEATURES, GalleryIndex
from indexer.ids import image_id

from ..extensions import db
from .models import GalleryImage, GallerySync

TABLE = GalleryImage.__table__
META = ("camera", "lens", "exposure", "aperture", "iso", "focal_length", "width", "height", "orientation",
        "latitude", "longitude")
COLUMNS = ("path", "sha256", "size", "taken_at", "time_from_exif") + META  # what a sync compares and writes
_ID_AND_COMPARED = [TABLE.c.id] + [TABLE.c[name] for name in COLUMNS]
_LENGTHS = {c.name: c.type.length for c in TABLE.c if getattr(c.type, "length", None) is not None}
_CHUNK = 5000  # rows per bulk statement
_IN_CHUNK = 500  # ids per IN (...) list: SQLite builds before 3.32 allow 999 parameters


def metadata_columns(meta: dict) -> dict:
    """The table's columns for a file's metadata (``indexer.exif.read_metadata``); text longer than its column
    is cut to fit (PostgreSQL and MariaDB refuse it, and one photo's EXIF must not stop a sync)."""
    taken = meta.get("taken_at")
    values = {"taken_at": datetime.fromisoformat(taken) if taken else None,
              "time_from_exif": meta.get("time_source") == "exif" if taken else None,
              **{k: meta.get(k) for k in META}}
    for name, length in _LENGTHS.items():
        value = values.get(name)
        if isinstance(value, str) and len(value) > length:
            values[name] = value[:length]
    return values


def row_values(path: str, info: dict) -> dict:
    """Every compared column of the row of ``path``, from its file facts in the index."""
    return {"path": path, "sha256": info.get("sha256", ""), "size": info.get("size", 0),
            **metadata_columns(info.get("meta", {}))}


def sync(index: GalleryIndex, changed: Iterable[str] | None = None) -> None:
    """Make the table hold exactly the index's pictures, with their content hash, size and metadata; with
    ``changed`` (the paths one gallery change touched) only their rows are looked at."""
    if changed is not None:
        _sync_paths(index, list(changed))
        db.session.commit()
        return
    state = generation_state(index)
    held = db.session.get(GallerySync, 1)
    if held is not None and state is not None and \
            (held.generation, held.base, held.segments) == (state["generation"], state["base"], state["segments"]):
        return
    if held is not None and state is not None and held.base == state["base"] and \
            state["segments"][:len(held.segments)] == held.segments:
        _sync_paths(index, list(touched_since(index, len(held.segments))))
    else:
        _sync_all(index)
    if state is not None:
        if held is None:
            db.session.add(GallerySync(id=1, **state))
        else:
            held.generation, held.base, held.segments = state["generation"], state["base"], state["segments"]
    db.session.commit()


def generation_state(index: GalleryIndex) -> dict | None:
    """What identifies a generation for ``gallery_sync`` (None for one not loaded from a folder)."""
    if index.location is None:
        return None
    st = os.stat(os.path.join(index.location, FEATURES))
    return {"generation": os.path.basename(index.location), "base": f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}",
            "segments": [s.name for s in index.segments[1:]]}


def touched_since(index: GalleryIndex, segments_held: int) -> Iterator[str]:
    """The paths of the segments after the first ``segments_held`` and of every dead row: all a table that
    reflected a generation with that many segments on the same base may lack (dead rows are few: a compaction
    folds them away once they pass a tenth of the base)."""
    for segment in index.segments[1 + segments_held:]:
        yield from segment.paths
    for segment in index.segments:
        for local in index.dead[segment.name].tolist():
            yield segment.paths[local]


def _sync_all(index: GalleryIndex) -> None:
    """Compare the whole table with the index, a range of ids at a time (the index's rows sorted by id beside
    the table's rows of the same range, read by its primary key), so that memory stays with one chunk
    whatever the library's size. Each range is committed: a crash half-way leaves a table that the next
    sync compares again."""
    facts, paths = index.facts, index.paths
    order = np.argsort(index.ids, kind="stable")
    ids = index.ids[order]
    low = None
    for start in range(0, len(order), _CHUNK):
        high = int(ids[min(start + _CHUNK, len(order)) - 1])
        wanted = {int(ids[k]): row_values(paths[row], facts.facts(row))
                  for k, row in enumerate(order[start:start + _CHUNK].tolist(), start)}
        _apply(_held_rows(low, high), wanted)
        db.session.commit()  # a chunk at a time: a sync while the app serves holds the write lock briefly
        low = high
    _apply(_held_rows(low, None), {})


def _held_rows(low: int | None, high: int | None) -> dict[int, tuple]:
    """The table's compared columns by id, for the ids above ``low`` up to ``high`` (None: no bound)."""
    query = select(*_ID_AND_COMPARED)
    if low is not None:
        query = query.where(TABLE.c.id > low)
    if high is not None:
        query = query.where(TABLE.c.id <= high)
    return {row[0]: tuple(row[1:]) for row in db.session.execute(query)}


def _sync_paths(index: GalleryIndex, paths: list[str]) -> None:
    """Bring the rows of ``paths`` in step with the index (rows of other paths are left alone)."""
    paths = list(dict.fromkeys(paths))
    ids = [image_id(p) for p in paths]
    held = {}
    for start in range(0, len(ids), _IN_CHUNK):
        query = select(*_ID_AND_COMPARED).where(TABLE.c.id.in_(ids[start:start + _IN_CHUNK]))
        held.update((row[0], tuple(row[1:])) for row in db.session.execute(query))
    wanted = {}
    for public_id, path in zip(ids, paths):
        row = index.row_of_path(path)
        if row is not None:
            wanted[public_id] = row_values(path, index.info(row))
    _apply(held, wanted)


def _apply(held: dict[int, tuple], wanted: dict[int, dict]) -> None:
    """Insert, update and delete so that the ``held`` rows (id -> compared columns) become ``wanted``."""
    new = [{"id": i, **v} for i, v in wanted.items() if i not in held]
    changed = [{"_id": i, **v} for i, v in wanted.items() if i in held and held[i] != tuple(v[c] for c in COLUMNS)]
    gone = [i for i in held if i not in wanted]
    for start in range(0, len(gone), _IN_CHUNK):
        db.session.execute(delete(TABLE).where(TABLE.c.id.in_(gone[start:start + _IN_CHUNK])))
    statement = update(TABLE).where(TABLE.c.id == bindparam("_id"))  # SET: the columns each row dict names
    for rows, how in ((new, insert(TABLE)), (changed, statement)):
        for start in range(0, len(rows), _CHUNK):
            db.session.execute(how, rows[start:start + _CHUNK])
