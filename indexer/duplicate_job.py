"""The duplicates' neighbour search (``indexer.explore.similar_pairs``) in a process of its own, so that a
web worker keeps its cores for searches: the process runs at the lowest CPU priority (SCHED_IDLE where the
kernel allows it, nice 19 anyway) with one BLAS thread, reads the generation's memory-mapped embeddings and
writes the pairs to a file. It reports its progress on stdout, one line at a time.

    python -m indexer.duplicate_job FEATURES.npy OUT.npz K FLOOR

``find_pairs`` starts it and waits: a process that dies, is killed or outlives ``TIME_LIMIT`` is a
``JobFailed`` with the reason, never a wait without end.
"""
from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable

import numpy as np

from .explore import Progress, similar_pairs

TIME_LIMIT = 6 * 3600  # seconds: 20 times what a million pictures take on two cores (docs/benchmarks.md)
REPORT_EVERY = 0.5  # seconds between two progress lines
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class JobFailed(RuntimeError):
    """The process did not deliver its pairs; the message says why."""


def _source(features: np.ndarray, work: str) -> str:
    """A file holding exactly ``features``: the generation's own memory map when it is one, else a copy."""
    path = getattr(features, "filename", None)
    if isinstance(features, np.memmap) and path and os.path.exists(path):
        whole = np.load(path, mmap_mode="r")
        if whole.shape == features.shape and whole.dtype == np.float32:
            return str(path)
    path = os.path.join(work, "features.npy")
    np.save(path, np.ascontiguousarray(features, np.float32))
    return path


def _why(process: subprocess.Popen, errors: str) -> str:
    """What a process that stopped without its answer said last, or how it ended."""
    with open(errors, errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    if lines:
        return f"the duplicate search failed: {lines[-1]}"
    code = process.returncode
    how = f"was killed (signal {-code})" if code is not None and code < 0 else f"ended with exit code {code}"
    return f"the duplicate search process {how} before it finished"


def find_pairs(features: np.ndarray, k: int, floor: float, progress: Progress | None = None,
               cancelled: Callable[[], bool] | None = None,
               started: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``similar_pairs(features, k, floor)`` computed in a low-priority process. ``progress`` hears its
    reports, ``started`` its pid; ``cancelled`` is asked every second and stops the process when true."""
    work = tempfile.mkdtemp(prefix="duplicates-")
    errors = os.path.join(work, "stderr.txt")
    out = os.path.join(work, "pairs.npz")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    try:
        argv = [sys.executable, "-m", "indexer.duplicate_job", _source(features, work), out, str(k), str(floor)]
        with open(errors, "w") as err:
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env, text=True, cwd=work)
        try:
            if started is not None:
                started(process.pid)
            _follow(process, progress, cancelled, errors)
            with np.load(out) as pairs:
                return pairs["a"], pairs["b"], pairs["s"]
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            process.stdout.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _follow(process: subprocess.Popen, progress: Progress | None, cancelled: Callable[[], bool] | None,
            errors: str) -> None:
    """Relay the process's progress lines until it says ``done``; JobFailed when it cannot."""
    deadline = time.monotonic() + TIME_LIMIT
    while True:
        if cancelled is not None and cancelled():
            raise JobFailed("the index changed before this was computed")
        if time.monotonic() > deadline:
            raise JobFailed(f"the duplicate search took longer than {TIME_LIMIT // 3600} hours and was stopped")
        ready, _, _ = select.select([process.stdout], [], [], 1.0)
        if not ready:
            continue
        line = process.stdout.readline()
        if not line:  # the process closed its end: it has ended
            process.wait()
            raise JobFailed(_why(process, errors))
        words = line.split()
        if words[:1] == ["done"]:
            return
        if words[:1] == ["progress"] and progress is not None:
            progress(int(words[1]), int(words[2]))


def _lower_priority() -> None:
    """The idle scheduling class (runs only when nothing else wants the CPU), else the highest niceness."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        pass
    try:
        os.nice(19)
    except OSError:
        pass


def main(argv: list[str]) -> None:
    """The process itself: ``FEATURES OUT K FLOOR``."""
    source, out, k, floor = argv[0], argv[1], int(argv[2]), float(argv[3])
    _lower_priority()
    last = 0.0

    def report(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= REPORT_EVERY:
            last = now
            print(f"progress {done} {total}", flush=True)

    a, b, s = similar_pairs(np.load(source, mmap_mode="r"), k, floor, progress=report)
    partial = out + ".part.npz"
    np.savez(partial, a=a, b=b, s=s)
    os.replace(partial, out)
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
