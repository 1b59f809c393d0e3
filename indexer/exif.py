"""What a photo says about itself: capture time, camera, lens, exposure, size, orientation and (only when asked
for) where it was taken. Read from the file's header, never from its pixels, so it costs a fraction of a
decode; a picture without EXIF gets its file time, marked as such."""
from __future__ import annotations

import datetime as dt
import os
from typing import Any

from PIL import ExifTags, Image

from .decode import open_raw, open_regular, raw_kind_of, raw_upright_size, upright_size  # (HEIF too)

_EXIF = ExifTags.IFD.Exif
_GPS = ExifTags.IFD.GPSInfo


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    value = str(value).replace("\x00", "").strip()
    return value[:120] or None


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if number == number and abs(number) < 1e9 else None  # NaN and nonsense out


def _exposure(value) -> str | None:
    seconds = _number(value)
    if not seconds or not 1e-6 <= seconds <= 1e5:  # from 1/1,000,000 s to a day: no camera goes beyond
        return None
    return f"1/{round(1 / seconds)}" if seconds < 1 else f"{seconds:g}"


def _taken(value) -> str | None:
    text = _text(value)
    try:
        return dt.datetime.strptime(text or "", "%Y:%m:%d %H:%M:%S").isoformat()
    except ValueError:
        return None


def _degrees(parts, ref) -> float | None:
    try:
        d, m, s = (float(p) for p in parts)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    value = d + m / 60 + s / 3600
    return round(-value if _text(ref) in ("S", "W") else value, 6)


ORIENTATIONS = ("landscape", "portrait", "square")  # what orientation_of says


def orientation_of(width: int, height: int) -> str:
    """landscape, portrait or square (within 2%)."""
    if abs(width - height) <= 0.02 * max(width, height):
        return "square"
    return "landscape" if width > height else "portrait"


def read_metadata(path: str, gps: bool = False) -> dict[str, Any]:
    """The photo's metadata as JSON-ready values; ``gps`` adds ``latitude``/``longitude`` when present.
    Unreadable files give only the file time (the embedding step reports what is wrong with them)."""
    meta: dict[str, Any] = {}
    try:
        with open_regular(path) as f:
            if raw_kind_of(f) is not None:
                exif = _tiff_exif(f)
                f.seek(0)
                meta.update(_raw_facts(f, exposure=not exif))
                meta.update(_exif_facts(exif, gps))
            else:
                with Image.open(f) as image:
                    exif = image.getexif()
                    meta.update(_size(image.size, exif))
                    meta.update(_exif_facts(exif, gps))
    except Exception:  # noqa: BLE001  (a broken header must not stop the build; decoding reports the file)
        pass
    if "taken_at" not in meta:
        meta.update(_file_time(path))
    return meta


def _tiff_exif(f) -> Image.Exif:
    """The EXIF of a TIFF-based RAW file (DNG, NEF, CR2, ARW, PEF...): its first directory and the EXIF
    directory it points to (Pillow cannot open a colour filter array as a picture, but reads its tags).
    Empty for the other RAW formats, whose facts come from LibRaw alone."""
    exif = Image.Exif()
    if f.read(4) in (b"II*\x00", b"MM\x00*"):
        f.seek(0)
        exif.load_from_fp(f)
    return exif


def _raw_facts(f, exposure: bool) -> dict[str, Any]:
    """What LibRaw reads from any RAW file: the upright size (from the RAW's own flag) and, with ``exposure``
    (for the formats whose EXIF Pillow cannot read; LibRaw takes tens of milliseconds for it), the capture
    time, exposure and lens."""
    with open_raw(f) as raw:
        width, height = raw_upright_size(raw)
        meta: dict[str, Any] = {"width": width, "height": height, "orientation": orientation_of(width, height)}
        if exposure:
            meta.update(_libraw_exposure(raw.other, raw.lens))
    return meta


def _libraw_exposure(other, lens) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    when = getattr(other, "timestamp", None)
    if isinstance(when, dt.datetime) and when.year > 1970:
        meta.update(taken_at=when.replace(tzinfo=None, microsecond=0).isoformat(), time_source="exif")
    # LibRaw says 0 for what the file does not record
    meta.update(_shot(getattr(lens, "model", None), getattr(other, "shutter_speed", None),
                      getattr(other, "aperture", None) or None, getattr(other, "iso_speed", None) or None,
                      getattr(other, "focal_length", None) or None))
    return meta


def _shot(lens, exposure, aperture, iso, focal_length) -> dict[str, Any]:
    """Lens and exposure as JSON-ready values, those the file records only."""
    values = {"lens": _text(lens), "exposure": _exposure(exposure), "aperture": _number(aperture),
              "iso": _number(iso), "focal_length": _number(focal_length)}
    return {k: (int(v) if k == "iso" else v) for k, v in values.items() if v is not None}


def _size(size: tuple[int, int], exif: Image.Exif) -> dict[str, Any]:
    """Width, height and orientation as the picture is shown: after its EXIF rotation."""
    width, height = upright_size(size, exif.get(ExifTags.Base.Orientation))
    return {"width": width, "height": height, "orientation": orientation_of(width, height)}


def _exif_facts(exif: Image.Exif, gps: bool) -> dict[str, Any]:
    """Capture time, camera, lens and exposure (and the position with ``gps``) from an EXIF block."""
    sub = exif.get_ifd(_EXIF)
    meta: dict[str, Any] = {}
    taken = _taken(sub.get(ExifTags.Base.DateTimeOriginal)) or _taken(exif.get(ExifTags.Base.DateTime))
    if taken:
        meta.update(taken_at=taken, time_source="exif")
    camera = _camera(exif)
    if camera:
        meta["camera"] = camera
    meta.update(_shot(sub.get(ExifTags.Base.LensModel), sub.get(ExifTags.Base.ExposureTime),
                      sub.get(ExifTags.Base.FNumber), sub.get(ExifTags.Base.ISOSpeedRatings),
                      sub.get(ExifTags.Base.FocalLength)))
    if gps:
        meta.update(_position(exif.get_ifd(_GPS)))
    return meta


def _camera(exif: Image.Exif) -> str | None:
    make, model = _text(exif.get(ExifTags.Base.Make)), _text(exif.get(ExifTags.Base.Model))
    if model and make and model.lower().startswith(make.lower()):
        make = None  # "Canon" + "Canon EOS 5D" reads "Canon EOS 5D"
    return " ".join(p for p in (make, model) if p)[:120] or None


def _position(where) -> dict[str, float]:
    lat = _degrees(where.get(ExifTags.GPS.GPSLatitude), where.get(ExifTags.GPS.GPSLatitudeRef))
    lon = _degrees(where.get(ExifTags.GPS.GPSLongitude), where.get(ExifTags.GPS.GPSLongitudeRef))
    if lat is not None and lon is not None and abs(lat) <= 90 and abs(lon) <= 180:
        return {"latitude": lat, "longitude": lon}
    return {}


def _file_time(path: str) -> dict[str, str]:
    """The file's modification time, for a picture without a capture time."""
    try:
        taken = dt.datetime.fromtimestamp(os.stat(path).st_mtime).replace(microsecond=0).isoformat()
    except (OSError, ValueError, OverflowError):  # a file time past year 9999 (64-bit file systems)
        return {}
    return {"taken_at": taken, "time_source": "file"}
