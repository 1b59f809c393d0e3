"""Signed-in users' searches: the query picture under a generated name, and the row that lists the results."""
from __future__ import annotations

import os
import uuid

from indexer.atomic import atomic_write

from ..extensions import db
from .models import Search


def record_search(user_id: int, upload_dir: str, data: bytes | None, result: dict, top_k: int,
                  original: str | None) -> int:
    """Store one search (``result`` as ``services.search.run_search`` returns it); returns the search id."""
    query = result["query"]
    name = None
    if data is not None and query.get("format"):
        name = f"{uuid.uuid4().hex}.{query['format']}"
        atomic_write(os.path.join(upload_dir, name), data, durable=False)
    timings = result["analysis"]["timings_ms"]
    search = Search(user_id=user_id, mode=query["mode"], query_file=name, original_name=(original or "")[:255] or None,
                    gallery_image_id=query["gallery_id"], top_k=top_k, total_ms=timings["total"], timings=timings,
                    results=[{"id": r["id"], "path": r["path"], "score": r["score"]} for r in result["results"]])
    db.session.add(search)
    db.session.commit()
    return search.id
