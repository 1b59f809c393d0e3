"""One queue for all model work of a process, with dynamic micro-batching and backpressure.

Every request thread that needs the model hands its work to one dispatcher thread instead of running its own
forward pass: several forward passes at once fight over the cores and their BLAS pools, while one batched pass
shards cleanly across them (``dinov2_numpy.parallel``) and costs less per image. The dispatcher takes what is
waiting, up to ``max_batch`` same-sized inputs. It waits for more, at most ``max_wait_ms`` after the first
arrived or the last batch finished, only while more are known to be coming: admitted requests still reading
or decoding their upload, or the clients of a shared batch that just got their answers. A lone client never
waits, and concurrent clients do not settle into half-sized batches that take turns.

Backpressure: at most ``limit`` requests may hold a place (from ``admit`` until they finish), and a job that
waited more than ``deadline_s`` for the model is refused; both raise ``Overloaded``, which the web layer turns
into 503 with Retry-After. Nothing waits without bound.
"""
from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from dinov2_numpy import Dinov2
from indexer.embedding import embed_pixels, embed_pixels_with_patches

from .errors import Overloaded


@dataclass
class Ran:
    """How a job ran: the batch it was part of (its size, and its number: jobs of one batch share it), how long
    it waited for the model and how long the batch took."""

    batch_size: int
    queue_ms: float
    run_ms: float
    batch_number: int = 0


@dataclass
class _Job:
    pixels: np.ndarray | None  # (3, H, W) to embed, batched with same-sized others
    call: Callable[[Dinov2], Any] | None  # any other model work, run alone
    background: bool = False  # indexing work: runs alone, and only when no search is waiting
    patches: bool = False  # the result is (descriptor, patch tokens) rather than the descriptor alone
    client: object = None  # the request the job is part of, when one request queues several (None: its own)
    enqueued: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None
    ran: Ran | None = None

    @property
    def batchable(self) -> bool:
        """A search's image, which may share a forward pass with others of its size."""
        return self.pixels is not None and not self.background


class InferenceQueue:
    """Thread-safe; the dispatcher thread starts on first use (after any fork)."""

    def __init__(self, model: Callable[[], Dinov2], *, max_batch: int, max_wait_ms: float, limit: int,
                 deadline_s: float) -> None:
        """The limits come from the settings (``app.config``: ``INFER_MAX_BATCH``, ``INFER_MAX_WAIT_MS``,
        ``QUEUE_LIMIT``, ``QUEUE_DEADLINE``), which hold their defaults."""
        self._model = model
        self.max_batch, self.max_wait, self.limit, self.deadline = max(1, max_batch), max_wait_ms / 1e3, limit, deadline_s
        self._jobs: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._admitted = 0
        self._coming = 0  # admitted requests that have not yet submitted work
        self._local = threading.local()
        self._thread: threading.Thread | None = None
        self._per_image_s = 0.1  # running estimate, for Retry-After
        self._last_batch, self._last_done = 0, 0.0
        self.batches = self.jobs_run = self.refused = 0
        self.largest_batch = 0

    # --- request side ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one of the ``limit`` places for a request's whole model work; Overloaded if none is free."""
        with self._cond:
            if self._admitted >= self.limit:
                self.refused += 1
                raise Overloaded(f"The server is busy ({self._admitted} searches in progress); try again shortly.",
                                 self.retry_after())
            self._admitted += 1
            self._coming += 1
        self._local.coming = True
        try:
            yield
        finally:
            with self._cond:
                self._admitted -= 1
                self._arrived()
                self._cond.notify_all()

    def _arrived(self) -> None:
        """This thread's admitted request is no longer on its way (it submitted work, or finished)."""
        if getattr(self._local, "coming", False):
            self._local.coming = False
            self._coming -= 1

    def embed(self, pixels: np.ndarray, background: bool = False) -> tuple[np.ndarray, Ran]:
        """The unit descriptor of one preprocessed image (3, H, W), batched with whatever else is waiting; a
        ``background`` image (indexing) runs alone and yields to every waiting search, so that a search
        waits at most for one image of indexing in progress."""
        job = self._submit(_Job(np.ascontiguousarray(pixels, np.float32), None, background))
        return job.result, job.ran

    def embed_with_patches(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, Ran]]:
        """Per preprocessed image (3, H, W): its unit descriptor, the patch tokens (N, D) the descriptor pools
        and how it ran. The images wait as searches do and may share one forward pass with each other and
        with searches of their size (they are queued together before any is waited for)."""
        client = object()
        jobs = self._enqueue([_Job(np.ascontiguousarray(p, np.float32), None, patches=True, client=client)
                              for p in images])
        return [(*self._wait(job).result, job.ran) for job in jobs]

    def call(self, fn: Callable[[Dinov2], Any], background: bool = False) -> tuple[Any, Ran]:
        """Run ``fn(model)`` on the dispatcher, alone (segmentation, a builder's batch, CLIP's work); a
        ``background`` call (indexing) yields to every waiting search."""
        job = self._submit(_Job(None, fn, background))
        return job.result, job.ran

    def retry_after(self) -> int:
        """Seconds until the work now waiting is likely done, at least 1."""
        waiting = len(self._jobs) + self._admitted
        return max(1, min(60, math.ceil(waiting * self._per_image_s)))

    def stats(self) -> dict:
        """Counters for health checks and the load benchmark."""
        with self._cond:
            return {"waiting": len(self._jobs), "in_progress": self._admitted, "limit": self.limit,
                    "batches": self.batches, "jobs": self.jobs_run, "refused": self.refused,
                    "mean_batch": round(self.jobs_run / self.batches, 3) if self.batches else 0.0,
                    "largest_batch": self.largest_batch}

    def _submit(self, job: _Job) -> _Job:
        return self._wait(self._enqueue([job])[0])

    def _enqueue(self, jobs: list[_Job]) -> list[_Job]:
        """Queue ``jobs`` at once, so that the dispatcher sees all of them when it next takes a batch."""
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="inference-queue", daemon=True)
                self._thread.start()
            self._jobs.extend(jobs)
            self._arrived()
            self._cond.notify_all()
        return jobs

    def _wait(self, job: _Job) -> _Job:
        # The dispatcher finishes or refuses every job it takes; the bound only guards against its death.
        if not job.done.wait(self.deadline + 300):
            raise Overloaded("The model did not answer in time; try again.", self.retry_after())
        if job.error is not None:
            raise job.error
        return job

    # --- dispatcher side ------------------------------------------------------------------------------

    def _take(self) -> list[_Job]:
        """The next batch: the oldest search (or other foreground job) and, if it is an image, up to
        ``max_batch`` - 1 more of its size; background jobs one at a time, when no search is waiting."""
        with self._cond:
            while not self._jobs:
                self._cond.wait()
            first = self._first(self._jobs[0])
            if first.batchable:
                first = self._wait_for_company(first)
            now = time.perf_counter()
            taken: list[_Job] = []
            kept: deque[_Job] = deque()
            while self._jobs:
                job = self._jobs.popleft()
                if now - job.enqueued > self.deadline and not job.background:
                    self._refuse_late(job)
                elif job is first or (taken and self._joins(first, job, len(taken))):
                    taken.append(job)
                else:
                    kept.append(job)
            self._jobs.extendleft(reversed(kept))
            return taken

    def _first(self, default: _Job) -> _Job:
        """The oldest foreground job, else ``default``."""
        return next((job for job in self._jobs if not job.background), default)

    def _wait_for_company(self, first: _Job) -> _Job:
        """Wait (at most ``max_wait`` after ``first`` arrived or the last batch finished) while more searches
        are known to be coming; then the oldest foreground job again (an older one may have come meanwhile)."""
        until = max(first.enqueued, self._last_done) + self.max_wait
        while (len(self._jobs) < self.max_batch and (self._coming > 0 or self._last_batch > 1)
               and (left := until - time.perf_counter()) > 0):
            self._cond.wait(left)
        return self._first(first)

    def _joins(self, first: _Job, job: _Job, taken: int) -> bool:
        """Whether ``job`` rides in the batch of ``first`` that already holds ``taken`` jobs."""
        return (first.batchable and job.batchable and taken < self.max_batch
                and job.pixels.shape == first.pixels.shape)

    def _refuse_late(self, job: _Job) -> None:
        self.refused += 1
        job.error = Overloaded(f"The search waited more than {self.deadline:g} s for the model; try again shortly.",
                               self.retry_after())
        job.done.set()

    def _serve(self) -> None:
        while True:
            batch = self._take()
            if batch:
                self._run(batch)

    @staticmethod
    def _embed(model: Dinov2, batch: list[_Job]) -> list[Any]:
        """One forward pass over the batch's images; the patch tokens kept only where a job asked for them."""
        pixels = np.stack([job.pixels for job in batch])
        if not any(job.patches for job in batch):
            return list(embed_pixels(model, pixels))
        vectors, patches = embed_pixels_with_patches(model, pixels)
        return [(v, p) if job.patches else v for job, v, p in zip(batch, vectors, patches)]

    def _run(self, batch: list[_Job]) -> None:
        start = time.perf_counter()
        try:
            model = self._model()
            if batch[0].call is not None:
                results = [batch[0].call(model)]
            else:
                results = self._embed(model, batch)
        except BaseException as e:  # handed to every waiting request; the dispatcher itself goes on
            for job in batch:
                job.error = e
                job.done.set()
            return
        end = time.perf_counter()
        run_ms = (end - start) * 1e3
        with self._cond:
            self.batches += 1
            number = self.batches
            self.jobs_run += len(batch)
            self.largest_batch = max(self.largest_batch, len(batch))
            # Clients, not jobs: the company to wait for after a shared batch is other requests coming back.
            self._last_batch = len({id(job.client or job) for job in batch})
            self._last_done = end
            self._per_image_s = 0.8 * self._per_image_s + 0.2 * (end - start) / len(batch)
        for job, result in zip(batch, results):
            job.result = result
            job.ran = Ran(len(batch), (start - job.enqueued) * 1e3, run_ms, number)
            job.done.set()
