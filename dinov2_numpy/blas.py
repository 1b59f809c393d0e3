"""The BLAS a timing runs on: without the environment's reproducibility pin, and named in its output.

One way for every benchmark that times the model (``python -m dinov2_numpy bench``, ``make bench``, and the
scripts in ``benchmarks/``): call ``without_blas_pin()`` first, print ``blas_kernels()``.
"""
from __future__ import annotations

import os
import sys

# Set by the environment for reproducible tests (one kernel on every machine); a benchmark of the model wants
# the kernel OpenBLAS picks for this CPU, as a user's machine, which has no such pin, runs it.
BLAS_PIN = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def without_blas_pin() -> None:
    """Run this command again, in place of this process, without the OpenBLAS pin when the environment sets
    one (OpenBLAS reads it once, when it loads). ``sys.orig_argv`` keeps ``-m module`` as it was given."""
    if any(name in os.environ for name in BLAS_PIN):
        env = {k: v for k, v in os.environ.items() if k not in BLAS_PIN}
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def blas_kernels() -> str:
    """The BLAS libraries threadpoolctl finds loaded: library, version, kernel, threads and file."""
    from threadpoolctl import threadpool_info
    return "; ".join(f"{i['internal_api']} {i.get('version')} kernel {i.get('architecture')}, "
                     f"{i['num_threads']} threads ({os.path.basename(i['filepath'])})"
                     for i in threadpool_info() if i["user_api"] == "blas") or "none loaded"
