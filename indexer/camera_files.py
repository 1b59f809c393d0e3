"""Real camera files made from real photos, for tests and benchmarks: camera-size JPEG and HEIC pictures, and
DNG RAW files that LibRaw opens (the photo as a linear RGGB Bayer mosaic, with or without an embedded preview
JPEG, and the EXIF a camera writes).

Only photos we may redistribute go in (the ones that ship in the scikit-image, scikit-learn and mvtb-data
wheels); every file is made here from their pixels.
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import tifffile
from PIL import ExifTags, Image

# sRGB primaries, D65 white (IEC 61966-2-1), the same matrix LibRaw converts camera colour to sRGB with.
SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
# What a daylight exposure looks like on a real sensor: green strongest, red and blue divided by these.
DAYLIGHT_GAINS = (2.0, 1.0, 1.5)
PREVIEW_QUALITY = 90
# Cameras' full-size previews are 4:2:2 (chroma halved across): IFD0's YCbCrSubSampling says (2, 1) to match.
PREVIEW_SUBSAMPLING, _PREVIEW_SAMPLING_TAG = "4:2:2", (2, 1)
SOFTWARE = "search-by-image indexer.camera_files"
_D65 = 21  # CalibrationIlluminant1
_CFA = 32803  # PhotometricInterpretation of a colour filter array
_RGGB = (0, 1, 1, 2)  # CFAPattern: red, green / green, blue
_DEFLATE, _JPEG = 8, 7  # TIFF Compression codes
_EXIF_IFD = 34665
# tifffile will not write an ExifTag itself, so IFD0 gets this unassigned neighbour as a placeholder, renamed
# once the EXIF IFD is in place (no IFD0 tag lies between them, so the entries stay sorted).
_EXIF_PLACEHOLDER = _EXIF_IFD + 1


@dataclass(frozen=True)
class Capture:
    """The shot a camera file says it was, written into its EXIF (rationals as ``(numerator, denominator)``)."""

    make: str = "Acme"
    model: str = "Acme R24"
    lens: str = "Acme 35mm F1.8"
    taken: str = "2024:06:30 17:45:00"
    exposure: tuple[int, int] = (1, 250)
    f_number: tuple[int, int] = (28, 10)
    iso: int = 200
    focal_length: tuple[int, int] = (35, 1)
    orientation: int = 1


def camera_size(image: Image.Image, megapixels: float) -> Image.Image:
    """``image`` resized (Lanczos) to about ``megapixels`` million pixels, keeping its aspect ratio; sides are
    even, as a Bayer sensor's are (24 MP at 3:2 is 6000 x 4000)."""
    scale = (megapixels * 1e6 / (image.width * image.height)) ** 0.5
    size = (2 * round(image.width * scale / 2), 2 * round(image.height * scale / 2))
    return image.convert("RGB").resize(size, Image.LANCZOS)


def pillow_exif(capture: Capture) -> Image.Exif:
    """The EXIF Pillow writes into a JPEG or HEIC for ``capture``."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make], exif[ExifTags.Base.Model] = capture.make, capture.model
    exif[ExifTags.Base.Orientation] = capture.orientation
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    sub[ExifTags.Base.DateTimeOriginal] = capture.taken
    sub[ExifTags.Base.LensModel] = capture.lens
    sub[ExifTags.Base.ExposureTime] = capture.exposure[0] / capture.exposure[1]
    sub[ExifTags.Base.FNumber] = capture.f_number[0] / capture.f_number[1]
    sub[ExifTags.Base.ISOSpeedRatings] = capture.iso
    sub[ExifTags.Base.FocalLength] = capture.focal_length[0] / capture.focal_length[1]
    return exif


def write_jpeg(image: Image.Image, path: str, quality: int = 92, capture: Capture | None = None) -> None:
    """``image`` as a baseline JPEG (4:2:0, as cameras write), with ``capture``'s EXIF when given."""
    extra = {"exif": pillow_exif(capture).tobytes()} if capture else {}
    image.convert("RGB").save(path, "JPEG", quality=quality, **extra)


def write_heic(image: Image.Image, path: str, quality: int = 90, capture: Capture | None = None) -> None:
    """``image`` as a HEIC (HEVC in HEIF, as phones write), with ``capture``'s EXIF when given. x265's
    fastest preset: a 12 MP picture takes 2 s rather than 9, and still makes a standard HEVC stream. An EXIF
    orientation is stored as HEIF's own rotation (pillow-heif), so decoders hand the picture back turned."""
    import pillow_heif
    pillow_heif.register_heif_opener()
    extra = {"exif": pillow_exif(capture).tobytes()} if capture else {}
    image.convert("RGB").save(path, "HEIF", quality=quality, enc_params={"preset": "ultrafast"}, **extra)


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] to linear light (the inverse of the sRGB transfer curve)."""
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def levels(bits: int) -> tuple[int, int]:
    """``(black, white)`` levels of a sensor with ``bits``-bit samples (black about 1/16 of the range)."""
    white = 2**bits - 1
    return (white + 1) // 16, white


def bayer_mosaic(image: Image.Image, bits: int = 16, gains: tuple[float, float, float] = DAYLIGHT_GAINS) -> np.ndarray:
    """The RGGB sensor samples (H, W) uint16 a camera with ``gains`` would record for ``image``: linear light,
    red and blue divided by their white-balance gains, between the black and the white level."""
    rgb = np.asarray(image.convert("RGB"))
    black, white = levels(bits)
    light = srgb_to_linear(np.arange(256) / 255)
    samples = np.empty(rgb.shape[:2], np.uint16)
    for (row, column), channel in zip(((0, 0), (0, 1), (1, 0), (1, 1)), _RGGB):
        # a table per channel: 8-bit sRGB codes to sensor samples, so a 24 MP mosaic needs no float copy
        table = np.round(black + light / gains[channel] * (white - black)).astype(np.uint16)
        samples[row::2, column::2] = table[rgb[row::2, column::2, channel]]
    return samples


def _rationals(values) -> tuple[int, ...]:
    """``values`` as the flat (numerator, denominator, ...) tifffile writes (S)RATIONAL tags from."""
    fractions = (Fraction(float(x)).limit_denominator(1_000_000) for x in np.ravel(values))
    return tuple(v for f in fractions for v in (f.numerator, f.denominator))


def _main_tags(capture: Capture, gains: tuple[float, float, float]) -> list[tuple]:
    """IFD0's DNG tags: the camera, the colour calibration (camera RGB is sRGB's linear light divided by the
    gains) and the as-shot white balance, plus a placeholder for the EXIF IFD's offset."""
    xyz_to_camera = np.diag(1 / np.asarray(gains)) @ np.linalg.inv(SRGB_TO_XYZ)
    return [
        (271, "s", 0, capture.make, True), (272, "s", 0, capture.model, True),
        (274, "H", 1, capture.orientation, True),
        (50706, "B", 4, (1, 4, 0, 0), True), (50707, "B", 4, (1, 1, 0, 0), True),
        (50708, "s", 0, f"{capture.make} {capture.model}", True),
        (50721, 10, 9, _rationals(xyz_to_camera), True), (50778, "H", 1, _D65, True),
        (50728, 5, 3, _rationals(1 / np.asarray(gains)), True),
        (_EXIF_PLACEHOLDER, "I", 1, 0, True),
    ]


def _raw_tags(bits: int) -> list[tuple]:
    """The raw IFD's tags: an RGGB pattern repeating every 2 x 2 samples, and its black and white levels."""
    black, white = levels(bits)
    return [
        (33421, "H", 2, (2, 2), True), (33422, "B", 4, _RGGB, True),
        (50710, "B", 3, (0, 1, 2), True), (50711, "H", 1, 1, True),
        (50713, "H", 2, (1, 1), True), (50714, "I", 1, black, True), (50717, "I", 1, white, True),
    ]


def _preview_jpeg(image: Image.Image, preview) -> tuple[bytes, tuple[int, int]]:
    """The preview a camera embeds: ``"full"`` size or fitted inside ``(width, height)``, as JPEG bytes."""
    shown = image.convert("RGB")
    if preview != "full":
        shown = shown.copy()
        shown.thumbnail(tuple(preview), Image.LANCZOS)
    buf = io.BytesIO()
    shown.save(buf, "JPEG", quality=PREVIEW_QUALITY, subsampling=PREVIEW_SUBSAMPLING)
    return buf.getvalue(), shown.size


def write_dng(image: Image.Image, path: str, preview: str | tuple[int, int] | None = None, bits: int = 16,
              capture: Capture = Capture(),
              gains: tuple[float, float, float] = DAYLIGHT_GAINS) -> None:
    """``image`` as a DNG a camera could have written: its RGGB Bayer mosaic (``bits``-bit linear samples in
    16-bit words, uncompressed) with the DNG colour tags and ``capture``'s EXIF.

    ``preview``: None for no embedded preview, ``"full"`` for a full-size one, or ``(width, height)`` to fit
    it in. With a preview, IFD0 is the preview JPEG (NewSubFileType 1) and the raw is its SubIFD
    (NewSubFileType 0), as cameras lay DNGs out; without one the raw is IFD0.
    """
    raw = bayer_mosaic(image, bits, gains)
    main = _main_tags(capture, gains)
    options = {"software": SOFTWARE, "metadata": None}
    with tifffile.TiffWriter(path, byteorder="<") as tif:
        if preview is None:
            tif.write(raw, photometric=_CFA, subfiletype=0, extratags=main + _raw_tags(bits), **options)
        else:
            jpeg, (w, h) = _preview_jpeg(image, preview)
            # tifffile writes the bytes as given but needs imagecodecs for JPEG's compression code: the strip
            # is written as deflate's and its Compression entry set to JPEG afterwards.
            tif.write(iter([jpeg]), shape=(h, w, 3), dtype=np.uint8, photometric="ycbcr", compression=_DEFLATE,
                      rowsperstrip=h, subfiletype=1, subifds=1, extratags=main, **options)
            tif.write(raw, photometric=_CFA, subfiletype=0, extratags=_raw_tags(bits), **options)
    _finish_ifd0(path, capture)


def _exif_entries(capture: Capture) -> list[tuple[int, int, int, bytes]]:
    """The EXIF IFD's entries ``(tag, TIFF type, count, little-endian value)``, sorted by tag."""
    def ascii_(text: str) -> tuple[int, int, bytes]:
        data = text.encode("ascii") + b"\0"
        return 2, len(data), data

    def rational(pair: tuple[int, int]) -> tuple[int, int, bytes]:
        return 5, 1, struct.pack("<II", *pair)

    entries = {
        33434: rational(capture.exposure), 33437: rational(capture.f_number),
        34855: (3, 1, struct.pack("<H", capture.iso)), 36864: (7, 4, b"0231"),
        36867: ascii_(capture.taken), 37386: rational(capture.focal_length), 42036: ascii_(capture.lens),
    }
    return [(tag, *entries[tag]) for tag in sorted(entries)]


def _ifd_bytes(entries: list[tuple[int, int, int, bytes]], at: int) -> bytes:
    """A little-endian TIFF IFD placed at file offset ``at`` (no next IFD), values over 4 bytes after it."""
    table = struct.pack("<H", len(entries))
    extra = b""
    data_at = at + 2 + 12 * len(entries) + 4
    for tag, kind, count, value in entries:
        if len(value) <= 4:
            table += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")
        else:
            table += struct.pack("<HHII", tag, kind, count, data_at + len(extra))
            extra += value + b"\0" * (len(value) % 2)
    return table + struct.pack("<I", 0) + extra


def _finish_ifd0(path: str, capture: Capture) -> None:
    """Append the EXIF IFD to the file tifffile wrote, turn IFD0's placeholder entry into the ExifTag pointing
    at it, and mark a preview's strip as the JPEG it is, with its chroma subsampling."""
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages.first.tags
        exif_slot = tags[_EXIF_PLACEHOLDER].valueoffset
        compression = tags[259]
        compression_slot = compression.valueoffset if compression.value == _DEFLATE else None
        sampling_slot = tags[530].valueoffset if compression_slot is not None else None
    with open(path, "r+b") as f:
        at = f.seek(0, io.SEEK_END)
        at += at % 2
        f.seek(at)
        f.write(_ifd_bytes(_exif_entries(capture), at))
        f.seek(exif_slot - 8)  # an entry is tag, type, count, then the value at its slot
        f.write(struct.pack("<HHII", _EXIF_IFD, 13, 1, at))
        if compression_slot is not None:
            f.seek(compression_slot)
            f.write(struct.pack("<H", _JPEG))
            f.seek(sampling_slot)
            f.write(struct.pack("<HH", *_PREVIEW_SAMPLING_TAG))
