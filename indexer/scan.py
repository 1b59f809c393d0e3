"""Finding the images in a folder tree."""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from .formats import is_image_name


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the images folder, with forward slashes
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def scan(images_dir: str) -> tuple[list[FileEntry], list[Skipped]]:
    """Every image file below ``images_dir`` (hidden files and folders excluded), sorted by path, and the
    files that cannot be used, with the reason. Symlinked folders are not followed, so loops cannot occur."""
    entries: list[FileEntry] = []
    skipped: list[Skipped] = []
    if not os.path.isdir(images_dir):
        return entries, skipped

    def on_error(e: OSError) -> None:
        skipped.append(Skipped(os.path.relpath(e.filename or images_dir, images_dir), f"cannot list folder: {e.strerror}"))

    for folder, dirs, files in os.walk(images_dir, onerror=on_error, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith(".") or not is_image_name(name):
                continue
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, images_dir).replace(os.sep, "/")
            try:
                st = os.stat(full)
            except OSError as e:
                reason = "symlink loop" if e.errno == errno.ELOOP else "broken symlink" if e.errno == errno.ENOENT else e.strerror
                skipped.append(Skipped(rel, reason))
                continue
            if not stat.S_ISREG(st.st_mode):
                skipped.append(Skipped(rel, "not a regular file"))
            elif st.st_size == 0:
                skipped.append(Skipped(rel, "empty file"))
            else:
                entries.append(FileEntry(rel, st.st_size, st.st_mtime_ns))
    entries.sort(key=lambda e: e.path)
    return entries, skipped

