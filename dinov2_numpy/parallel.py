"""Running a batch as independent shards, one per core.

NumPy's element-wise work runs on one core while BLAS uses all of them, so half of a forward pass leaves
cores idle. Splitting the batch across threads, each with single-threaded BLAS, keeps every core busy:
one shard's GELU overlaps another's matrix products.
"""
from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")

MAX_WORKERS = 16
_lock = threading.Lock()
_pool_lock = threading.Lock()
_workers: int | None = None
_pool: ThreadPoolExecutor | None = None
_users = 0
_saved: list = []

try:
    from threadpoolctl import ThreadpoolController
    _controller = ThreadpoolController()
except ImportError:  # pragma: no cover - threadpoolctl is in requirements.txt
    _controller = None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit BLAS to one thread while any caller is inside; callers may overlap from several threads."""
    global _users
    with _lock:
        if _users == 0 and _controller is not None:
            _saved.append(_controller.limit(limits=1, user_api="blas"))
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _saved:
                _saved.pop().restore_original_limits()


def _shard_pool() -> tuple[int, ThreadPoolExecutor | None]:
    """The number of shards and their thread pool, made on first use: ``DINOV2_THREADS`` (else the CPU count)
    is read then, not at import, so a process (a Dask worker, a test) may set it after importing the model."""
    global _workers, _pool
    with _pool_lock:
        if _workers is None:
            _workers = max(1, min(int(os.environ.get("DINOV2_THREADS") or os.cpu_count() or 1), MAX_WORKERS))
            if _workers > 1:
                _pool = ThreadPoolExecutor(max_workers=_workers, thread_name_prefix="dinov2")
        return _workers, _pool


def can_shard(batch: int) -> bool:
    """Whether a batch this size is worth splitting across threads."""
    return batch > 1 and _controller is not None and _shard_pool()[1] is not None


def map_shards(fn: Callable[[slice], T], batch: int) -> list[T]:
    """Call ``fn`` on contiguous slices of ``range(batch)``, one per worker, in parallel."""
    workers, pool = _shard_pool()
    shards = min(workers, batch)
    bounds = [batch * i // shards for i in range(shards + 1)]
    slices: Sequence[slice] = [slice(bounds[i], bounds[i + 1]) for i in range(shards)]
    with single_threaded_blas():
        futures = [pool.submit(fn, s) for s in slices[1:]]
        first = fn(slices[0])
        return [first] + [f.result() for f in futures]
