"""Finding the images in a folder tree, and the policy on what may be indexed.

Symlinks: a link to a file inside the gallery folder is indexed under the link's own path (deleting it
deletes the link); a link that leads outside the gallery is skipped, and is never served. Linked folders are
not followed, so loops cannot occur. Names that are not valid UTF-8, or that hold control characters (a
newline), are skipped with a reason asking for a rename: they cannot be carried safely through URLs, JSON
and databases.

RAW + JPEG pairs: photographers shoot both, and the two files are one picture. A RAW file with a JPEG (or
HEIC) of the same name beside it is not indexed; the JPEG is, and stands for the pair (``pair_of``,
``raw_companions``): searches and the duplicates page show the JPEG, and deleting it deletes its RAW too. A
RAW file alone is indexed itself.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from .formats import RAW_EXTENSIONS, is_image_name

RAW_SUFFIXES = tuple("." + ext for ext in sorted(RAW_EXTENSIONS))
PAIRED_EXTENSIONS = (".jpg", ".jpeg", ".heic", ".heif")  # what cameras write beside a RAW file


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the images folder, with forward slashes
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def name_problem(rel: str) -> str | None:
    """Why a relative path cannot be indexed under its name, or None."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8; rename it"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in rel):
        return "file name contains control characters (such as a newline); rename it"
    return None


def printable(rel: str) -> str:
    """``rel`` with bytes that are not UTF-8 shown as U+FFFD, for reports and logs."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def inside(root: str, full: str) -> bool:
    """Whether ``full``, with every symlink resolved, lies inside the folder ``root``."""
    real_root = os.path.realpath(root)
    return os.path.realpath(full).startswith(real_root + os.sep)


def is_candidate(rel: str) -> bool:
    """Whether a relative path names an image the gallery would index (no hidden file or folder on the way)."""
    parts = rel.split("/")
    return not any(p.startswith(".") for p in parts) and is_image_name(parts[-1])


def _siblings(images_dir: str, rel: str, extensions: tuple[str, ...]) -> list[str]:
    """The files beside ``rel`` with its name and one of ``extensions`` (in lower or upper case)."""
    stem = os.path.splitext(rel)[0]
    names = [stem + e for ext in extensions for e in dict.fromkeys((ext, ext.upper()))]
    return [n for n in names if os.path.isfile(os.path.join(images_dir, n))]


def pair_of(images_dir: str, rel: str) -> str | None:
    """For a RAW file, the JPEG or HEIC of the same name beside it (which stands for the pair), else None."""
    if not rel.lower().endswith(RAW_SUFFIXES):
        return None
    return next(iter(_siblings(images_dir, rel, PAIRED_EXTENSIONS)), None)


def raw_companions(images_dir: str, rel: str) -> list[str]:
    """For a JPEG or HEIC, the RAW files of the same name beside it: the originals of that one picture."""
    return _siblings(images_dir, rel, RAW_SUFFIXES) if rel.lower().endswith(PAIRED_EXTENSIONS) else []


def check_file(images_dir: str, rel: str) -> FileEntry | Skipped | None:
    """The entry of one relative path, Skipped with the reason it cannot be used, or None when it is not an
    image the gallery would index (a RAW file whose JPEG stands for it included) or no longer exists."""
    if not is_candidate(rel) or pair_of(images_dir, rel) is not None:
        return None
    full = os.path.join(images_dir, rel)
    problem = name_problem(rel)
    if problem is None and os.path.islink(full) and os.path.exists(full) and not inside(images_dir, full):
        problem = "symlink to a file outside the gallery folder"
    if problem is not None:
        return Skipped(printable(rel), problem)
    try:
        st = os.stat(full)
    except FileNotFoundError:
        if not os.path.islink(full):
            return None
        return Skipped(rel, "broken symlink")
    except OSError as e:
        return Skipped(rel, "symlink loop" if e.errno == errno.ELOOP else e.strerror)
    if not stat.S_ISREG(st.st_mode):
        return Skipped(rel, "not a regular file")
    if st.st_size == 0:
        return Skipped(rel, "empty file")
    return FileEntry(rel, st.st_size, st.st_mtime_ns)


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
            rel = os.path.relpath(os.path.join(folder, name), images_dir).replace(os.sep, "/")
            found = check_file(images_dir, rel)
            if isinstance(found, FileEntry):
                entries.append(found)
            elif found is not None:
                skipped.append(found)
    entries.sort(key=lambda e: e.path)
    return entries, skipped

