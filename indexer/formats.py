"""The one table of image formats the product accepts: in the gallery, as uploads and from URLs. Phone
formats come from plugins: HEIC/HEIF through pillow-heif, AVIF through Pillow's own codec. Cameras' RAW files
are read by LibRaw (rawpy): their kind is told from the file's first bytes and, for the TIFF-based ones, its
first directory (``raw_kind``), never from the name alone."""
from __future__ import annotations

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
# Cameras' RAW formats, read through LibRaw; keyed like FORMATS by the name ``indexer.decode`` reports.
RAW_FORMATS: dict[str, tuple[str, str]] = {
    "DNG": ("dng", "image/x-adobe-dng"),
    "CR2": ("cr2", "image/x-canon-cr2"),
    "CR3": ("cr3", "image/x-canon-cr3"),
    "NEF": ("nef", "image/x-nikon-nef"),
    "ARW": ("arw", "image/x-sony-arw"),
    "RAF": ("raf", "image/x-fuji-raf"),
    "ORF": ("orf", "image/x-olympus-orf"),
    "RW2": ("rw2", "image/x-panasonic-rw2"),
    "PEF": ("pef", "image/x-pentax-pef"),
    "SRW": ("srw", "image/x-samsung-srw"),
}
FORMATS.update(RAW_FORMATS)
RAW_EXTENSIONS = frozenset(ext for ext, _ in RAW_FORMATS.values())
EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif", ".avif"}
                       | {"." + ext for ext in RAW_EXTENSIONS})
STORED_EXTENSIONS = frozenset(ext for ext, _ in FORMATS.values())
HUMAN_LIST = "JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC, AVIF or a camera's RAW file (DNG, CR2, CR3, NEF, ARW, ...)"

# TIFF-based RAW files that carry no DNG tag: their kind by the camera maker in the first directory.
_TIFF_RAW_MAKERS = (("NIKON", "NEF"), ("SONY", "ARW"), ("PENTAX", "PEF"), ("RICOH", "PEF"), ("SAMSUNG", "SRW"))
_DNG_VERSION, _MAKE = 50706, 271


def is_image_name(name: str) -> bool:
    """Whether a file name has one of the accepted image extensions (as ``os.path.splitext`` finds it: a name
    of only dots before the extension has none). Without ``splitext``'s call: a scan asks a million times."""
    base = name[name.rfind("/") + 1:]
    dot = base.rfind(".")
    return base[dot:].lower() in EXTENSIONS and base[:dot].lstrip(".") != "" if dot >= 0 else False


def raw_kind(head: bytes, tiff_tags=None) -> str | None:
    """The RAW format of a file from its first bytes (and, for a TIFF-based file, ``tiff_tags``: the first
    directory's tags as Pillow reads them), or None when it is no camera RAW file."""
    if head[4:12] == b"ftypcrx ":
        return "CR3"
    if head.startswith(b"FUJIFILMCCD-RAW"):
        return "RAF"
    if head[:4] in (b"IIRO", b"IIRS", b"MMOR"):
        return "ORF"
    if head[:4] == b"IIU\x00":
        return "RW2"
    if head[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    if head[8:10] == b"CR":
        return "CR2"
    tags = tiff_tags or {}
    if _DNG_VERSION in tags:
        return "DNG"
    make = str(tags.get(_MAKE, "")).strip().upper()
    return next((kind for maker, kind in _TIFF_RAW_MAKERS if make.startswith(maker)), None)


def extension_of(pil_format: str | None) -> str | None:
    """The extension an image of this PIL format is stored under, or None if the format is not accepted."""
    entry = FORMATS.get(pil_format or "")
    return entry[0] if entry else None
