"""Writing a file so that readers (and a crash at any instant) see the old content or the new, never a part."""
from __future__ import annotations

import json
import os
import uuid
from typing import Any, BinaryIO, Callable, Union

Content = Union[bytes, Callable[[BinaryIO], None]]


def atomic_write(path: str, content: Content, *, durable: bool = True) -> str:
    """Write ``content`` (bytes, or a function writing to a binary file) to ``path`` through a temporary file
    of a unique name beside it, then one rename. Concurrent writers of the same path never share a temporary
    file; the last rename wins. ``durable`` also syncs the data to disk first. Returns ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.part")
    try:
        with open(tmp, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_json(path: str, data: Any, *, durable: bool = True) -> str:
    """``atomic_write`` of ``data`` as JSON."""
    return atomic_write(path, json.dumps(data, indent=1, sort_keys=True).encode(), durable=durable)
