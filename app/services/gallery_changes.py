"""Changing the gallery from the web: adding and deleting images, and rebuilding the index in the background.

Files, the index and the database must agree even if the process dies at any instant. Each change is written
to a journal first; files are staged outside the scanned tree and moved in with atomic renames; the index
switches generations atomically (a change appends a small segment, ``indexer.changes``, so its cost does not
grow with the gallery); database rows follow the index. At start-up ``recover`` replays an unfinished
journal, so a crash leaves either the old gallery or the new one. Segments are folded together by a
compaction in the background once there are enough of them.

Every function takes the engine (``app.services.engine``): its settings say where the gallery and the index
are, and it is the one door to the model and the index.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import time
import uuid
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from indexer.atomic import atomic_write, write_json
from indexer.builder import BuildLocked, build_gallery, build_lock, is_locked
from indexer.changes import compact, update_paths
from indexer.generations import GalleryIndex
from indexer.options import BuildOptions, EmbedOptions
from indexer.scan import raw_companions, scan

from .engine import Engine
from .errors import Busy, NotFound, NotReady

JOURNAL = "admin-journal.json"
PROGRESS = ".progress.json"
STAGING = ".staging"
UPLOADS = "uploads"


def _crash_point(cfg: Mapping[str, Any], name: str) -> None:
    """Fault injection for the crash-consistency tests (the setting ``CRASH_AT``): die here, as kill -9 would."""
    if cfg["CRASH_AT"] == name:
        os._exit(137)


def _journal_path(cfg: Mapping[str, Any]) -> str:
    return os.path.join(cfg["INDEX_DIR"], JOURNAL)


Embed = Callable[[np.ndarray], np.ndarray]  # a batch of pixels to unit descriptors (the engine's queue)


@contextlib.contextmanager
def holding_index(cfg: Mapping[str, Any]) -> Iterator[None]:
    """The build lock for a whole change, taken before any file moves: Busy if a rebuild (or another change,
    in any process) holds it, so that a refused change leaves nothing behind."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(build_lock(cfg["INDEX_DIR"]))
        except BuildLocked:  # only taking the lock is refused; errors inside the change pass through
            raise Busy("The index is being rebuilt; try again when it has finished.") from None
        yield


def _build(engine: Engine, embed: Embed | None = None, **kwargs):
    """Build while the caller holds the lock (``holding_index``)."""
    cfg = engine.settings
    return build_gallery(cfg["GALLERY_DIR"], cfg["INDEX_DIR"], cfg["WEIGHTS"],
                         BuildOptions.from_settings(cfg, progress=False, embed=embed, lock_held=True,
                                                    clip_embed=_clip_embed(engine), **kwargs))


def _clip_embed(engine: Engine, embed: Embed | None = None) -> Embed | None:
    """CLIP's pass through the engine's inference queue, when CLIP is on: in the background when the
    descriptors' ``embed`` is (the folder watcher's), so that searches never wait behind a batch of it."""
    if not engine.clip_enabled:
        return None
    return engine.embed_clip_background if embed == engine.embed_background else engine.embed_clip_batch


def safe_name(original: str, sha: str, ext: str) -> str:
    """``uploads/<stem>-<hash>.<ext>``: only safe characters, never a path from the client."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", os.path.splitext(os.path.basename(original or ""))[0]).strip("_")[:60]
    return f"{UPLOADS}/{stem or 'image'}-{sha[:10]}.{ext}"


def _update(engine: Engine, embed: Embed | None, add=(), remove=(), workers: int | None = None):
    """Apply a change to the index while the caller holds the lock; without ``embed`` (recovery at start-up)
    through the engine's inference queue."""
    cfg = engine.settings
    if add:
        _refuse_another_descriptor(engine, engine.latest_index())
        embed = embed or engine.embed_batch
    return update_paths(cfg["GALLERY_DIR"], cfg["INDEX_DIR"], embed, add=add, remove=remove,
                        options=EmbedOptions.from_settings(cfg, clip_embed=_clip_embed(engine, embed),
                                                           **({} if workers is None else {"workers": workers})))


def _refuse_another_descriptor(engine: Engine, index: GalleryIndex | None) -> None:
    """NotReady when the weights describe pictures otherwise than ``index`` did: new rows would not compare."""
    mismatch = index is not None and engine.descriptor_problem(index)
    if mismatch:
        raise NotReady(mismatch)


def compact_if_due(engine: Engine, on_done: Callable[[], None] | None = None) -> bool:
    """Start folding the segments in a background thread when enough changes piled up (and nothing holds the
    index); returns whether it started."""
    index = engine.latest_index()
    if index is None or not index.needs_compaction():
        return False
    cfg = engine.settings
    held = contextlib.ExitStack()
    try:
        held.enter_context(holding_index(cfg))
    except Busy:
        return False

    def run() -> None:
        with held:
            compact(cfg["INDEX_DIR"], cfg)
        if on_done is not None:
            on_done()

    threading.Thread(target=run, name="gallery-compaction", daemon=True).start()
    return True


def add_images(engine: Engine, items: list[tuple[str, bytes, str]], embed: Embed | None = None) -> dict:
    """Add validated ``(original name, data, extension)`` images; duplicates of indexed or earlier images in
    the batch are reported, not added. Returns {"added": [paths], "duplicates": [{name, same_as}]}."""
    cfg = engine.settings
    with holding_index(cfg):
        index = engine.latest_index()
        _refuse_another_descriptor(engine, index)  # before any file is written
        known: dict[str, str] = {}
        staged, duplicates = [], []
        staging = os.path.join(cfg["GALLERY_DIR"], STAGING)
        os.makedirs(staging, exist_ok=True)
        for name, data, ext in items:
            sha = hashlib.sha256(data).hexdigest()
            same = known.get(sha) or (index.path_of_sha(sha) if index is not None else None)
            if same is not None:
                duplicates.append({"filename": name, "same_as": same})
                continue
            final = safe_name(name, sha, ext)
            known[sha] = final
            temp = atomic_write(os.path.join(staging, f"{uuid.uuid4().hex}.{ext}"), data)
            staged.append({"staged": os.path.basename(temp), "final": final})
        if staged:
            write_json(_journal_path(cfg), {"op": "add", "files": staged})
            _finish_add(engine, staged, embed)
    return {"added": [s["final"] for s in staged], "duplicates": duplicates}


def _finish_add(engine: Engine, staged: list[dict], embed: Embed | None = None) -> None:
    cfg = engine.settings
    gallery = cfg["GALLERY_DIR"]
    for i, item in enumerate(staged):
        source = os.path.join(gallery, STAGING, item["staged"])
        target = os.path.join(gallery, item["final"])
        if os.path.exists(source):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(source, target)
        if i == 0:
            _crash_point(cfg, "add-moved-one")
    _update(engine, embed, add=[item["final"] for item in staged])
    _crash_point(cfg, "add-built")
    os.unlink(_journal_path(cfg))


def delete_images(engine: Engine, ids: list[int], embed: Embed | None = None) -> list[str]:
    """Remove indexed images by public id: first from a new index generation, then their files. NotFound
    (and nothing deleted) if any id is not in the index. Returns the deleted paths."""
    cfg = engine.settings
    with holding_index(cfg):
        index = engine.latest_index()
        rows = [index.row_of_id(i) for i in dict.fromkeys(ids)] if index is not None else [None]
        if any(r is None for r in rows):
            raise NotFound("Some of these gallery images do not exist.")
        paths = [index.path(r) for r in rows]
        if paths:
            write_json(_journal_path(cfg), {"op": "delete", "paths": paths})
            _finish_delete(engine, paths, embed)
    return paths


def _finish_delete(engine: Engine, paths: list[str], embed: Embed | None = None) -> None:
    cfg = engine.settings
    _update(engine, embed, remove=paths)
    _crash_point(cfg, "delete-built")
    gallery = os.path.abspath(cfg["GALLERY_DIR"])
    for path in paths + [raw for p in paths for raw in raw_companions(gallery, p)]:  # a pair is one picture
        full = os.path.normpath(os.path.join(gallery, path))
        # The indexed path itself goes (a symlink, not what it points to); never anything outside the gallery.
        if full.startswith(gallery + os.sep) and (os.path.islink(full) or os.path.isfile(full)):
            os.unlink(full)
    os.unlink(_journal_path(cfg))


def recover(engine: Engine) -> str | None:
    """Finish a change a crash interrupted; returns what was done, or None."""
    cfg = engine.settings
    try:
        with open(_journal_path(cfg)) as f:
            journal = json.load(f)
    except FileNotFoundError:
        journal = None
    except ValueError:
        os.unlink(_journal_path(cfg))  # torn before it was renamed into place: nothing had started
        journal = None
    done = None
    if journal and journal.get("op") in ("add", "delete"):
        with holding_index(cfg):
            if journal["op"] == "add":
                _finish_add(engine, journal["files"])
                done = f"finished adding {len(journal['files'])} image(s)"
            else:
                _finish_delete(engine, journal["paths"])
                done = f"finished deleting {len(journal['paths'])} image(s)"
    _clear_stale_staging(os.path.join(cfg["GALLERY_DIR"], STAGING))
    return done


def _clear_stale_staging(folder: str, age: float = 3600.0) -> None:
    """Remove staged uploads no journal named: left by a crash before the journal was written. Recent ones may
    belong to an upload another worker is making right now, so they stay."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(folder, name)
        try:
            if time.time() - os.path.getmtime(path) > age:
                os.unlink(path)
        except OSError:
            pass


def drift(engine: Engine) -> dict:
    """Image files the index lacks (changes made outside the app), indexed files whose size or time changed
    since, indexed paths whose file is gone, and the files left out with the reason (these are not drift: a
    rebuild would skip them again)."""
    index = engine.latest_index()
    entries, _ = scan(engine.settings["GALLERY_DIR"])
    files = {e.path for e in entries}
    manifest = index.manifest if index is not None else {}
    skipped = manifest.get("skipped", {})
    indexed = set(index.paths if index else []) | set(manifest.get("duplicates", {}))
    changed = _changed_since(index, entries) if index is not None else []
    return {"unindexed": sorted(files - indexed - set(skipped)), "changed": changed,
            "missing": sorted(set(index.paths if index else []) - files),
            "skipped": [{"path": p, "reason": r} for p, r in sorted(skipped.items())]}


def _changed_since(index: GalleryIndex, entries: list) -> list[str]:
    """The scanned entries whose size or modification time differs from what the index recorded of them
    (read from its columns: a million files' facts are not decoded for it)."""
    facts = index.facts
    changed = []
    for entry in entries:
        row = facts.row_of(entry.path)
        if row is not None and facts.has(row) and \
                (int(facts.columns["size"][row]), facts.mtime_ns(row)) != (entry.size, entry.mtime_ns):
            changed.append(entry.path)
    return changed


def index_paths(engine: Engine, add=(), remove=(), embed: Embed | None = None, workers: int | None = None):
    """Index files already in the gallery folder and drop deleted ones (the folder watcher's change), under
    the same lock as uploads; Busy while another change or a rebuild holds the index."""
    with holding_index(engine.settings):
        return _update(engine, embed, add=add, remove=remove, workers=workers)


def rebuild_status(engine: Engine) -> dict:
    """The last rebuild's progress; "interrupted" when it says running but no process holds the index (the
    process running it died)."""
    cfg = engine.settings
    try:
        with open(os.path.join(cfg["INDEX_DIR"], PROGRESS)) as f:
            status = json.load(f)
    except (FileNotFoundError, ValueError):
        return {"state": "idle"}
    if status.get("state") == "running" and not is_locked(cfg["INDEX_DIR"]):
        status["state"] = "interrupted"
    return status


def start_rebuild(engine: Engine, full: bool = False, on_published: Callable[[], None] | None = None,
                  embed: Embed | None = None) -> None:
    """Run the builder in a background thread holding the index (taken here, so that of two requests in any
    processes exactly one starts); Busy if a rebuild or a change holds it. ``on_published()`` runs in that
    thread after the new generation is live."""
    cfg = engine.settings
    progress_path = os.path.join(cfg["INDEX_DIR"], PROGRESS)
    held = contextlib.ExitStack()
    held.enter_context(holding_index(cfg))

    def report(done: int, total: int, state: str = "running", **extra) -> None:
        write_json(progress_path, {"state": state, "done": done, "total": total, "updated": time.time(), **extra})

    def run() -> None:
        with held:
            try:
                result = _build(engine, embed, rebuild=full, on_progress=report)
                if on_published is not None:
                    on_published()
                report(result.embedded, result.embedded, "finished", images=result.images)
            except Exception as e:  # reported to the page, which polls for the outcome
                report(0, 0, "failed", error=str(e))

    report(0, 0)
    threading.Thread(target=run, name="gallery-rebuild", daemon=True).start()
