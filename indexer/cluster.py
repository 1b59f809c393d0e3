"""Embedding on a Dask distributed cluster, for galleries larger than one machine embeds in good time.

The driver (``build_gallery``) scans, hashes and plans as for a local build, and writes the generation
itself; only the embedding is spread. Each task embeds one shard (a list of paths on storage every worker
sees, or the files' bytes with ``ship_bytes``) with the same weights, loaded once per worker process
(memory-mapped, cached by ``dinov2_numpy.load_model``), and returns the features. Dask re-runs the shard of a
worker that dies elsewhere; the driver keeps every finished shard as a resumable chunk, so no picture is
embedded into the index twice or left out. Imported only when a build is given ``cluster``.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from typing import Iterator

import numpy as np

CONNECT_SECONDS = 5


class ClusterError(RuntimeError):
    """The cluster cannot be reached or cannot do the work."""


@contextlib.contextmanager
def environment_kept() -> Iterator[None]:
    """This process's environment as it was before the ``with``: Dask's nanny writes its workers' settings
    (one BLAS thread, glibc's trim threshold) into the environment of the process that starts them, where
    every subprocess started later would inherit them."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def connect(address: str):
    """(client, local cluster or None) for ``tcp://host:8786`` or ``local:N`` (N worker processes here)."""
    from dask.distributed import Client, LocalCluster
    if address.startswith("local:"):
        try:
            workers = int(address.split(":", 1)[1])
        except ValueError:
            raise ClusterError(f"'{address}': use local:N with N worker processes") from None
        if workers < 1:
            raise ClusterError("local:N needs at least one worker process")
        threads = max(1, (os.cpu_count() or 1) // workers)  # the cores, shared among the worker processes
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               env={"DINOV2_THREADS": str(threads)}, silence_logs=40)
        return Client(cluster), cluster
    try:
        return Client(address, timeout=CONNECT_SECONDS), None
    except (OSError, TimeoutError, ValueError) as e:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} within {CONNECT_SECONDS} s ({e})") from None


def embed_shard(weights: str, items: list[tuple[str, str | bytes]], max_pixels: int | None,
                batch_size: int) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    """On a worker: ``(keys, unit features with their colour histograms, [(key, reason)])`` for
    ``(key, path or bytes)`` items, as the builder's own ``embed_stream`` gives them."""
    from dinov2_numpy import load_model
    from dinov2_numpy.descriptor import descriptor_of

    from .colour import DIM, with_colour
    from .embedding import embed_pixels, embed_stream
    undo_dask_malloc_settings()
    model = load_model(weights)
    descriptor = descriptor_of(model)
    width = descriptor.width(model) + DIM
    keys, parts, failures = [], [], []
    stream = embed_stream(with_colour(lambda pixels: embed_pixels(model, pixels)), width, items, batch_size,
                          1, max_pixels, descriptor)
    for batch_keys, features, batch_failures in stream:
        keys += batch_keys
        parts.append(features)
        failures += batch_failures
    features = np.concatenate(parts) if parts else np.empty((0, width), np.float32)
    return keys, features, failures


def embed_on_cluster(client, weights: str, todo: list[tuple[str, str]], *, shard_size: int, batch_size: int,
                     max_pixels: int | None, ship_bytes: bool = False, task=None
                     ) -> Iterator[tuple[list[str], np.ndarray, list[tuple[str, str]]]]:
    """Embed ``(sha, path)`` items on the cluster in shards; yields ``(keys, features, [(key, reason)])`` per
    finished shard, in the order they finish, as ``embed_stream`` does for a local build. ``task`` embeds a
    shard on a worker with ``weights`` (default ``embed_shard``; ``indexer.clip_set.embed_shard`` for CLIP)."""
    from dask.distributed import as_completed
    futures = []
    unreadable: list[tuple[str, str]] = []
    for start in range(0, len(todo), shard_size):
        shard = todo[start:start + shard_size]
        if ship_bytes:
            shard, missing = _with_bytes(shard)
            unreadable += missing
        futures.append(client.submit(task or embed_shard, os.path.abspath(weights), shard, max_pixels, batch_size,
                                     pure=False, retries=2))
    if unreadable:
        yield [], np.empty((0, 0), np.float32), unreadable
    for future in as_completed(futures):
        try:
            keys, features, failures = future.result()
        except Exception as e:  # a shard that failed on every retry: the build stops, finished shards are kept
            raise ClusterError(f"a shard failed on the cluster: {e}") from None
        yield keys, features, failures


@functools.cache
def undo_dask_malloc_settings() -> None:
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_ set, which makes glibc give every large array
    back to the system at once and map it again for the next one: the forward pass, which allocates large
    intermediate arrays in every block, ran 25% slower. Raise both thresholds again in this worker process."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing was set
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 64 * 1024 * 1024)
    libc.mallopt(m_trim_threshold, 256 * 1024 * 1024)


def live_workers(client) -> int:
    return len(client.scheduler_info(n_workers=-1).get("workers", {}))


def _with_bytes(shard: list[tuple[str, str]]) -> tuple[list[tuple[str, bytes]], list[tuple[str, str]]]:
    """The shard with each file's bytes instead of its path, and the files that could not be read."""
    items, missing = [], []
    for key, path in shard:
        try:
            with open(path, "rb") as f:
                items.append((key, f.read()))
        except OSError as e:
            missing.append((key, f"cannot read: {e.strerror}"))
    return items, missing
