"""One search, from the raw query to the JSON the API returns, with per-stage timings."""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass

import numpy as np
from flask import current_app, url_for
from flask_login import current_user
from PIL import Image

from dinov2_numpy import ImageError, ImageTooLarge, NotAnImage, normalize_rows, preprocess
from dinov2_numpy.preprocess import open_image, to_rgb

from .errors import ApiError
from .extensions import db
from .gallery_db import current_index, engine, ids_for
from .models import GalleryImage, Search
from .segment import segment
from .url_fetch import fetch_image_url

ALLOWED_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif", "MPO": "jpg"}
DEFAULT_THRESHOLD = 0.5  # relative to the best score, as the page's slider starts


@dataclass
class Query:
    mode: str  # upload, base64, sketch, url or gallery
    data: bytes | None = None
    original_name: str | None = None
    gallery_id: int | None = None
    url: str | None = None
    region: tuple[int, int, int, int] | None = None  # x, y, w, h in the original image's pixels
    point: tuple[float, float] | None = None  # click-an-object: search with the object under this pixel


def fetch(query: Query) -> None:
    """Download a URL query's image into ``query.data`` (SSRF-safe, size-capped)."""
    cfg = current_app.config
    query.data = fetch_image_url(query.url, timeout=cfg["URL_FETCH_TIMEOUT"], max_bytes=cfg["MAX_CONTENT_LENGTH"],
                                 allow_networks=cfg["URL_FETCH_ALLOW"])


def crop_region(image: Image.Image, region: tuple[int, int, int, int]) -> Image.Image:
    """The full-quality crop; a box reaching at most 2 px past an edge (rounding in the browser) is clamped."""
    x, y, w, h = region
    width, height = image.size
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > width + 2 or y + h > height + 2 or x >= width or y >= height:
        raise ApiError(400, "invalid_region", f"The region {x},{y} {w}x{h} does not lie inside the "
                                              f"{width}x{height} image.")
    return image.crop((x, y, min(x + w, width), min(y + h, height)))


def check_point(image: Image.Image, point: tuple[float, float]) -> None:
    x, y = point
    if not (0 <= x < image.width and 0 <= y < image.height):
        raise ApiError(400, "invalid_point", f"The point ({x}, {y}) is outside the {image.width}x{image.height} image.")


def is_blank(image: Image.Image) -> bool:
    """A drawing with no stroke: every pixel (nearly) the same colour."""
    return all(hi - lo < 8 for lo, hi in image.convert("RGB").getextrema())


def decode(data: bytes) -> tuple[Image.Image, str]:
    """Validated RGB image and its file extension; ApiError 415/422 for what cannot be used."""
    max_pixels = current_app.config["MAX_IMAGE_PIXELS"]
    try:
        image = open_image(data, max_pixels=max_pixels)
    except NotAnImage:
        raise ApiError(415, "unsupported_media_type", "The file is not an image (JPEG, PNG, WebP, GIF, BMP or TIFF).")
    except ImageTooLarge:
        raise ApiError(422, "image_too_large", f"The image has more than {max_pixels:,} pixels.")
    except ImageError as e:
        raise ApiError(422, "undecodable_image", f"The image could not be decoded: {e}")
    if image.format not in ALLOWED_FORMATS:
        raise ApiError(415, "unsupported_media_type", f"{image.format} images are not accepted; use JPEG, PNG, WebP, "
                                                      "GIF, BMP or TIFF.")
    return to_rgb(image), ALLOWED_FORMATS[image.format]


def hit_json(rank: int, gallery_id: int | None, path: str, score: float) -> dict:
    return {"rank": rank, "id": gallery_id, "path": path, "score": round(score, 6),
            "url": url_for("main.gallery_file", path=path), "thumbnail_url": url_for("main.thumbnail", path=path)}


def run_search(query: Query, top_k: int, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Run ``query`` against the gallery; signed-in users' searches are saved to their history."""
    eng = engine()
    index = current_index()
    model = eng.model
    timings: dict[str, float] = {}
    start = time.perf_counter()
    image_size = None
    segment_json = None
    if query.mode == "gallery":
        row = db.session.get(GalleryImage, query.gallery_id) if query.gallery_id is not None else None
        if row is None or row.path not in index.row_of:
            raise ApiError(404, "not_found", f"No gallery image with id {query.gallery_id}.")
        vector = np.asarray(index.features[index.row_of[row.path]], np.float32)
        timings["lookup"] = (time.perf_counter() - start) * 1e3
        ext = None
    else:
        if query.mode == "url":
            fetch(query)
            timings["fetch"] = (time.perf_counter() - start) * 1e3
        t0 = time.perf_counter()
        image, ext = decode(query.data)
        image_size = list(image.size)
        if query.mode == "sketch" and is_blank(image):
            raise ApiError(400, "empty_drawing", "The drawing is empty: draw something, then search.")
        t = time.perf_counter()
        timings["decode"] = (t - t0) * 1e3
        if query.region is not None:
            image = crop_region(image, query.region)
        elif query.point is not None:
            check_point(image, query.point)
            found = segment(model, image, *query.point)
            segment_json = found.json()
            image = image.crop(_box(found.bbox))
            timings["segment"] = (time.perf_counter() - t) * 1e3
            t = time.perf_counter()
        pixels = preprocess(image)
        t2 = time.perf_counter()
        timings["preprocess"] = (t2 - t) * 1e3
        vector = normalize_rows(model(pixels[None]).cls_token)[0]
        t3 = time.perf_counter()
        timings["inference"] = (t3 - t2) * 1e3
    t = time.perf_counter()
    hits = eng.search_vector(vector, top_k)
    timings["search"] = (time.perf_counter() - t) * 1e3
    timings["total"] = (time.perf_counter() - start) * 1e3
    ids = ids_for([h.path for h in hits])
    results = [hit_json(h.rank, ids.get(h.path), h.path, h.score) for h in hits]
    best = results[0]["score"] if results else 0.0
    payload = {
        "query": {"mode": query.mode, "filename": query.original_name, "gallery_id": query.gallery_id,
                  "image_size": image_size, "region": _region_json(query.region), "segment": segment_json},
        "results": results,
        "analysis": {
            "model": model.name, "dim": model.dim, "image_size": image_size,
            "timings_ms": {k: round(v, 2) for k, v in timings.items()},
            "gallery_size": len(index), "threshold": threshold,
            "match_count": sum(1 for r in results if r["score"] >= threshold * best) if results else 0,
        },
    }
    if current_user.is_authenticated:
        payload["query"]["search_id"] = save_history(query, ext, top_k, timings, results)
    return payload


def run_segment(query: Query) -> dict:
    """Segment the object under ``query.point`` without searching."""
    start = time.perf_counter()
    if query.mode == "url":
        fetch(query)
    image, _ = decode(query.data)
    check_point(image, query.point)
    found = segment(engine().model, image, *query.point)
    return dict(found.json(), image_size=list(image.size), elapsed_ms=round((time.perf_counter() - start) * 1e3, 1))


def _box(bbox: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    x, y, w, h = bbox
    return x, y, x + w, y + h


def _region_json(region: tuple[int, int, int, int] | None) -> dict | None:
    return None if region is None else dict(zip(("x", "y", "w", "h"), region))


def save_history(query: Query, ext: str | None, top_k: int, timings: dict, results: list[dict]) -> int:
    """Store the query image under a generated name and the search row; returns the search id."""
    name = None
    if query.data is not None and ext:
        name = f"{uuid.uuid4().hex}.{ext}"
        path = os.path.join(current_app.config["UPLOAD_DIR"], name)
        with open(path + ".part", "wb") as f:
            f.write(query.data)
        os.replace(path + ".part", path)
    search = Search(user_id=current_user.id, mode=query.mode, query_file=name,
                    original_name=(query.original_name or query.url or "")[:255] or None, gallery_image_id=query.gallery_id,
                    top_k=top_k, total_ms=timings["total"], timings=timings,
                    results=[{"id": r["id"], "path": r["path"], "score": r["score"]} for r in results])
    db.session.add(search)
    db.session.commit()
    return search.id
