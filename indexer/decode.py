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

from PIL import Image, TiffImagePlugin

from dinov2_numpy import ImageError, ImageTooLarge, NotAnImage
from dinov2_numpy.preprocess import ORIENTATION, open_image, to_rgb

from .formats import raw_kind  # the module also registers the phone-format plugins

Source = Union[str, os.PathLike, bytes]


@dataclass
class Picture:
    """A decoded picture: upright RGB pixels, the PIL format the file was in (``formats.FORMATS``) and the
    upright size of the whole picture (larger than ``image`` when it was decoded reduced)."""

    image: Image.Image
    format: str | None
    full_size: tuple[int, int]
    # how it was read: "full", "reduced" (a JPEG's DCT scaling), "raw preview" (a RAW file's embedded JPEG)
    # or "raw demosaic"
    source: str = "full"


# Formats whose decoder may make more pixels than the header declares: libavif decodes the whole AV1 frame
# (up to 16384 x 16384) before cropping it to the size the 'ispe' box gives.
UNTRUSTED_HEADERS = frozenset({"AVIF"})


def header_size(source: Source) -> tuple[int, int, str | None]:
    """``(width, height, format)`` from the file's header alone, without decoding its pixels (see
    ``UNTRUSTED_HEADERS`` for formats whose header may understate what decoding costs)."""
    try:
        with open_regular(source) as f:
            kind = raw_kind_of(f)
            if kind is not None:
                with open_raw(f) as raw:
                    return raw.sizes.width, raw.sizes.height, kind
            with Image.open(f) as image:
                return image.width, image.height, image.format
    except Exception as e:  # noqa: BLE001  (see the module docstring: any decoder error is a refusal)
        raise _refusal(e) from None


def decode(source: Source, max_pixels: int | None = None, shortest_side: int | None = None) -> Picture:
    """Fully decode the first frame of ``source`` (a path or encoded bytes) into upright RGB.

    ``shortest_side``: decode no more pixels than a picture of that shortest side needs. A JPEG is decoded by
    libjpeg's DCT scaling at the smallest of 1/2, 1/4 and 1/8 that keeps its shortest side at least this
    long (a 24-megapixel photo needed at 512 pixels decodes at 1/4: a sixteenth of the pixels, several times
    faster); other formats decode in full.

    ``NotAnImage`` when no decoder recognises it, ``ImageTooLarge`` when it has more than ``max_pixels``
    pixels (refused from the header, before decoding), ``ImageError`` for anything else that goes wrong,
    a path that is not a regular file (a FIFO or a folder named like a picture) included.
    """
    try:
        with open_regular(source) as f:
            kind = raw_kind_of(f)
            if kind is not None:
                picture = _decode_raw(f, kind, max_pixels, shortest_side)
                if picture is not None:
                    return picture
                f.seek(0)  # a TIFF from a camera maker's scanner, say: not RAW after all
            image = Image.open(f)
            if max_pixels is not None and image.width * image.height > max_pixels:
                raise ImageTooLarge(f"image is {image.width}x{image.height} pixels, more than the limit of "
                                    f"{max_pixels:,}")
            stored = image.size
            full_size = upright_size(stored, image.getexif().get(ORIENTATION))
            if shortest_side is not None:
                _reduce(image, shortest_side)
            image = open_image(image)
            if max_pixels is not None and image.width * image.height > max_pixels:  # the header lied
                raise ImageTooLarge(f"image decoded to {image.width}x{image.height} pixels, more than the limit")
            return Picture(to_rgb(image), image.format, full_size, "full" if image.size == stored else "reduced")
    except Exception as e:  # noqa: BLE001  (see the module docstring)
        raise _refusal(e) from None


def raw_kind_of(f: BinaryIO) -> str | None:
    """The RAW format of an open file (``formats.raw_kind``), the file left at its start."""
    head = f.read(16)
    f.seek(0)
    tags = None
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        try:  # the first directory's tags only: Pillow cannot open a colour filter array as a picture
            tags = TiffImagePlugin.ImageFileDirectory_v2(head[:8])
            f.seek(tags.next)
            tags.load(f)
        except Exception:  # noqa: BLE001  (not even a readable TIFF directory: LibRaw may still know it)
            tags = None
        f.seek(0)
    return raw_kind(head, tags)


def open_raw(f: BinaryIO):
    """LibRaw's view of an open RAW file (a ``rawpy.RawPy``, to use in a ``with``): its sizes and metadata,
    unpacked on demand. A file on disk is handed over by its descriptor's path, so that LibRaw reads only
    what it needs (headers, a preview) instead of copying a 50 MB file into memory."""
    import rawpy  # a large native library, loaded only where there are RAW files
    fd_path = f"/proc/self/fd/{f.fileno()}" if hasattr(f, "fileno") and not isinstance(f, io.BytesIO) else None
    return rawpy.imread(fd_path if fd_path and os.path.exists(fd_path) else f)


def _decode_raw(f: BinaryIO, kind: str, max_pixels: int | None, shortest_side: int | None) -> Picture | None:
    """A RAW file's picture: its embedded preview when that is large enough (most cameras embed a 1-2
    megapixel or full-size JPEG), else a half-size demosaic with the camera's white balance. None when
    LibRaw does not take the file for RAW."""
    import rawpy
    try:
        raw = open_raw(f)
    except rawpy.LibRawFileUnsupportedError:
        return None
    with raw:
        width, height = raw.sizes.width, raw.sizes.height
        if max_pixels is not None and width * height > max_pixels:
            raise ImageTooLarge(f"image is {width}x{height} pixels, more than the limit of {max_pixels:,}")
        turn = RAW_TURNS.get(raw.sizes.flip)
        full = raw_upright_size(raw)
        need = shortest_side if shortest_side is not None else min(full) // 2
        image = _raw_preview(raw, need, turn)
        if image is not None:
            return Picture(image, kind, full, "raw preview")
        pixels = raw.postprocess(use_camera_wb=True, half_size=True, output_bps=8)  # LibRaw turns it upright
        return Picture(Image.fromarray(pixels, "RGB"), kind, full, "raw demosaic")


# LibRaw's flip codes to the turn that makes a picture upright (0: none)
RAW_TURNS = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}


def raw_upright_size(raw) -> tuple[int, int]:
    """A RAW picture's (width, height) as it is shown: after the turn its own flag asks for."""
    width, height = raw.sizes.width, raw.sizes.height
    return (height, width) if raw.sizes.flip in (5, 6) else (width, height)


def _raw_preview(raw, need: int, turn) -> Image.Image | None:
    """The embedded preview, upright, if its shortest side is at least ``need``; else None."""
    import rawpy
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        image = Image.open(io.BytesIO(thumb.data))
        if min(image.size) < need:
            return None
        own_turn = image.getexif().get(ORIENTATION, 1) != 1
        _reduce(image, need)
        image = to_rgb(open_image(image))
    else:
        image = Image.fromarray(thumb.data).convert("RGB")
        own_turn = False
        if min(image.size) < need:
            return None
    return image.transpose(turn) if turn is not None and not own_turn else image


def upright_size(size: tuple[int, int], orientation: int | None) -> tuple[int, int]:
    """``(width, height)`` as a picture of EXIF ``orientation`` is shown (5 to 8 swap the sides)."""
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def reduced_size(size: tuple[int, int], pil_format: str | None, shortest_side: int | None) -> tuple[int, int]:
    """The ``(width, height)`` that ``decode`` makes of a picture whose header gives ``size`` and
    ``pil_format`` when asked for ``shortest_side``: a JPEG's DCT scale, every other format in full (a RAW
    file's preview is not known from its header)."""
    scale = _jpeg_scale(size, pil_format, shortest_side)
    return -(-size[0] // scale), -(-size[1] // scale)


def _jpeg_scale(size: tuple[int, int], pil_format: str | None, shortest_side: int | None) -> int:
    """libjpeg's largest DCT scale (8, 4 or 2; 1 for none) that keeps the shortest side ``shortest_side``."""
    if shortest_side is None or pil_format not in ("JPEG", "MPO"):
        return 1
    return next((s for s in (8, 4, 2) if min(size) >= s * shortest_side), 1)


def _reduce(image: Image.Image, shortest_side: int) -> None:
    """Ask a JPEG's decoder for the smallest DCT scale whose shortest side is still ``shortest_side``."""
    scale = _jpeg_scale(image.size, image.format, shortest_side)
    if scale > 1:  # Pillow picks the scale from the size asked for: the whole multiple of it
        image.draft(None, (image.width // scale, image.height // scale))


@contextlib.contextmanager
def open_regular(source: Source) -> Iterator[BinaryIO]:
    """A readable file object for ``source`` (a path or bytes). A path is opened without blocking and must be
    a regular file: opening a FIFO for reading would otherwise wait for a writer forever."""
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
