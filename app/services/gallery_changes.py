"""Changing the gallery from the web: adding and deleting images, and rebuilding the index in the background.

Files, the index and the database must agree even if the process dies at any instant. Each change is written
to a journal first; files are staged outside the scanned tree and moved in with atomic renames; the index
switches generations atomically; database rows follow the index. At start-up ``recover`` replays an
unfinished journal, so a crash leaves either the old gallery or the new one.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import uuid
from typing import Any, Callable, Mapping

from indexer.atomic import atomic_write, write_json
from indexer.builder import BuildLocked, build_gallery
from indexer.generations import load_index
from indexer.scan import scan

from .errors import Busy, NotFound

JOURNAL = "admin-journal.json"
PROGRESS = ".progress.json"
STAGING = ".staging"
UPLOADS = "uploads"


def _crash_point(name: str) -> None:
    """Fault injection for the crash-consistency tests: die here, as kill -9 would."""
    if os.environ.get("SEARCH_CRASH_AT") == name:
        os._exit(137)


def _journal_path(cfg: Mapping[str, Any]) -> str:
    return os.path.join(cfg["INDEX_DIR"], JOURNAL)


def _build(cfg: Mapping[str, Any], exclude=(), **kwargs):
    try:
        return build_gallery(cfg["GALLERY_DIR"], cfg["INDEX_DIR"], cfg["WEIGHTS"], batch_size=cfg["BATCH_SIZE"],
                             max_pixels=cfg["MAX_IMAGE_PIXELS"], progress=False, backend=dict(cfg),
                             exclude=exclude, **kwargs)
    except BuildLocked:
        raise Busy("The index is being rebuilt; try again when it has finished.") from None


def safe_name(original: str, sha: str, ext: str) -> str:
    """``uploads/<stem>-<hash>.<ext>``: only safe characters, never a path from the client."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", os.path.splitext(os.path.basename(original or ""))[0]).strip("_")[:60]
    return f"{UPLOADS}/{stem or 'image'}-{sha[:10]}.{ext}"


def indexed_hashes(cfg: Mapping[str, Any]) -> dict[str, str]:
    """Content hash -> path of every indexed image."""
    index = load_index(cfg["INDEX_DIR"])
    if index is None:
        return {}
    return {info["sha256"]: path for path, info in index.manifest.get("files", {}).items() if path in index.row_of}


def add_images(cfg: Mapping[str, Any], items: list[tuple[str, bytes, str]]) -> dict:
    """Add validated ``(original name, data, extension)`` images; duplicates of indexed or earlier images in
    the batch are reported, not added. Returns {"added": [paths], "duplicates": [{name, same_as}]}."""
    known = indexed_hashes(cfg)
    staged, duplicates = [], []
    staging = os.path.join(cfg["GALLERY_DIR"], STAGING)
    os.makedirs(staging, exist_ok=True)
    for name, data, ext in items:
        sha = hashlib.sha256(data).hexdigest()
        if sha in known:
            duplicates.append({"filename": name, "same_as": known[sha]})
            continue
        final = safe_name(name, sha, ext)
        known[sha] = final
        temp = atomic_write(os.path.join(staging, f"{uuid.uuid4().hex}.{ext}"), data)
        staged.append({"staged": os.path.basename(temp), "final": final})
    if staged:
        write_json(_journal_path(cfg), {"op": "add", "files": staged})
        _finish_add(cfg, staged)
    return {"added": [s["final"] for s in staged], "duplicates": duplicates}


def _finish_add(cfg: Mapping[str, Any], staged: list[dict]) -> None:
    gallery = cfg["GALLERY_DIR"]
    for i, item in enumerate(staged):
        source = os.path.join(gallery, STAGING, item["staged"])
        target = os.path.join(gallery, item["final"])
        if os.path.exists(source):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(source, target)
        if i == 0:
            _crash_point("add-moved-one")
    _build(cfg)
    _crash_point("add-built")
    os.unlink(_journal_path(cfg))


def delete_images(cfg: Mapping[str, Any], ids: list[int]) -> list[str]:
    """Remove indexed images by public id: first from a new index generation, then their files. NotFound
    (and nothing deleted) if any id is not in the index. Returns the deleted paths."""
    index = load_index(cfg["INDEX_DIR"])
    rows = [index.row_of_id.get(i) for i in dict.fromkeys(ids)] if index is not None else [None]
    if any(r is None for r in rows):
        raise NotFound("Some of these gallery images do not exist.")
    paths = [index.paths[r] for r in rows]
    if paths:
        write_json(_journal_path(cfg), {"op": "delete", "paths": paths})
        _finish_delete(cfg, paths)
    return paths


def _finish_delete(cfg: Mapping[str, Any], paths: list[str]) -> None:
    _build(cfg, exclude=paths)
    _crash_point("delete-built")
    for path in paths:
        full = os.path.realpath(os.path.join(cfg["GALLERY_DIR"], path))
        if full.startswith(os.path.realpath(cfg["GALLERY_DIR"]) + os.sep) and os.path.isfile(full):
            os.unlink(full)
    os.unlink(_journal_path(cfg))


def recover(cfg: Mapping[str, Any]) -> str | None:
    """Finish a change a crash interrupted; returns what was done, or None."""
    try:
        with open(_journal_path(cfg)) as f:
            journal = json.load(f)
    except FileNotFoundError:
        journal = None
    except ValueError:
        os.unlink(_journal_path(cfg))  # torn before it was renamed into place: nothing had started
        journal = None
    done = None
    if journal and journal.get("op") == "add":
        _finish_add(cfg, journal["files"])
        done = f"finished adding {len(journal['files'])} image(s)"
    elif journal and journal.get("op") == "delete":
        _finish_delete(cfg, journal["paths"])
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


def drift(cfg: Mapping[str, Any]) -> dict:
    """Image files the index lacks, and indexed paths whose file is gone (changes made outside the app)."""
    index = load_index(cfg["INDEX_DIR"])
    entries, _ = scan(cfg["GALLERY_DIR"])
    files = {e.path for e in entries}
    indexed = set(index.paths) | set(index.manifest.get("duplicates", {})) if index is not None else set()
    return {"unindexed": sorted(files - indexed), "missing": sorted(set(index.paths if index else []) - files)}


_rebuild_lock = threading.Lock()
_rebuild_thread: threading.Thread | None = None


def rebuild_status(cfg: Mapping[str, Any]) -> dict:
    try:
        with open(os.path.join(cfg["INDEX_DIR"], PROGRESS)) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return {"state": "idle"}


def start_rebuild(cfg: Mapping[str, Any], full: bool = False,
                  on_published: Callable[[], None] | None = None) -> bool:
    """Run the builder in a background thread; False if one is already running in this process.
    ``on_published()`` runs in that thread after the new generation is live."""
    global _rebuild_thread
    cfg = dict(cfg)
    progress_path = os.path.join(cfg["INDEX_DIR"], PROGRESS)
    with _rebuild_lock:
        if _rebuild_thread is not None and _rebuild_thread.is_alive():
            return False

        def report(done: int, total: int, state: str = "running", **extra) -> None:
            write_json(progress_path, {"state": state, "done": done, "total": total, "updated": time.time(), **extra})

        def run() -> None:
            report(0, 0)
            try:
                result = _build(cfg, rebuild=full, on_progress=report)
                if on_published is not None:
                    on_published()
                report(result.embedded, result.embedded, "finished", images=result.images)
            except Exception as e:  # reported to the page, which polls for the outcome
                report(0, 0, "failed", error=str(e))

        _rebuild_thread = threading.Thread(target=run, name="gallery-rebuild", daemon=True)
        _rebuild_thread.start()
        return True
