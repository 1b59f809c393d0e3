"""Keeping the index up to date with the gallery folder: inotify events (through watchdog) become small index
changes through the same locked, segment-appending path as uploads (``gallery_changes.index_paths``).

- Bursts are debounced: events only mark paths as pending; a path is taken once it has been quiet for
  ``settle`` seconds, and up to ``batch`` paths go into one change, so a card dump of 500 files makes a few
  changes, not 500.
- A file still being written (created or modified, not yet closed) waits for its close, or for ``stale``
  seconds without any event (a writer that died); its size and time must also hold still over ``settle``.
  Files in a folder that appeared within ``stale`` seconds (a copied folder) are complete once their size
  and time hold still: inotify watches a new folder only after it exists, so the "closed" events of files
  copied into it early are lost, while later "created" events still arrive.
- A full scan at start and every ``scan_every`` seconds (and on request) catches what inotify misses: network
  shares, changes made while the app was down.
- Files that cannot be indexed are recorded once with the reason (``GalleryIndex.skipped``) and not retried
  until they change.
- One watcher per deployment: every worker runs a ``WatchSupervisor``, and the one holding ``.watch.lock``
  watches; if that worker dies another takes over, and a watcher that crashes is started again.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

from indexer.atomic import write_json
from indexer.changes import ChangeReport
from indexer.scan import is_candidate, raw_companions

from .engine import Engine
from .errors import Busy, NotReady
from .gallery_changes import Embed, drift, index_paths

STATUS = ".watch.json"
LOCK = ".watch.lock"
SCAN_REQUEST = ".watch-scan"
HEARTBEAT_S = 2.0  # the status file is rewritten at least this often while watching
log = logging.getLogger(__name__)


@dataclass
class Pending:
    last: float  # last event or last time the file was seen to change
    open: bool  # created or modified and not yet closed
    stat: tuple | None | str = "unseen"  # (size, mtime) at the last look; None: the file is gone


class GalleryWatcher:
    """Follows the engine's ``GALLERY_DIR``; ``run`` blocks until ``stop``. ``on_change(paths)`` is told the
    paths each change touched (the web app syncs its table there)."""

    def __init__(self, engine: Engine, embed: Embed, on_change: Callable[[list[str]], None] | None = None,
                 *, settle: float = 1.0, stale: float = 60.0, scan_every: float = 3600.0, batch: int = 64) -> None:
        self.engine = engine
        self.cfg = engine.settings
        self.gallery = os.path.abspath(self.cfg["GALLERY_DIR"])
        self.embed, self.on_change = embed, on_change
        self.settle, self.stale, self.scan_every, self.batch = settle, stale, scan_every, batch
        self.pending: dict[str, Pending] = {}
        self.indexing: list[str] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.loops = 0
        self.changes = 0
        self.last_scan: dict = {}
        self.recent: list[dict] = []  # the last changes, newest first
        self._next_scan = 0.0
        self._last_status = 0.0
        self._refused = ""  # the last reason the index refused changes, logged once
        self._new_folders: dict[str, float] = {}  # folders created lately -> when (monotonic)

    # --- events (watchdog's thread) ---------------------------------------------------------------------

    def _rel(self, path: str) -> str | None:
        path = os.fsdecode(path)
        if not path.startswith(self.gallery + os.sep):
            return None
        rel = os.path.relpath(path, self.gallery).replace(os.sep, "/")
        return rel if not any(part.startswith(".") for part in rel.split("/")) else None

    def note(self, path: str, open_: bool) -> None:
        """Mark a relative path as changed (written to while ``open_``)."""
        now = time.monotonic()
        with self.lock:
            item = self.pending.get(path)
            if item is None:
                self.pending[path] = Pending(now, open_)
            else:
                item.last, item.open = now, open_

    def on_event(self, event) -> None:
        """One watchdog event: files become pending, folders are walked (a folder moved in brings files
        inotify never reported one by one), moved and deleted folders drop what was indexed below them."""
        kind = event.event_type
        paths = [event.src_path] + ([event.dest_path] if kind == "moved" else [])
        rels = [self._rel(p) for p in paths]
        if event.is_directory:
            self._on_folder(kind, rels)
            return
        if kind == "moved":
            if rels[0] is not None:
                self.note(rels[0], False)
            if rels[1] is not None and is_candidate(rels[1]):
                self.note(rels[1], False)
            return
        rel = rels[0]
        if rel is None or not is_candidate(rel) or kind in ("opened", "closed_no_write"):
            return
        self.note(rel, kind in ("created", "modified") and not self._in_new_folder(rel))
        for raw in raw_companions(self.gallery, rel):  # a JPEG came or went: its RAW is (no longer) its pair
            self.note(raw, False)

    def _on_folder(self, kind: str, rels: list[str | None]) -> None:
        if kind == "deleted" or kind == "moved":
            self._forget_below(rels[0])
        if kind in ("created", "moved") and rels[-1] is not None:
            self._new_folders[rels[-1]] = time.monotonic()
            self._walk(os.path.join(self.gallery, rels[-1]))

    def _in_new_folder(self, rel: str) -> bool:
        """Whether ``rel`` lies below a folder created less than ``stale`` seconds ago."""
        now = time.monotonic()
        for folder, since in list(self._new_folders.items()):
            if now - since >= self.stale:
                self._new_folders.pop(folder, None)
            elif rel.startswith(folder + "/"):
                return True
        return False

    def _walk(self, folder: str) -> None:
        for root, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                rel = self._rel(os.path.join(root, name))
                if rel is not None and is_candidate(rel):
                    self.note(rel, False)

    def _forget_below(self, rel: str | None) -> None:
        if rel is None:
            return
        index = self.engine.latest_index()
        for path in index.paths if index is not None else []:
            if path.startswith(rel + "/"):
                self.note(path, False)

    # --- the loop ---------------------------------------------------------------------------------------

    def scan(self) -> None:
        """Queue every file the index lacks, has stale, or has lost."""
        found = drift(self.engine)
        for path in found["unindexed"] + found["changed"] + found["missing"]:
            self.note(path, False)
        self.last_scan = {"at": time.time(), "unindexed": len(found["unindexed"]), "changed": len(found["changed"]),
                          "missing": len(found["missing"])}
        self._next_scan = time.monotonic() + self.scan_every

    def ready(self) -> dict[str, float]:
        """Pending paths quiet for ``settle`` seconds, closed (or silent for ``stale``), and not growing, with
        the time of their last event (a later one means the file changed again while it was indexed)."""
        now = time.monotonic()
        out = []
        with self.lock:
            for path, item in self.pending.items():
                if now - item.last < self.settle or (item.open and now - item.last < self.stale):
                    continue
                try:
                    st = os.stat(os.path.join(self.gallery, path))
                    stat = (st.st_size, st.st_mtime_ns)
                except OSError:
                    stat = None
                if stat != item.stat:  # first look, or it changed since the last: look again after settling
                    item.stat, item.last = stat, now
                    continue
                out.append(path)
            return {p: self.pending[p].last for p in sorted(out)[:self.batch]}

    def step(self) -> None:
        """One turn: a scan when due, then one change of the paths that are ready."""
        if self._scan_requested() or time.monotonic() >= self._next_scan:
            self.scan()
        paths = self.ready()
        if paths:
            report = self._index(paths)
            if report is not None:
                self._indexed(paths, report)
        self.loops += 1
        self.status()

    def _scan_requested(self) -> bool:
        """Whether a full scan was asked for (``request_scan``); the request is taken."""
        try:
            os.unlink(os.path.join(self.cfg["INDEX_DIR"], SCAN_REQUEST))
        except FileNotFoundError:
            return False
        return True

    def _index(self, paths: dict[str, float]) -> ChangeReport | None:
        """One change of ``paths`` (added where the file exists, removed where not); its report, or None when
        the index refused it for now (the paths stay pending)."""
        add = [p for p in paths if os.path.lexists(os.path.join(self.gallery, p))]
        remove = [p for p in paths if p not in set(add)]
        self.indexing = list(paths)
        self.status(force=True)
        try:
            return index_paths(self.engine, add=add, remove=remove, embed=self.embed, workers=1)
        except Busy:  # an upload or a rebuild holds the index
            return None
        except NotReady as e:  # e.g. the weights describe pictures otherwise: pending until a rebuild
            if e.message != self._refused:
                log.warning("the gallery watcher cannot index changes: %s", e.message)
            self._refused = e.message
            return None
        finally:
            self.indexing = []

    def _indexed(self, paths: dict[str, float], report: ChangeReport) -> None:
        """After a change: the paths it took are no longer pending unless they changed again meanwhile."""
        with self.lock:
            for p, last in paths.items():
                if p in self.pending and self.pending[p].last == last:
                    del self.pending[p]
        self.changes += 1
        self.recent = ([{"at": time.time(), "added": len(report.added), "removed": len(report.removed),
                         "failed": len(report.skipped), "paths": sorted(paths)[:20]}] + self.recent)[:10]
        touched = report.added + report.removed
        if touched and self.on_change is not None:
            self.on_change(touched)

    def status(self, force: bool = False) -> None:
        """Write the status file other workers and the manage page read."""
        if not force and time.monotonic() - self._last_status < HEARTBEAT_S / 4:
            return
        self._last_status = time.monotonic()
        with self.lock:
            pending = [{"path": p, "waiting": "being written" if i.open else "settling"}
                       for p, i in sorted(self.pending.items()) if p not in self.indexing]
        write_json(os.path.join(self.cfg["INDEX_DIR"], STATUS), {
            "pid": os.getpid(), "heartbeat": time.time(), "loops": self.loops, "changes": self.changes,
            "pending": pending[:200], "pending_count": len(pending), "indexing": list(self.indexing),
            "last_scan": self.last_scan, "scan_every": self.scan_every, "recent": self.recent},
            durable=False)  # a status, rewritten twice a second: losing one to a crash costs nothing

    def run(self) -> None:
        """Watch until ``stop``: a start-up scan, then events and periodic scans."""
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                watcher.on_event(event)

        os.makedirs(self.gallery, exist_ok=True)
        observer = Observer()
        observer.schedule(Handler(), self.gallery, recursive=True)
        observer.start()
        try:
            while not self.stopped.is_set():
                self.step()
                self.stopped.wait(0.2)
        finally:
            observer.stop()
            observer.join(timeout=5)

    def stop(self) -> None:
        self.stopped.set()


class WatchSupervisor:
    """Run in every worker: takes the deployment's watch lock when it is free, runs the watcher while it
    holds it, and restarts a watcher that crashed (after ``backoff`` seconds)."""

    def __init__(self, make: Callable[[], GalleryWatcher], index_dir: str, backoff: float = 5.0) -> None:
        self.make, self.index_dir, self.backoff = make, index_dir, backoff
        self.stopped = threading.Event()
        self.watcher: GalleryWatcher | None = None
        self.restarts = 0
        self.thread = threading.Thread(target=self._run, name="gallery-watch", daemon=True)

    def start(self) -> "WatchSupervisor":
        self.thread.start()
        return self

    def _run(self) -> None:
        os.makedirs(self.index_dir, exist_ok=True)
        with open(os.path.join(self.index_dir, LOCK), "w") as lock:
            while not self.stopped.is_set():
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # another worker watches; take over if it goes
                    self.stopped.wait(self.backoff)
                    continue
                try:
                    while not self.stopped.is_set():
                        self.watcher = self.make()
                        try:
                            self.watcher.run()
                        except Exception:  # never fatal to the web app: log, wait, start again
                            log.exception("the gallery watcher stopped; starting it again in %.0f s", self.backoff)
                            self.restarts += 1
                            self.stopped.wait(self.backoff)
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def stop(self) -> None:
        self.stopped.set()
        if self.watcher is not None:
            self.watcher.stop()
        self.thread.join(timeout=10)


def watch_status(index_dir: str, enabled: bool) -> dict:
    """What the watcher reports, with ``state``: off, watching, or stopped (no heartbeat lately)."""
    if not enabled:
        return {"state": "off"}
    try:
        with open(os.path.join(index_dir, STATUS)) as f:
            status = json.load(f)
    except (FileNotFoundError, ValueError):
        return {"state": "starting"}
    status["state"] = "watching" if time.time() - status.get("heartbeat", 0) < 10 * HEARTBEAT_S else "stopped"
    return status


def request_scan(index_dir: str) -> None:
    """Ask the watcher (in whichever worker runs it) for a full scan on its next turn."""
    with open(os.path.join(index_dir, SCAN_REQUEST), "w"):
        pass
