"""Why a result matched: which parts of the query and of one gallery picture correspond, for the API and the
command line alike. The patch tokens of both pictures come from the descriptor's block: the query's were kept
by the search that found the result (``recent_patches``), so one forward pass on the inference queue gives the
result's (both share one pass when neither was seen); ``indexer.correspondence`` pairs them;
every patch centre is mapped back through the preprocessing (and a region's or object's crop) into the
picture's own pixels."""
from __future__ import annotations

import contextlib
import functools
import os
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from dinov2_numpy import Dinov2
from dinov2_numpy.descriptor import prepare, prepared_box
from indexer.correspondence import Correspondences, Grid, match, position_basis, without_position
from indexer.embedding import DECODE_SHORTEST_SIDE
from indexer.generations import GalleryIndex

from .engine import Engine, QueryPicture
from .errors import NotFound
from .images import decoded
from .search import Decoded, Limits, Query, load_picture


@dataclass
class Side:
    """One picture of the pair as the model saw it: its patch grid placed in the whole picture's pixels."""

    grid: Grid
    image_size: tuple[int, int]


def run_explain(engine: Engine, query: Query, gallery_id: int, limits: Limits) -> dict:
    """The correspondences between ``query`` (any search mode; ``gallery`` with ``query.gallery_id``) and the
    gallery picture ``gallery_id``: ``{"query", "result", "pairs", "query_heat", "result_heat", "timings_ms"}``
    (docs/api.md, "Why it matched"). NotFound when either gallery id is unknown."""
    start = time.perf_counter()
    index = engine.index()
    engine.check_descriptor(index)
    result_path = gallery_path(index, gallery_id)
    with contextlib.ExitStack() as stack:
        if query.mode == "gallery":
            source = stack.enter_context(gallery_picture(engine, gallery_path(index, query.gallery_id), limits))
        else:
            source = stack.enter_context(load_picture(query, limits))
        t = time.perf_counter()
        result = stack.enter_context(gallery_picture(engine, result_path, limits))
        timings = {**source.timings_ms, "decode_result": (time.perf_counter() - t) * 1e3}
        part = engine.query_picture(source.image, query.region, query.point)
        timings.update(part.timings_ms)
        t = time.perf_counter()
        pixels = [prepare(part.image, engine.descriptor), prepare(result.image, engine.descriptor)]
        timings["preprocess"] = (time.perf_counter() - t) * 1e3
        (query_tokens, query_ran), (result_tokens, result_ran) = engine.describe_patches(pixels)
        sides = (_side(source, part, pixels[0], engine), _side(result, QueryPicture(result.image, (0, 0)),
                                                               pixels[1], engine))
    ran = [r for r in (query_ran, result_ran) if r is not None]
    passes = {r.batch_number: r for r in ran}.values()  # one pass, or two when the inputs' shapes differ
    timings["queue"] = max((r.queue_ms for r in ran), default=0.0)
    timings["inference"] = sum(r.run_ms for r in passes)
    t = time.perf_counter()
    basis = _position_basis(engine.model)
    found = match(without_position(query_tokens, basis), without_position(result_tokens, basis),
                  sides[0].grid, sides[1].grid)
    timings["match"] = (time.perf_counter() - t) * 1e3
    timings["total"] = (time.perf_counter() - start) * 1e3
    return {
        "query": {"mode": query.mode, "gallery_id": query.gallery_id, "image_size": list(sides[0].image_size),
                  "path": gallery_path(index, query.gallery_id) if query.mode == "gallery" else None,
                  "patch_size": round(sides[0].grid.patch_size, 2),
                  "segment": part.mask.json() if part.mask is not None else None},
        "result": {"id": gallery_id, "path": result_path, "image_size": list(sides[1].image_size),
                   "patch_size": round(sides[1].grid.patch_size, 2)},
        **explanation_json(found, *sides),
        "pictures_run": len(ran),
        "batch_size": max((r.batch_size for r in ran), default=0),
        "timings_ms": {k: round(v, 2) for k, v in timings.items()},
    }


def explanation_json(found: Correspondences, query: Side, result: Side) -> dict:
    """Pairs (strongest first) with both centres in their pictures' pixels, and the two heat maps."""
    q, r = query.grid.centres(found.query), result.grid.centres(found.result)
    pairs = [{"query": {"x": round(float(a[0]), 1), "y": round(float(a[1]), 1)},
              "result": {"x": round(float(b[0]), 1), "y": round(float(b[1]), 1)},
              "score": round(float(s), 4), "similarity": round(float(c), 4)}
             for a, b, s, c in zip(q, r, found.scores, found.similarities)]
    return {"pairs": pairs, "query_heat": heat_json(found.query_heat, query.grid),
            "result_heat": heat_json(found.result_heat, result.grid)}


def heat_json(heat: np.ndarray, grid: Grid) -> dict:
    """A heat map as a small grid of floats (rows of ``cols`` values) and the box it covers in the picture."""
    x, y, w, h = grid.box
    return {"rows": grid.rows, "cols": grid.cols,
            "box": {"x": round(x, 1), "y": round(y, 1), "w": round(w, 1), "h": round(h, 1)},
            "values": np.round(heat.astype(np.float64), 3).tolist()}


def gallery_path(index: GalleryIndex, image_id: int | None) -> str:
    """The gallery path of a public id in ``index``; NotFound if it holds none."""
    row = index.row_of_id(image_id) if image_id is not None else None
    if row is None:
        raise NotFound(f"No gallery image with id {image_id}.")
    return index.path(row)


@contextlib.contextmanager
def gallery_picture(engine: Engine, path: str, limits: Limits) -> Iterator[Decoded]:
    """A gallery file decoded as the builder decodes it (so that it is the picture the index describes), its
    pixels held in the pixel budget for the body of the ``with``."""
    t = time.perf_counter()
    full = os.path.join(engine.settings["GALLERY_DIR"], path)
    with decoded(full, limits.max_pixels, limits.budget, DECODE_SHORTEST_SIDE) as (picture, ext):
        yield Decoded(picture.image, ext, {"decode": (time.perf_counter() - t) * 1e3}, picture.full_size)


def _side(source: Decoded, part: QueryPicture, pixels: np.ndarray, engine: Engine) -> Side:
    """Where the model input's patches lie in the whole picture: the preprocessing's box in the described part,
    moved by the part's offset and scaled from the decoded to the full size (a JPEG decoded reduced)."""
    full = source.full_size or source.image.size
    scale_x, scale_y = full[0] / source.image.width, full[1] / source.image.height
    x, y, w, h = prepared_box(part.image.width, part.image.height, engine.descriptor)
    box = ((part.offset[0] + x) * scale_x, (part.offset[1] + y) * scale_y, w * scale_x, h * scale_y)
    patch = engine.model.config.patch_size
    return Side(Grid(pixels.shape[1] // patch, pixels.shape[2] // patch, box), tuple(full))


@functools.lru_cache(maxsize=4)
def _position_basis(model: Dinov2) -> np.ndarray:
    """The position directions taken out of the tokens, from the weights' own grid of position embeddings."""
    side = model.config.grid_size
    return position_basis(model.embeddings.position_embeddings(side, side))
