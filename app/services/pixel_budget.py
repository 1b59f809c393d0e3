"""A process-wide budget on decoded pixels in flight, so that memory stays bounded across requests.

One request may decode a picture of up to ``MAX_IMAGE_PIXELS``, but a few dozen such requests at once would
hold tens of gigabytes: the queue's admission bounds searches, not their size. Each request therefore
reserves its picture's pixel count (read from the header, before decoding) and gives it back when it is done;
beyond the budget a request waits briefly, then gets ``Overloaded`` (503 with Retry-After).

glibc keeps freed memory in the heap arena of the thread that freed it, so each request thread that decoded a
large picture would keep its share and the worker's RSS would grow with the number of threads, not with the
budget; whenever a large reservation ends, ``malloc_trim`` hands the free memory back to the system.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import threading
import time
from typing import Iterator

from indexer.decode import UNTRUSTED_HEADERS

from .errors import Overloaded

TRIM_AFTER_PIXELS = 4_000_000  # a reservation this large trims the heap when it ends


class PixelBudget:
    """Thread-safe; ``limit`` pixels may be decoded at once, a request waits at most ``wait_s`` for room.
    The same budget in another ``unit`` bounds uploaded bytes held in memory (``app.web.uploads``)."""

    def __init__(self, limit: int, wait_s: float = 5.0, unit: str = "pixels of other pictures") -> None:
        self.limit, self.wait_s, self.unit = limit, wait_s, unit
        self.in_flight = 0
        self.peak = 0
        self.refused = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Reserve ``pixels`` for the body of the ``with``; Overloaded if there is no room within ``wait_s``."""
        pixels = max(0, min(int(pixels), self.limit))  # one picture never needs more than the whole budget
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            while self.in_flight + pixels > self.limit:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.refused += 1
                    raise Overloaded(f"The server is holding {self.in_flight:,} {self.unit}; try again shortly.",
                                     retry_after=2)
                self._cond.wait(left)
            self.in_flight += pixels
            self.peak = max(self.peak, self.in_flight)
        try:
            yield
        finally:
            with self._cond:
                self.in_flight -= pixels
                self._cond.notify_all()
            if pixels >= TRIM_AFTER_PIXELS:
                release_free_memory()

    def hold_picture(self, width: int, height: int, pil_format: str | None):
        """``hold`` for a picture whose header says ``width`` x ``height``; one of a format whose header cannot
        be trusted (``indexer.decode.UNTRUSTED_HEADERS``) takes the whole budget: one at a time."""
        return self.hold(self.limit if pil_format in UNTRUSTED_HEADERS else width * height)

    def stats(self) -> dict:
        """Counters for the health check."""
        with self._cond:
            return {"limit": self.limit, "in_flight": self.in_flight, "peak": self.peak, "refused": self.refused}


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def release_free_memory() -> None:
    """Give freed heap memory back to the system (glibc's ``malloc_trim``; nothing elsewhere)."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)
