"""The one table of image formats the product accepts: in the gallery, as uploads and from URLs. Phone
formats come from plugins: HEIC/HEIF through pillow-heif, AVIF through Pillow's own codec."""
from __future__ import annotations

import os

import pillow_heif

pillow_heif.register_heif_opener()  # every Image.open in this process can read HEIC from here on

# PIL format name -> (file extension we store it under, MIME type)
FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("jpg", "image/jpeg"),
    "MPO": ("jpg", "image/jpeg"),  # multi-picture JPEG from phones and stereo cameras
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"),
    "BMP": ("bmp", "image/bmp"),
    "TIFF": ("tif", "image/tiff"),
    "HEIF": ("heic", "image/heic"),  # iPhone photos
    "AVIF": ("avif", "image/avif"),
}
EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif", ".avif"})
STORED_EXTENSIONS = frozenset(ext for ext, _ in FORMATS.values())
HUMAN_LIST = "JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC or AVIF"


def is_image_name(name: str) -> bool:
    """Whether a file name has one of the accepted image extensions."""
    return os.path.splitext(name)[1].lower() in EXTENSIONS


def extension_of(pil_format: str | None) -> str | None:
    """The extension an image of this PIL format is stored under, or None if the format is not accepted."""
    entry = FORMATS.get(pil_format or "")
    return entry[0] if entry else None
