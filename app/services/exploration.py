"""Duplicates, groups and the map of the current index generation (``indexer.explore``), computed in a
background thread on first request and kept until the index changes; a request meanwhile learns how far the
work has got instead of waiting. Plain Python: the API turns the answers into JSON."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from indexer.explore import (
    choose_k,
    duplicate_groups,
    minibatch_kmeans,
    neighbour_edges,
    pca_2d,
)
from indexer.generations import GalleryIndex

from .engine import Engine
from .errors import InvalidInput

NEIGHBOURS = 10  # per picture, for duplicate groups
FLOOR = 0.8  # the lowest duplicate threshold offered; edges below it are not kept
MAX_K = 200


@dataclass
class Job:
    """One computation for one generation: its progress, then its result or its error."""

    done: int = 0
    total: int = 0
    result: Any = None
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: threading.Event = field(default_factory=threading.Event)

    def status(self) -> dict:
        return {"state": "failed" if self.error else "ready" if self.finished.is_set() else "computing",
                "done": self.done, "total": self.total, "error": self.error}

    def progress(self, done: int, total: int) -> None:
        """What the computation reports as it goes."""
        self.done, self.total = done, total

    def answer(self) -> tuple[dict, Any]:
        """``(status, result)``, the result None until the job finished without error."""
        ready = self.finished.is_set() and not self.error
        return self.status(), self.result if ready else None


class Exploration:
    """Thread-safe; one per process, beside the engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._location: str | None = None
        self._jobs: dict[str, Job] = {}

    def _job(self, name: str, work: Callable[[GalleryIndex, Any, Job], Any]) -> tuple[Job, GalleryIndex]:
        """The job ``name`` of the current generation, started now if it is not there yet."""
        index, backend = self.engine.current()
        with self._lock:
            if self._location != index.location:  # the index changed: earlier answers are stale
                self._location, self._jobs = index.location, {}
            job = self._jobs.get(name)
            if job is None:
                job = self._jobs[name] = Job()

                def run() -> None:
                    try:
                        job.result = work(index, backend, job)
                    except Exception as e:  # reported to whoever asks; the next generation starts afresh
                        job.error = f"{type(e).__name__}: {e}"
                    job.finished.set()
                threading.Thread(target=run, name=f"explore-{name}", daemon=True).start()
        return job, index

    def wait(self, name: str, timeout: float) -> None:
        """Block until the job ``name`` (started already) is finished (tests, benchmarks)."""
        job = self._jobs.get(name)
        if job is not None:
            job.finished.wait(timeout)

    # --- duplicates -------------------------------------------------------------------------------------

    def duplicates(self, threshold: float) -> tuple[dict, list[list[dict]] | None]:
        """``(status, groups)``: groups of near-identical pictures at ``threshold`` (from FLOOR to 1), each
        best-quality first (most pixels, then largest file); groups are None while computing."""
        if not FLOOR <= threshold <= 1:
            raise InvalidInput(f"'threshold' must be between {FLOOR} and 1.")

        def work(index: GalleryIndex, backend, job: Job):
            return neighbour_edges(index.features, index.ids, backend, NEIGHBOURS, FLOOR, progress=job.progress)

        job, index = self._job("edges", work)
        status, edges = job.answer()
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

    def clusters(self, k: int | None) -> tuple[dict, dict | None]:
        """``(status, {"k", "labels", "order"})``: every row's group and, per group, its rows nearest the
        centre first; None while computing. ``k`` None: ``indexer.explore.choose_k``."""
        index = self.engine.index()
        k = choose_k(len(index)) if k is None else k
        if not 1 <= k <= MAX_K:
            raise InvalidInput(f"'k' must be from 1 to {MAX_K}.")

        def work(index: GalleryIndex, backend, job: Job):
            centres, labels = minibatch_kmeans(index.features, min(k, len(index)), seed=0, progress=job.progress)
            order = []
            for c in range(len(centres)):
                rows = np.flatnonzero(labels == c)
                closeness = index.vectors(rows) @ centres[c] if len(rows) else np.empty(0)
                order.append(rows[np.argsort(-closeness, kind="stable")].tolist())
            return {"k": len(centres), "labels": labels, "order": order}

        return self._job(f"groups-{k}", work)[0].answer()

    # --- map --------------------------------------------------------------------------------------------

    def map(self) -> tuple[dict, np.ndarray | None]:
        """``(status, (N, 2) coordinates in [-1, 1])`` of every row; None while computing."""
        def work(index: GalleryIndex, backend, job: Job):
            job.total = 1
            return pca_2d(index.features)

        return self._job("map", work)[0].answer()

    def item(self, index: GalleryIndex, row: int) -> dict:
        """A picture as the pages show it: id, path, file size and its metadata."""
        info = index.info(row)
        return {"id": int(index.ids[row]), "path": index.path(row), "bytes": info.get("size", 0),
                "meta": self.engine.metadata(index, row)}
