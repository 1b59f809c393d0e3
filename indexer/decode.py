"""The one decoding boundary: every picture the product reads (a gallery file for the builder, the folder
watcher and thumbnails; an upload, a drawing or a fetched URL for a search) becomes an upright 8-bit RGB
image here, or an ``ImageError`` with a reason.

Decoders are large C libraries behind Python plugins (libjpeg, libpng, libtiff, libwebp, libheif, libavif),
and a damaged file reaches them in ways nobody lists: a truncated chunk raises ``ValueError``, a mutated TIFF
``TypeError`` or ``OverflowError``, a broken HEIF ``RuntimeError`` or ``EOFError``, an EXIF block
``struct.error`` or ``SyntaxError``. So whatever a decoder or metadata reader raises becomes the product's own
error here, once, and callers decide what a refusal means for them: a 415/422 for an upload, "skipped:
reason" for the builder and the watcher, which go on with the other files.
"""
from __future__ import annotations

import contextlib
import io
import os
import stat
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Union

from PIL import Image

from dinov2_numpy import ImageError, ImageTooLarge, NotAnImage
from dinov2_numpy.preprocess import open_image, to_rgb

from . import formats  # noqa: F401  (registers the phone-format plugins)

Source = Union[str, os.PathLike, bytes]


@dataclass
class Picture:
    """A decoded picture: upright RGB pixels and the PIL format the file was in (``formats.FORMATS``)."""

    image: Image.Image
    format: str | None


def header_size(source: Source) -> tuple[int, int, str | None]:
    """``(width, height, format)`` from the file's header alone, without decoding its pixels."""
    try:
        with open_regular(source) as f, Image.open(f) as image:
            return image.width, image.height, image.format
    except Exception as e:  # noqa: BLE001  (see the module docstring: any decoder error is a refusal)
        raise _refusal(e) from None


def decode(source: Source, max_pixels: int | None = None) -> Picture:
    """Fully decode the first frame of ``source`` (a path or encoded bytes) into upright RGB.

    ``NotAnImage`` when no decoder recognises it, ``ImageTooLarge`` when it has more than ``max_pixels``
    pixels (refused from the header, before decoding), ``ImageError`` for anything else that goes wrong,
    a path that is not a regular file (a FIFO or a folder named like a picture) included.
    """
    try:
        with open_regular(source) as f:
            image = open_image(f, max_pixels=max_pixels)
            return Picture(to_rgb(image), image.format)
    except Exception as e:  # noqa: BLE001  (see the module docstring)
        raise _refusal(e) from None


@contextlib.contextmanager
def open_regular(source: Source) -> Iterator[BinaryIO]:
    """A readable file object for ``source`` (a path or bytes). A path is opened without blocking and must be a regular file:
    opening a FIFO for reading would otherwise wait for a writer forever."""
    if isinstance(source, bytes):
        yield io.BytesIO(source)
        return
    fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageError("not a regular file")
        os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def _refusal(e: Exception) -> ImageError:
    if isinstance(e, ImageError):
        return e
    if isinstance(e, Image.DecompressionBombError):
        return ImageTooLarge(str(e))
    if isinstance(e, MemoryError):
        return ImageTooLarge("the picture needs more memory to decode than it may have")
    if isinstance(e, Image.UnidentifiedImageError):
        return NotAnImage(f"not a readable image: {e}")
    if isinstance(e, OSError) and e.strerror:
        return ImageError(f"cannot read the file: {e.strerror}")
    return ImageError(f"cannot decode image: {type(e).__name__}: {e}"[:300])
