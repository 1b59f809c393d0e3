"""One search, from the raw query to the result the API and the command line both return, with per-stage
timings. Plain Python: the caller supplies the engine and the limits, and shows or stores the result."""
from __future__ import annotations

import base64
import contextlib
import io
import time
from dataclasses import dataclass, field
from typing import Iterator

from PIL import Image

from dinov2_numpy.weights.hub import weights_title
from indexer.embedding import DECODE_SHORTEST_SIDE
from indexer.fetch import fetch_image
from indexer.formats import RAW_EXTENSIONS
from indexer.vector_index import CLIP_SET, DINOV2_SET

from .engine import Embedding, Engine, RowFilter, unit
from .errors import InvalidInput
from .images import decoded, is_blank
from .pixel_budget import PixelBudget

DEFAULT_THRESHOLD = 0.5  # relative to the best score, as the page's slider starts
SKETCH_MAX_PIXELS = 4_000_000  # the page's canvas is 560 x 420; no drawing needs the photo limit
SPACES = (DINOV2_SET, CLIP_SET)  # a picture searched by look (DINOv2) or by meaning (CLIP)


@dataclass(frozen=True)
class Limits:
    """What one query may cost."""

    max_pixels: int
    max_bytes: int
    fetch_seconds: float = 10.0
    fetch_allow: tuple[str, ...] = ()
    budget: PixelBudget | None = None  # decoded pixels in flight across the process


@dataclass
class Query:
    mode: str  # upload, base64, sketch, url, file (command line), gallery or text (words alone)
    data: bytes | None = None
    original_name: str | None = None
    gallery_id: int | None = None
    url: str | None = None
    region: tuple[int, int, int, int] | None = None  # x, y, w, h in the original image's pixels
    point: tuple[float, float] | None = None  # click-an-object: search with the object under this pixel
    text: str | None = None  # words: alone, or added to the picture ("this, but in winter"); CLIP's space
    space: str = DINOV2_SET  # where a picture is searched: by look (DINOv2) or by meaning (CLIP)

    @property
    def searched_in(self) -> str:
        """The vector set searched: CLIP's for words, else the one asked for."""
        return CLIP_SET if self.text is not None else self.space


@dataclass
class Decoded:
    """The query's picture, ready for the engine, and what loading it cost."""

    image: Image.Image
    extension: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    full_size: tuple[int, int] | None = None  # of the whole picture, when ``image`` was decoded reduced


@contextlib.contextmanager
def load_picture(query: Query, limits: Limits) -> Iterator[Decoded]:
    """Fetch (for a URL) and decode the query's picture into ``query.data``'s validated RGB image, its pixels
    held in the process's pixel budget for the body of the ``with``."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    if query.mode == "url":
        query.data = fetch_image(query.url, max_bytes=limits.max_bytes, total_seconds=limits.fetch_seconds,
                                 guard=True, allow_networks=limits.fetch_allow).data
        timings["fetch"] = (time.perf_counter() - start) * 1e3
    t = time.perf_counter()
    max_pixels = min(limits.max_pixels, SKETCH_MAX_PIXELS) if query.mode == "sketch" else limits.max_pixels
    # Decoded as the builder decodes gallery files (no larger than the model needs), so that a gallery photo
    # sent as a query is the same picture; a region or a point is in the original's pixels: decoded in full.
    whole = query.region is None and query.point is None
    with decoded(query.data, max_pixels, limits.budget, DECODE_SHORTEST_SIDE if whole else None) as (picture, ext):
        if query.mode == "sketch" and is_blank(picture.image):
            raise InvalidInput("The drawing is empty: draw something, then search.", "empty_drawing")
        timings["decode"] = (time.perf_counter() - t) * 1e3
        yield Decoded(picture.image, ext, timings, picture.full_size)


def run_search(engine: Engine, query: Query, limits: Limits, top_k: int,
               threshold: float = DEFAULT_THRESHOLD, allowed: RowFilter | None = None,
               colour_weight: float = 0.0) -> dict:
    """Search the gallery; returns ``{"query", "results", "analysis"}``, the shape both the JSON API and
    ``python -m app.cli search --json`` return. ``results`` hold rank, public id, path, score and the photo's
    metadata. ``allowed``: only the rows it lets through (a metadata filter, applied before the top-K).
    ``colour_weight`` (0 to 1) blends colour similarity into the score (``Engine.search``). Words
    (``query.text``) and ``query.space`` CLIP_SET search the CLIP embeddings instead of the descriptors."""
    start = time.perf_counter()
    image_size = segment_json = extension = preview = None
    batch_size = 0
    current = engine.current()  # one generation for the query, the hits and the analysis
    index = current[0]
    space = query.searched_in
    if space == CLIP_SET:
        engine.check_clip(index)  # before any picture is read: 409 without CLIP, 503 before its build
    if query.mode in ("gallery", "text"):
        embedded = _stored_or_words(engine, query, index, space)
        vector, colour = embedded.vector, embedded.colour
        batch_size = 1 if query.text is not None else 0  # the words ran through the model, alone
        timings = {"lookup": (time.perf_counter() - start) * 1e3, **embedded.timings_ms}
    else:
        with load_picture(query, limits) as picture:
            if space == CLIP_SET:
                embedded = engine.embed_clip_query(picture.image, query.region, query.point, query.text)
            else:
                embedded = engine.embed_query(picture.image, region=query.region, point=query.point, index=index)
            image_size, extension = list(picture.full_size or picture.image.size), picture.extension
            # The page shows this instead of loading the address itself, or of a RAW file no browser can show.
            if query.mode == "url" or picture.extension in RAW_EXTENSIONS:
                preview = preview_data_url(picture.image)
        vector, colour, batch_size = embedded.vector, embedded.colour, embedded.batch_size
        timings = {**picture.timings_ms, **embedded.timings_ms}
        if embedded.mask is not None:
            segment_json = embedded.mask.json()
    t = time.perf_counter()
    hits = engine.search(vector, top_k, allowed, colour, colour_weight, current, space)
    timings["search"] = (time.perf_counter() - t) * 1e3
    timings["total"] = (time.perf_counter() - start) * 1e3
    results = [h.json() for h in hits]
    best = results[0]["score"] if results else 0.0
    model = index.manifest.get("model", {})
    return {
        "query": {"mode": query.mode, "filename": query.original_name, "gallery_id": query.gallery_id,
                  "format": extension, "image_size": image_size, "preview": preview,
                  "region": _region_json(query.region), "segment": segment_json, "text": query.text,
                  "space": space},
        "results": results,
        "analysis": {
            # From the index's record of its model: a search by a gallery picture needs no weights loaded.
            "model": model.get("name"), "weights": weights_title(model.get("name", ""), model.get("dim", index.dim)),
            "dim": index.dim, "image_size": image_size,
            "timings_ms": {k: round(v, 2) for k, v in timings.items()},
            "batch_size": batch_size, "gallery_size": len(index), "threshold": threshold,
            "color_weight": colour_weight,
            "match_count": sum(1 for r in results if r["score"] >= relative_cut(threshold, best)),
            "text_model": engine.clip.name if space == CLIP_SET else None,
        },
    }


def relative_cut(threshold: float, best: float) -> float:
    """The score a result needs: ``threshold`` x ``best``, and as far below the best as that when every score
    is negative (CLIP's words against pictures can be)."""
    return best - (1 - threshold) * abs(best)


def _stored_or_words(engine: Engine, query: Query, index, space: str) -> Embedding:
    """The vector of a query without a picture to read: a gallery picture's stored one (plus the words, in
    CLIP's space: their normalised sum), or the words' alone."""
    if query.mode == "text":
        return engine.embed_text(query.text)
    vector, colour = engine.vector_of(query.gallery_id, index, space)
    if query.text is None:
        return Embedding(vector, colour)
    words = engine.embed_text(query.text)
    return Embedding(unit(vector + words.vector), None, words.timings_ms)


def run_segment(engine: Engine, query: Query, limits: Limits) -> dict:
    """The object under ``query.point`` (mask and box), without searching."""
    start = time.perf_counter()
    with load_picture(query, limits) as picture:
        found = engine.segment(picture.image, query.point)
    return dict(found.json(), image_size=list(picture.image.size),
                elapsed_ms=round((time.perf_counter() - start) * 1e3, 1))


def preview_data_url(image: Image.Image, side: int = 640) -> str:
    """A JPEG data URL of ``image`` at most ``side`` pixels wide or high."""
    small = image.copy()
    small.thumbnail((side, side))
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _region_json(region: tuple[int, int, int, int] | None) -> dict | None:
    return None if region is None else dict(zip(("x", "y", "w", "h"), region))
