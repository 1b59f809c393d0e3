"""The patch tokens of the pictures the model saw last, so that "Why?" after a search runs the model once.

A search describes its query in a forward pass whose patch tokens the descriptor pools away; an explanation of
one of its results needs exactly those tokens again. They are kept here, keyed by a digest of the preprocessed
pixels (the model's whole input, so a hit is the very pass an explanation would run), a few dozen at most:
an explanation follows its search within seconds or not at all. Only someone holding the same pixels can
find an entry, so a private query's tokens are no more exposed than its picture.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

RECENT_PICTURES = 32  # about 0.4 MB each at 224 px (256 tokens of 384 floats for ViT-S/14)


def pixels_key(pixels: np.ndarray) -> bytes:
    """A digest of a preprocessed image (3, H, W): its shape and its float32 bytes."""
    pixels = np.ascontiguousarray(pixels, np.float32)
    digest = hashlib.blake2b(repr(pixels.shape).encode(), digest_size=16)
    digest.update(memoryview(pixels).cast("B"))
    return digest.digest()


class RecentPatches:
    """Thread-safe least-recently-used memory of patch tokens by ``pixels_key``."""

    def __init__(self, capacity: int = RECENT_PICTURES) -> None:
        self.capacity = capacity
        self._tokens: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> np.ndarray | None:
        """The tokens remembered for ``key``, or None."""
        with self._lock:
            tokens = self._tokens.get(key)
            if tokens is not None:
                self._tokens.move_to_end(key)
            return tokens

    def put(self, key: bytes, tokens: np.ndarray) -> None:
        """Remember ``tokens`` (read-only) for ``key``, forgetting the least recently used beyond capacity."""
        tokens = np.array(tokens, np.float32)
        tokens.flags.writeable = False
        with self._lock:
            self._tokens[key] = tokens
            self._tokens.move_to_end(key)
            while len(self._tokens) > self.capacity:
                self._tokens.popitem(last=False)
