"""Image decoding and the DINOv2 input pipeline.

Default: the reference processor (shortest edge to 256 with PIL bicubic, centre crop 224, scale 1/255,
ImageNet mean/std). ``dynamic=True`` keeps the whole image instead, resized so both sides are multiples
of the patch size.
"""
from __future__ import annotations

import io
import os
from typing import Union

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
ORIENTATION = ExifTags.Base.Orientation
RESIZE, CROP = 256, 224  # the reference processor: shortest edge to 256, centre crop 224

ImageInput = Union[Image.Image, str, os.PathLike, bytes]

# No resized image may hold more pixels than this, whatever the input's aspect ratio: the reference processor
# would stretch a 1 x 8000 picture to 256 x 2,048,000 before its centre crop.
MAX_RESIZED_PIXELS = 4 * 1024 * 1024


class ImageError(ValueError):
    """An image could not be opened or decoded."""


class NotAnImage(ImageError):
    """The data is not in any image format PIL recognises."""


class ImageTooLarge(ImageError):
    """The image has more pixels than allowed (a decompression bomb, or simply too big)."""


def open_image(source: ImageInput, max_pixels: int | None = None) -> Image.Image:
    """Open a path, encoded bytes or PIL image and fully decode its first frame.

    ``max_pixels`` refuses images with more pixels before decoding them (decompression bombs).
    """
    if isinstance(source, Image.Image):
        image = source
    else:
        try:
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        except UnidentifiedImageError as e:
            raise NotAnImage(f"not a readable image: {e}") from None
        except Image.DecompressionBombError as e:
            raise ImageTooLarge(str(e)) from None
        except OSError as e:
            raise ImageError(f"cannot open image: {e}") from None
    if max_pixels is not None and image.width * image.height > max_pixels:
        raise ImageTooLarge(f"image is {image.width}x{image.height} pixels, more than the limit of {max_pixels:,}")
    try:  # a freshly opened file is at its first frame; counting frames would walk a 160,000-page TIFF
        image.load()
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(str(e)) from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"cannot decode image: {e}") from None
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright 8-bit RGB: EXIF orientation applied, transparency composited over white, 16-bit and
    float greyscale scaled to 8 bits, every other mode converted by PIL. A picture that is already all that (one
    this returned) comes back as it is, not copied: the app converts a query once and preprocesses it later."""
    orientation = image.getexif().get(ORIENTATION, 1)
    if image.mode == "RGB" and "transparency" not in image.info and orientation == 1:
        return image
    if orientation in range(2, 9):  # exif_transpose copies even an upright picture
        image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = _to_8_bit_grey(image)
    mode = image.mode
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info)
    if has_alpha or (mode in ("L", "RGB") and "transparency" in image.info):
        # Pasted through its own alpha onto white: the same pixels as compositing RGBA images, at a third of the
        # memory (no RGBA background and composite of a 50-megapixel picture).
        rgba = image if mode == "RGBA" else image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image if mode == "RGB" else image.convert("RGB")


def _to_8_bit_grey(image: Image.Image) -> Image.Image:
    """16-bit samples divided by 257; other integer or float ranges stretched to 0-255. Converted a band of
    rows at a time, so that a 50-megapixel picture needs no full-size float copies."""
    a = np.asarray(image)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    scale, offset = 1.0, 0.0
    if image.mode.startswith("I;16") or (lo >= 0 and 255 < hi <= 65535):  # 16-bit samples (PIL opens them as I)
        scale = 1 / 257.0
    elif lo < 0 or hi > 255:
        scale = 255.0 / (hi - lo or 1.0)
        offset = -lo * scale
    out = np.empty(a.shape, np.uint8)
    rows = max(1, (1 << 18) // max(1, a.shape[1] if a.ndim > 1 else 1))
    for start in range(0, a.shape[0], rows):
        band = a[start:start + rows].astype(np.float64)
        band *= scale
        band += offset
        np.clip(np.rint(band, out=band), 0, 255, out=band)
        out[start:start + rows] = band
    return Image.fromarray(out, "L")


def load_rgb(source: ImageInput, max_pixels: int | None = None) -> Image.Image:
    """``open_image`` then ``to_rgb``."""
    return to_rgb(open_image(source, max_pixels))


def normalize(image: Image.Image, mean: np.ndarray = IMAGENET_MEAN, std: np.ndarray = IMAGENET_STD) -> np.ndarray:
    """(3, H, W) float32: scale to [0, 1] then subtract ``mean`` and divide by ``std`` (ImageNet's by default)."""
    a = np.asarray(image, dtype=np.float32) * np.float32(1 / 255)
    a -= mean
    a /= std
    return np.ascontiguousarray(a.transpose(2, 0, 1))


def dynamic_size(width: int, height: int, max_side: int, patch: int, pixel_budget: int | None = None) -> tuple[int, int]:
    """Target (width, height): longest side at most ``max_side`` and, with ``pixel_budget``, scaled up or
    down to about that many pixels; both sides rounded to multiples of ``patch``."""
    scale = min(1.0, max_side / max(width, height))
    if pixel_budget is not None:
        scale = min(max_side / max(width, height), (pixel_budget / (width * height)) ** 0.5)
    return (max(patch, int(round(width * scale / patch)) * patch),
            max(patch, int(round(height * scale / patch)) * patch))


def preprocess(image: ImageInput, *, dynamic: bool = False, resize: int = RESIZE, crop: int = CROP,
               max_side: int = 518, patch: int = 14, max_pixels: int | None = None,
               pixel_budget: int | None = None, mean: np.ndarray = IMAGENET_MEAN,
               std: np.ndarray = IMAGENET_STD) -> np.ndarray:
    """One image as (3, H, W) float32 model input, normalised by ``mean`` and ``std``.

    Default: shortest edge to ``resize`` (bicubic), centre ``crop`` x ``crop``. With ``dynamic=True`` the
    whole image is kept, its longest side at most ``max_side`` (and its area about ``pixel_budget`` if
    given) and both sides multiples of ``patch``.
    """
    image = load_rgb(image, max_pixels)
    w, h = image.size
    if dynamic:
        size = dynamic_size(w, h, max_side, patch, pixel_budget)
        if size != (w, h):
            image = image.resize(size, Image.BICUBIC)
        return normalize(image, mean, std)
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = resize, int(resize * long / short)
    size = (new_short, new_long) if w <= h else (new_long, new_short)
    if size[0] * size[1] > MAX_RESIZED_PIXELS and new_short >= crop:
        return normalize(_resized_centre_crop(image, size, crop), mean, std)
    if size != (w, h):
        image = image.resize(size, Image.BICUBIC)
    w, h = image.size
    if w < crop or h < crop:  # the reference pads with zeros (black) when the image is smaller than the crop
        padded = Image.new("RGB", (max(w, crop), max(h, crop)))
        padded.paste(image, ((max(w, crop) - w) // 2, (max(h, crop) - h) // 2))
        image, (w, h) = padded, padded.size
    top, left = int((h - crop) / 2.0), int((w - crop) / 2.0)
    return normalize(image.crop((left, top, left + crop, top + crop)), mean, std)


def input_box(width: int, height: int, *, dynamic: bool = False, resize: int = RESIZE,
              crop: int = CROP) -> tuple[float, float, float, float]:
    """The rectangle (x, y, w, h) of an upright ``width`` x ``height`` picture, in its own pixels, that
    ``preprocess`` with the same arguments turns into the model input: a point (u, v) of the input shows the
    picture's (x + u * w / input width, y + v * h / input height). The centre crop's box lies inside the
    picture, or reaches past it where the reference pads a small picture; ``dynamic`` keeps the whole picture."""
    if dynamic:
        return 0.0, 0.0, float(width), float(height)
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = resize, int(resize * long / short)
    size = (new_short, new_long) if width <= height else (new_long, new_short)
    sx, sy = width / size[0], height / size[1]
    padded = (max(size[0], crop), max(size[1], crop))
    left = int((padded[0] - crop) / 2.0) - (padded[0] - size[0]) // 2
    top = int((padded[1] - crop) / 2.0) - (padded[1] - size[1]) // 2
    return left * sx, top * sy, crop * sx, crop * sy


def _resized_centre_crop(image: Image.Image, size: tuple[int, int], crop: int) -> Image.Image:
    """The centre ``crop`` of ``image`` resized to ``size``, made by resizing only the source region that the
    crop keeps (PIL's ``box``), so that the full resized image never exists."""
    w, h = image.size
    top, left = int((size[1] - crop) / 2.0), int((size[0] - crop) / 2.0)
    sx, sy = w / size[0], h / size[1]
    box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
    return image.resize((crop, crop), Image.BICUBIC, box=box)
