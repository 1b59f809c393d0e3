"""Whether a build would publish exactly the generation it replaces: then it publishes nothing. A library of a
million pictures costs a 377 MB manifest and every row re-stacked to rewrite, and ``make run`` builds before
every start."""
from __future__ import annotations

import json
import os
from typing import Mapping

from .generations import GalleryIndex

# Backends whose state for a generation lives in the generation folder (Milvus keeps its own: a build syncs it).
_FILES = {"numpy": None, "faiss": "faiss.index"}


def is_no_op(old: GalleryIndex | None, manifest: Mapping, paths: list[str]) -> bool:
    """Whether the index ``old`` already is what a build would write: one segment without dead rows, these
    ``paths`` (sorted), and ``manifest`` (its ``files``, maps of duplicates and skipped files, model, descriptor
    and backend) equal to the one it holds, but for the time it was built."""
    if old is None or len(old.segments) != 1 or len(old) != len(old.segments[0].paths) or not old.has_colours:
        return False
    backend = manifest.get("vector_backend")
    if backend not in _FILES or (_FILES[backend] and not os.path.exists(os.path.join(old.location or "", _FILES[backend]))):
        return False
    base = old.segments[0]
    if base.paths != paths or base.manifest.get("files") != manifest.get("files"):
        return False
    return _comparable(base.manifest) == _comparable(manifest)


def _comparable(manifest: Mapping) -> dict:
    """The manifest without its files and build time, as JSON gives it back (lists for tuples)."""
    return json.loads(json.dumps({k: v for k, v in manifest.items() if k not in ("files", "built_at")}))
