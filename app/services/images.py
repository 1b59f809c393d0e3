"""Turning bytes from a stranger into a picture the model may see, or a clear refusal."""
from __future__ import annotations

import contextlib
from typing import Iterator

from PIL import Image

from dinov2_numpy import ImageError, ImageTooLarge, NotAnImage
from indexer.decode import Picture, header_size, reduced_size
from indexer.decode import decode as decode_picture
from indexer.formats import HUMAN_LIST, extension_of

from .errors import InvalidInput, Unprocessable, UnsupportedMedia
from .pixel_budget import PixelBudget


@contextlib.contextmanager
def decoded(data: bytes, max_pixels: int, budget: PixelBudget | None = None,
            shortest_side: int | None = None) -> Iterator[tuple[Picture, str]]:
    """The validated upright RGB picture of ``data`` (decoded no larger than ``shortest_side`` needs, as
    ``indexer.decode.decode`` says) and the extension its format is stored under, its pixels reserved in
    ``budget`` for the body of the ``with`` (the request's whole use of the picture)."""
    try:
        width, height, pil_format = header_size(data)
        ext = extension_of(pil_format)
        if ext is None:
            raise UnsupportedMedia(f"{pil_format} images are not accepted; use {HUMAN_LIST}.")
        if width * height > max_pixels:
            raise ImageTooLarge(f"{width}x{height}")
        held = reduced_size((width, height), pil_format, shortest_side)  # a JPEG may decode a sixteenth of it
        with budget.hold_picture(*held, pil_format) if budget is not None else contextlib.nullcontext():
            yield decode_picture(data, max_pixels, shortest_side), ext
    except NotAnImage:
        raise UnsupportedMedia(f"The file is not a readable image (accepted: {HUMAN_LIST}).") from None
    except ImageTooLarge:
        raise Unprocessable(f"The image has more than {max_pixels:,} pixels.", "image_too_large") from None
    except ImageError as e:
        raise Unprocessable(f"The image could not be decoded: {e}", "undecodable_image") from None


def decode(data: bytes, max_pixels: int) -> tuple[Image.Image, str]:
    """Validated upright RGB image and the extension its format is stored under (no pixel budget)."""
    with decoded(data, max_pixels) as (picture, ext):
        return picture.image, ext


def crop_region(image: Image.Image, region: tuple[int, int, int, int]) -> Image.Image:
    """The full-quality crop; a box reaching at most 2 px past an edge (rounding in the browser) is clamped."""
    x, y, w, h = region
    width, height = image.size
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > width + 2 or y + h > height + 2 or x >= width or y >= height:
        raise InvalidInput(f"The region {x},{y} {w}x{h} does not lie inside the {width}x{height} image.",
                           "invalid_region")
    return image.crop((x, y, min(x + w, width), min(y + h, height)))


def check_point(image: Image.Image, point: tuple[float, float]) -> None:
    """InvalidInput unless ``point`` lies inside ``image``."""
    x, y = point
    if not (0 <= x < image.width and 0 <= y < image.height):
        raise InvalidInput(f"The point ({x}, {y}) is outside the {image.width}x{image.height} image.", "invalid_point")


def is_blank(image: Image.Image) -> bool:
    """A drawing with no stroke: every pixel (nearly) the same colour."""
    return all(hi - lo < 8 for lo, hi in image.convert("RGB").getextrema())
