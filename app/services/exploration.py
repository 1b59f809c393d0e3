"""Duplicates, groups and the map of the current index generation (``indexer.explore``), computed in the
background on first request and kept until the index changes; a request meanwhile learns how far the work has
got instead of waiting. Plain Python: the API turns the answers into JSON.

Bounded whatever the requests: one worker thread computes every job of the process in turn (each k-means or
neighbour search is BLAS work over the whole gallery, and OpenBLAS crashes when more threads call it at once
than it was built for), at most ``WAITING`` jobs wait for it, and at most ``REMEMBERED`` answers are kept per
generation, the least recently asked for leaving first. Beyond that a request is told to come back later
(503 with Retry-After). Each answer names the generation it was computed for, so that a page is built from
that generation's rows even when the index changed meanwhile.

Duplicates, the long one (minutes for a million pictures), run in a low-priority process of their own
(``indexer.duplicate_job``) whatever the vector backend, so that searches keep their cores; the worker
thread waits for it, and its status carries an estimate of the time left."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from indexer.duplicate_job import find_pairs
from indexer.explore import choose_k, duplicate_groups, minibatch_kmeans, pca_2d
from indexer.generations import GalleryIndex

from .engine import Engine
from .errors import InvalidInput, Overloaded

NEIGHBOURS = 10  # per picture, for duplicate groups
FLOOR = 0.8  # the lowest duplicate threshold offered; edges below it are not kept
MIN_K, MAX_K = 2, 100  # groups a user may ask for; choose_k picks from 2 to 60
WAITING = 4  # jobs queued behind the one being computed
REMEMBERED = 8  # answers kept per generation (duplicates, the map, and groups for a few values of k)
ESTIMATE_AFTER = 5.0  # seconds of work before the time left is estimated (a shorter job needs none)
RATE_WINDOW = 60.0  # seconds of recent progress the rate is measured over (it follows the machine's load)


@dataclass
class Job:
    """One computation for one generation: its progress, then its result or its error."""

    index: GalleryIndex  # the generation it is computed for
    done: int = 0
    total: int = 0
    result: Any = None
    error: str | None = None
    running: bool = False
    finished: threading.Event = field(default_factory=threading.Event)
    pid: int | None = None  # the process computing it, when it has one
    started: float | None = None  # time.monotonic() when the work began
    ended: float | None = None
    _recent: deque = field(default_factory=lambda: deque(maxlen=1000))  # (time, done) reports

    def status(self) -> dict:
        """State, progress, seconds of work so far and an estimate of the seconds left (None until known)."""
        now = self.ended or time.monotonic()
        return {"state": "failed" if self.error else "ready" if self.finished.is_set() else "computing",
                "done": self.done, "total": self.total, "error": self.error,
                "elapsed_seconds": round(now - self.started, 1) if self.started is not None else None,
                "eta_seconds": self.eta(now)}

    def eta(self, now: float) -> float | None:
        """Seconds left at the rate of the last ``RATE_WINDOW`` seconds, once ``ESTIMATE_AFTER`` seconds of
        work give a rate worth the name; None before, and once the job ended."""
        if self.started is None or self.finished.is_set() or now - self.started < ESTIMATE_AFTER:
            return None
        recent = list(self._recent)
        if len(recent) < 2 or self.total <= 0:
            return None
        (then, done_then), (last, done_last) = recent[0], recent[-1]
        if last - then < ESTIMATE_AFTER / 2 or done_last <= done_then:
            return None
        rate = (done_last - done_then) / (last - then)
        return round(max(0.0, (self.total - self.done) / rate - (now - last)), 1)

    def progress(self, done: int, total: int) -> None:
        """What the computation reports as it goes."""
        now = time.monotonic()
        self.done, self.total = done, total
        self._recent.append((now, done))
        while self._recent and now - self._recent[0][0] > RATE_WINDOW:
            self._recent.popleft()

    def answer(self) -> tuple[dict, Any, GalleryIndex]:
        """``(status, result, index)``: the result None until the job finished without error, and the
        generation its rows belong to."""
        ready = self.finished.is_set() and not self.error
        return self.status(), self.result if ready else None, self.index


class Exploration:
    """Thread-safe; one per process, beside the engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._location: str | None = None
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._executor: ThreadPoolExecutor | None = None  # made on first use: after gunicorn's fork

    def _job(self, name: str, work: Callable[[GalleryIndex, Any, Job], Any]) -> Job:
        """The job ``name`` of the current generation, queued now if it is not there yet; Overloaded when
        too many are waiting or every remembered place is taken by unfinished work."""
        index, backend = self.engine.current()
        with self._lock:
            if self._location != index.location:  # the index changed: earlier answers are stale
                self._location, self._jobs = index.location, OrderedDict()
            job = self._jobs.get(name)
            if job is not None:
                if job.finished.is_set() and job.error:
                    del self._jobs[name]  # a failure is told once: the next request tries again
                else:
                    self._jobs.move_to_end(name)
                return job
            finished = [n for n, j in self._jobs.items() if j.finished.is_set()]
            while len(self._jobs) >= REMEMBERED and finished:
                del self._jobs[finished.pop(0)]  # least recently asked for first
            if self._waiting() >= WAITING or len(self._jobs) >= REMEMBERED:
                raise Overloaded("Other views of the gallery are being computed; try again shortly.", retry_after=5)
            job = self._jobs[name] = Job(index)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="explore")
            self._executor.submit(self._run, job, work, backend)
        return job

    def stats(self) -> dict:
        """How many answers this generation keeps and how many jobs wait for the worker."""
        with self._lock:
            return {"kept": len(self._jobs), "waiting": self._waiting()}

    def _waiting(self) -> int:
        """Jobs queued for the worker and not started (the caller holds the lock)."""
        return sum(1 for j in self._jobs.values() if not j.running and not j.finished.is_set())

    def _run(self, job: Job, work: Callable[[GalleryIndex, Any, Job], Any], backend) -> None:
        job.running, job.started = True, time.monotonic()
        try:
            if job.index.location != self._location:
                job.error = "the index changed before this was computed"  # nobody will read it: skip the work
            else:
                job.result = work(job.index, backend, job)
        except Exception as e:  # noqa: BLE001  (reported to whoever asks; the next generation starts afresh)
            job.error = f"{type(e).__name__}: {e}"
        finally:
            job.running, job.ended = False, time.monotonic()
            job.finished.set()

    # --- duplicates -------------------------------------------------------------------------------------

    def duplicates(self, threshold: float) -> tuple[dict, list[list[dict]] | None]:
        """``(status, groups)``: groups of near-identical pictures at ``threshold`` (from FLOOR to 1), each
        best-quality first (most pixels, then largest file); groups are None while computing."""
        if not FLOOR <= threshold <= 1:
            raise InvalidInput(f"'threshold' must be between {FLOOR} and 1.")

        def work(index: GalleryIndex, backend, job: Job):
            def started(pid: int) -> None:
                job.pid = pid
            return find_pairs(index.features, NEIGHBOURS, FLOOR, progress=job.progress, started=started,
                              cancelled=lambda: index.location != self._location)

        status, edges, index = self._job("edges", work).answer()
        if edges is None:
            return status, None
        a, b, scores = edges
        groups = []
        for rows in duplicate_groups(len(index), a, b, scores, threshold):
            items = [self.item(index, r) for r in rows]
            items.sort(key=lambda i: (-(i["meta"].get("width", 0) * i["meta"].get("height", 0)), -i["bytes"], i["path"]))
            groups.append(items)
        return status, groups

    # --- groups -----------------------------------------------------------------------------------------

    def clusters(self, k: int | None) -> tuple[dict, dict | None, GalleryIndex]:
        """``(status, {"k", "labels", "order"}, index)``: every row's group and, per group, its rows nearest
        the centre first, None while computing; and the generation they belong to. ``k`` None:
        ``indexer.explore.choose_k``."""
        if k is not None and not MIN_K <= k <= MAX_K:
            raise InvalidInput(f"'k' must be from {MIN_K} to {MAX_K}.")

        def work(index: GalleryIndex, backend, job: Job):
            wanted = choose_k(len(index)) if k is None else k
            centres, labels = minibatch_kmeans(index.features, min(wanted, len(index)), seed=0, progress=job.progress)
            order = []
            for c in range(len(centres)):
                rows = np.flatnonzero(labels == c)
                closeness = index.vectors(rows) @ centres[c] if len(rows) else np.empty(0)
                order.append(rows[np.argsort(-closeness, kind="stable")].tolist())
            return {"k": len(centres), "labels": labels, "order": order}

        return self._job(f"groups-{'auto' if k is None else k}", work).answer()

    # --- map --------------------------------------------------------------------------------------------

    def map(self) -> tuple[dict, np.ndarray | None, GalleryIndex]:
        """``(status, (N, 2) coordinates in [-1, 1] of every row, index)``; None while computing."""
        def work(index: GalleryIndex, backend, job: Job):
            job.total = 1
            return pca_2d(index.features)

        return self._job("map", work).answer()

    def item(self, index: GalleryIndex, row: int) -> dict:
        """A picture as the pages show it: id, path, file size and its metadata."""
        info = index.info(row)
        return {"id": int(index.ids[row]), "path": index.path(row), "bytes": info.get("size", 0),
                "meta": self.engine.metadata(index, row)}
