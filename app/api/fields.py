"""Reading request fields into checked Python values; InvalidInput with the field's name otherwise."""
from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
from datetime import date

from flask import request

from indexer.exif import ORIENTATIONS

from ..services.errors import InvalidInput
from ..services.search import DEFAULT_THRESHOLD, SPACES, Query
from ..storage.photo_filters import PhotoFilter
from ..web.uploads import read_upload

_DATA_URL = re.compile(r"^data:image/[\w.+-]+;base64,(.*)$", re.S)


def printable_text(value: str) -> bool:
    """Whether ``value`` can be stored and searched as text: no control characters (NUL included) and no
    lone surrogates (which JSON allows and no database encoding does)."""
    return not any(ord(c) < 0x20 or 0xD800 <= ord(c) <= 0xDFFF or ord(c) == 0x7F for c in value)


def int_arg(value, name: str, default: int, low: int, high: int) -> int:
    """A whole number in [low, high], or ``default`` when absent."""
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: Infinity and 1e999 from JSON
        raise InvalidInput(f"'{name}' must be a whole number between {low} and {high}.") from None
    if isinstance(value, bool) or not low <= number <= high:
        raise InvalidInput(f"'{name}' must be a whole number between {low} and {high}.")
    return number


def flag(value, name: str) -> bool:
    """A yes/no field: JSON true/false, or "true"/"false"/"1"/"0" from a form; absent is false."""
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0"):
        return value.lower() in ("true", "1")
    raise InvalidInput(f"'{name}' must be true or false.")


def fraction(value, name: str, default: float) -> float:
    """A number from 0 to 1 (``default`` when absent)."""
    if value is None or value == "":
        return default
    try:
        t = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: integers of hundreds of digits
        t = math.nan
    if not 0.0 <= t <= 1.0:
        raise InvalidInput(f"'{name}' must be a number between 0 and 1.")
    return t


def threshold(value) -> float:
    """The relative score threshold, 0 to 1."""
    return fraction(value, "threshold", DEFAULT_THRESHOLD)


def colour_weight(value) -> float:
    """How much colour similarity counts in the score, 0 (none, the default) to 1."""
    return fraction(value, "color_weight", 0.0)


def _object(value, name: str, keys: tuple[str, ...]) -> dict | None:
    """A JSON object field (or its JSON text, from a multipart form) with numeric ``keys``."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, dict) or not all(_finite(value.get(k)) for k in keys):
        raise InvalidInput(f"'{name}' must be an object with numbers {', '.join(keys)}.")
    return value


def _finite(value) -> bool:
    """A JSON number that fits a float and is finite (no bool, no 400-digit integer, no Infinity)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value) and abs(value) < 1e15
    except OverflowError:
        return False


def region(value) -> tuple[int, int, int, int] | None:
    r = _object(value, "region", ("x", "y", "w", "h"))
    return None if r is None else tuple(int(round(r[k])) for k in ("x", "y", "w", "h"))


def point(value) -> tuple[float, float] | None:
    p = _object(value, "point", ("x", "y"))
    return None if p is None else (float(p["x"]), float(p["y"]))


def image_query(fields, files) -> Query:
    """The image part of a search or segment request: a multipart file, base64 data, a drawing or a URL."""
    box, click = region(fields.get("region")), point(fields.get("point"))
    if box is not None and click is not None:
        raise InvalidInput("Send either 'region' or 'point', not both.")
    extra = {"region": box, "point": click}
    file = files.get("image") if files else None
    if file is not None:
        data = read_upload(file)
        if not data:
            raise InvalidInput("The uploaded 'image' file is empty.", "missing_field")
        name = os.path.basename(file.filename or "")
        return Query("upload", data=data, original_name=name if printable_text(name) else None, **extra)
    for key, mode in (("image_base64", "base64"), ("sketch_base64", "sketch")):
        if fields.get(key):
            return Query(mode, data=_base64_image(fields[key], key), original_name=_file_name(fields), **extra)
    if fields.get("url"):
        if not isinstance(fields["url"], str) or len(fields["url"]) > 2048:
            raise InvalidInput("'url' must be an http or https URL of at most 2048 characters.")
        return Query("url", url=fields["url"].strip(), **extra)
    raise InvalidInput("Send an 'image' file, or JSON with 'image_base64', 'sketch_base64', 'url' or 'gallery_id'.",
                       "missing_field")


TEXT_MAX = 1000  # characters of a text query; CLIP reads its first 77 tokens in any case


def query_text(value) -> str | None:
    """The words of a search, or None when absent or blank."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or len(value) > TEXT_MAX or not printable_text(value):
        raise InvalidInput(f"'text' must be a text of at most {TEXT_MAX} characters without control characters.")
    return value.strip()


def search_space(value) -> str:
    """Where a picture is searched: ``dinov2`` (by look, the default) or ``clip`` (by meaning)."""
    if value is None or value == "":
        return SPACES[0]
    if value not in SPACES:
        raise InvalidInput(f"'space' must be one of {', '.join(SPACES)}.")
    return value


def has_picture(fields, files) -> bool:
    """Whether a search request sends a picture of its own (a file, base64 data, a drawing or a URL)."""
    return bool(files and files.get("image") is not None) or any(
        fields.get(key) for key in ("image_base64", "sketch_base64", "url"))


def _file_name(fields) -> str | None:
    """The optional ``filename`` of a base64 picture (kept with a signed-in user's search)."""
    name = fields.get("filename")
    if name is not None and not (isinstance(name, str) and printable_text(name)):
        raise InvalidInput("'filename' must be a text without control characters.")
    return name or None


def _base64_image(raw, key: str) -> bytes:
    """The bytes of the field ``key``: base64 text, or a data:image/...;base64 URL."""
    match = _DATA_URL.match(raw) if isinstance(raw, str) else None
    payload = match.group(1) if match else raw
    try:
        data = base64.b64decode(payload, validate=True) if isinstance(payload, str) else b""
    except (binascii.Error, ValueError):
        data = b""
    if not data:
        raise InvalidInput(f"'{key}' must be a base64 image or a data:image/...;base64 URL.")
    return data


def body_fields():
    """The request's fields and files, from JSON or a multipart form."""
    if request.is_json:
        try:
            body = request.get_json(silent=True)
        except RecursionError:  # JSON nested thousands deep
            body = None
        if not isinstance(body, dict):
            raise InvalidInput("The request body is not a JSON object.", "invalid_json")
        return body, None
    return request.form, request.files


def photo_filter(fields) -> PhotoFilter:
    """The metadata filter of a search or a gallery listing: ``taken_after``/``taken_before`` (YYYY-MM-DD,
    inclusive), ``camera``, ``orientation`` (landscape, portrait, square) and ``min_megapixels``; empty
    values are absent."""
    def text(name: str) -> str | None:
        value = fields.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str) or len(value) > 120 or not printable_text(value):
            raise InvalidInput(f"'{name}' must be a short text.")
        return value.strip()

    def day(name: str) -> date | None:
        value = text(name)
        try:
            return date.fromisoformat(value) if value is not None else None
        except ValueError:
            raise InvalidInput(f"'{name}' must be a date like 2024-06-30.") from None

    orientation = text("orientation")
    if orientation is not None and orientation not in ORIENTATIONS:
        raise InvalidInput(f"'orientation' must be one of {', '.join(ORIENTATIONS)}.")
    megapixels = text("min_megapixels") if isinstance(fields.get("min_megapixels"), str) else fields.get("min_megapixels")
    if megapixels is not None:
        try:
            megapixels = float(megapixels)
        except (TypeError, ValueError, OverflowError):  # OverflowError: integers of hundreds of digits
            megapixels = float("nan")
        if not (math.isfinite(megapixels) and 0 <= megapixels <= 1000):
            raise InvalidInput("'min_megapixels' must be a number from 0 to 1000.")
    result = PhotoFilter(day("taken_after"), day("taken_before"), text("camera"), orientation, megapixels)
    if result.taken_after and result.taken_before and result.taken_after > result.taken_before:
        raise InvalidInput("'taken_after' is later than 'taken_before'.")
    return result
