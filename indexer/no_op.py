"""Whether a build would publish exactly the generation it replaces: then it publishes nothing. A library of a
million pictures costs a 377 MB manifest and every row re-stacked to rewrite, and ``make run`` builds before
every start.

Two ways to know. The fast one: a build that published a generation leaves a stamp in it
(``build-stamp.json``): a digest of what its scan found (every path with its size and time, and the files
left out) and of the settings the result depends on. A later build whose scan gives the same digest, on a
generation no change has extended since (no ``segments.json``), has nothing to do, and does not even read the
manifest. The slow one, for a generation without a stamp: plan as usual and compare the would-be manifest
with the one held (``is_no_op``). Only the NumPy backend: FAISS and Milvus builds refresh their graph and
collection, whose parameters the manifest does not record."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

from .atomic import write_json
from .file_facts import FORMAT as FACTS_FORMAT
from .file_facts import FileFacts
from .generations import SEGMENTS, GalleryIndex, current_dir
from .scan import Skipped

STAMP = "build-stamp.json"


def applies(manifest_or_settings: Mapping[str, Any]) -> bool:
    """Whether builds with this backend may skip publishing (``vector_backend`` or ``VECTOR_BACKEND``)."""
    return (manifest_or_settings.get("vector_backend") or manifest_or_settings.get("VECTOR_BACKEND")
            or "numpy") == "numpy"


def new_digest(settings: Mapping[str, Any]) -> Any:
    """The digest a scan feeds (``scan(images_dir, digest)``), begun with the ``settings`` a build's result
    depends on besides the files."""
    return hashlib.sha256(json.dumps({**settings, "facts": FACTS_FORMAT}, sort_keys=True, default=str).encode())


def scan_digest(digest: Any, skipped: list[Skipped]) -> str:
    """The digest of a scan's result: ``digest`` fed by the scan, then the files it left out."""
    digest.update(b"\n\0skipped\n")
    digest.update("\n".join(f"{s.path}\0{s.reason}" for s in skipped).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def stamped(index_dir: str, digest: str) -> dict | None:
    """The stamp of the current generation when it carries ``digest`` and no change extended it, else None;
    with its folder under ``location``."""
    folder = current_dir(index_dir)
    if folder is None or os.path.exists(os.path.join(folder, SEGMENTS)):
        return None
    try:
        with open(os.path.join(folder, STAMP)) as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return None
    return {**stamp, "location": folder} if isinstance(stamp, dict) and stamp.get("digest") == digest else None


def write_stamp(folder: str, digest: str, images: int, duplicates: list, skipped: list) -> None:
    """Record in a generation folder the scan digest it answers, and what its build's report said."""
    write_json(os.path.join(folder, STAMP), {"digest": digest, "images": images,
                                             "duplicates": [list(d) for d in duplicates],
                                             "skipped": [[s.path, s.reason] for s in skipped]})


def is_no_op(old: GalleryIndex | None, manifest: Mapping, paths: list[str]) -> bool:
    """Whether the index ``old`` already is what a build would write: one segment without dead rows, these
    ``paths`` (sorted), and ``manifest`` (its ``files``, maps of duplicates and skipped files, model, descriptor
    and backend) equal to the one it holds, but for the time it was built."""
    if old is None or len(old.segments) != 1 or len(old) != len(old.segments[0].paths) or not old.has_colours:
        return False
    if not applies(manifest):
        return False
    base, files = old.segments[0], manifest.get("files", {})
    # A generation keeps the facts of its indexed paths only (``save_index``), not of their duplicates; an
    # older index that keeps them in its JSON manifest is rewritten in columns once.
    if base.paths != paths or base.files.legacy or base.files != FileFacts.from_dicts(paths, files):
        return False
    return _comparable(base.manifest) == _comparable(manifest)


def _comparable(manifest: Mapping) -> dict:
    """The manifest without its files and build time, as JSON gives it back (lists for tuples)."""
    return json.loads(json.dumps({k: v for k, v in manifest.items() if k not in ("files", "built_at")}))
