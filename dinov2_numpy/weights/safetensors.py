"""A reader for ``.safetensors`` (header length, JSON header, raw little-endian data), BF16 included."""
from __future__ import annotations

import json
import os
import struct
from typing import Any

import numpy as np

from ..config import WeightsError

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
           "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def bf16_to_float32(raw: np.ndarray) -> np.ndarray:
    """BF16 is the upper half of a float32, so widening is a 16-bit shift."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Return ``(tensors, info)``: float tensors widened to float32, ``info`` with the source dtypes."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise WeightsError(f"{path} is too short to be a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, 100 << 20):
            raise WeightsError(f"{path} is not a safetensors file (header length {n} does not fit the file)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise WeightsError(f"{path} is not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path} is not a safetensors file (header is not a table)")
    base = 8 + n
    tensors: dict[str, np.ndarray] = {}
    dtypes: set[str] = set()
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _DTYPES[spec["dtype"]]
            start, stop = spec["data_offsets"]
            shape = tuple(spec["shape"])
        except (KeyError, TypeError, ValueError):
            raise WeightsError(f"{path}: tensor '{name}' has an unsupported or malformed entry") from None
        if base + stop > size:
            raise WeightsError(f"{path} is truncated: tensor '{name}' ends at byte {base + stop}, file has {size}")
        count = int(np.prod(shape)) if shape else 1
        if stop - start != count * np.dtype(dtype).itemsize:
            raise WeightsError(f"{path}: tensor '{name}' size does not match its shape {shape}")
        raw = np.memmap(path, dtype=np.dtype(dtype).newbyteorder("<"), mode="r", offset=base + start, shape=shape)
        dtypes.add(spec["dtype"])
        if spec["dtype"] == "BF16":
            tensors[name] = bf16_to_float32(raw)
        elif np.issubdtype(dtype, np.floating):
            tensors[name] = np.asarray(raw, np.float32)
        else:
            tensors[name] = np.asarray(raw)
    return tensors, {"dtype": ",".join(sorted(dtypes)).lower()}
