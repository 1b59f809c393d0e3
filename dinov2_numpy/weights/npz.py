"""The canonical weights file: an uncompressed ``.npz`` of float32 tensors in Hugging Face naming, plus a
JSON metadata entry. Members are memory-mapped straight out of the zip, so loading costs no copy."""
from __future__ import annotations

import json
import os
import struct
import tempfile
import threading
import zipfile
from typing import Any, Callable, Mapping, TypeVar

import numpy as np

from ..config import WeightsError

METADATA_KEY = "__metadata__"
FORMAT = "dinov2-numpy/1"
T = TypeVar("T")
_CACHE: dict[tuple[str, int, int, Callable], Any] = {}
_CACHE_LOCK = threading.Lock()


def save_npz(path: str | os.PathLike, state: Mapping[str, np.ndarray], metadata: Mapping[str, Any],
             file_format: str = FORMAT) -> None:
    """Write ``state`` and ``metadata`` atomically (a temporary file renamed over ``path``); ``file_format``
    names the model family in the metadata's ``format``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    meta = dict(metadata, format=file_format)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.part")
    os.chmod(tmp, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}
            np.savez(f, **arrays, **{METADATA_KEY: np.array(json.dumps(meta, sort_keys=True))})
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _member_offset(f, info: zipfile.ZipInfo) -> int:
    """Byte offset of a stored member's data: after its local header, whose name/extra lengths may differ."""
    f.seek(info.header_offset)
    header = f.read(30)
    if header[:4] != b"PK\x03\x04":
        raise WeightsError(f"corrupt zip entry '{info.filename}'")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


def load_npz(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Return ``(state, metadata)``; tensors are read-only memory maps where the file allows it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"weights file not found: {path}")
    state: dict[str, np.ndarray] = {}
    metadata: dict[str, Any] = {}
    try:
        with open(path, "rb") as f, zipfile.ZipFile(f) as z:
            for info in z.infolist():
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                if key == METADATA_KEY:
                    metadata = json.loads(str(np.load(z.open(info))))
                    continue
                if info.compress_type != zipfile.ZIP_STORED:
                    state[key] = np.load(z.open(info))
                    continue
                f.seek(_member_offset(f, info))
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(f)
                if dtype.hasobject:
                    raise WeightsError(f"tensor '{key}' holds Python objects, not numbers")
                offset = f.tell()
                if offset + dtype.itemsize * int(np.prod(shape)) > os.path.getsize(path):
                    raise WeightsError(f"weights file is truncated inside tensor '{key}'")
                state[key] = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                                       order="F" if fortran else "C")
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        if isinstance(e, WeightsError):
            raise
        raise WeightsError(f"{path} is not a readable .npz weights file ({e})") from None
    return state, metadata


def load_cached(path: str | os.PathLike, build: Callable[[str], T]) -> T:
    """``build(path)`` once per weights file and builder in this process: the same file (path, size and
    modification time) returns the object built before; a file replaced since is built anew and the old object
    forgotten."""
    path = os.path.realpath(os.fspath(path))
    stat = os.stat(path) if os.path.exists(path) else None
    key = (path, stat.st_size if stat else -1, stat.st_mtime_ns if stat else -1, build)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        built = build(path)
        for old in [k for k in _CACHE if k[0] == path and k[3] is build]:
            del _CACHE[old]
        _CACHE[key] = built
        return built
