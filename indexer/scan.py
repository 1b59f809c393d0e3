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

import contextlib
import errno
import gc
import os
import re
import stat
from dataclasses import dataclass
from typing import Any, NamedTuple

from .formats import RAW_EXTENSIONS, is_image_name

RAW_SUFFIXES = tuple("." + ext for ext in sorted(RAW_EXTENSIONS))
PAIRED_EXTENSIONS = (".jpg", ".jpeg", ".heic", ".heif")  # what cameras write beside a RAW file
_CONTROL = re.compile("[\x00-\x1f\x7f]")


class FileEntry(NamedTuple):
    """One image file a scan found. A tuple, not a frozen dataclass: a scan makes a million of them, and a
    frozen dataclass's ``__init__`` costs 2 µs each."""

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
    if _CONTROL.search(rel):
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


def _is_raw_name(rel: str) -> bool:
    return rel.lower().endswith(RAW_SUFFIXES)


def pair_of(images_dir: str, rel: str) -> str | None:
    """For a RAW file, the JPEG or HEIC of the same name beside it (which stands for the pair), else None."""
    if not _is_raw_name(rel):
        return None
    return next(iter(_siblings(images_dir, rel, PAIRED_EXTENSIONS)), None)


def raw_companions(images_dir: str, rel: str) -> list[str]:
    """For a JPEG or HEIC, the RAW files of the same name beside it: the originals of that one picture."""
    return _siblings(images_dir, rel, RAW_SUFFIXES) if rel.lower().endswith(PAIRED_EXTENSIONS) else []


def check_file(images_dir: str, rel: str) -> FileEntry | Skipped | None:
    """The entry of one relative path, Skipped with the reason it cannot be used, or None when it is not an
    image the gallery would index (a RAW file whose JPEG stands for it included) or no longer exists."""
    if not is_candidate(rel):
        return None
    return _checked(images_dir, rel, None)


def _checked(images_dir: str, rel: str, found: os.DirEntry | None, plain: bool = False) -> FileEntry | Skipped | None:
    """``check_file`` of a candidate; ``found``: its entry in its folder's listing, when a scan has it (its
    ``lstat`` then needs no path lookup). ``plain``: the scan knows the path is printable ASCII and names no
    RAW file (the checks of a name and of a RAW file's JPEG are skipped: a million of them cost a second)."""
    if not plain and pair_of(images_dir, rel) is not None:
        return None
    problem = None if plain else name_problem(rel)
    if problem is not None:
        return Skipped(printable(rel), problem)
    try:
        st = found.stat(follow_symlinks=False) if found is not None else os.lstat(os.path.join(images_dir, rel))
    except FileNotFoundError:
        return None
    except OSError as e:
        return Skipped(rel, e.strerror)
    if stat.S_ISLNK(st.st_mode):
        return _linked(images_dir, rel, os.path.join(images_dir, rel))
    return _entry(rel, st)


def _linked(images_dir: str, rel: str, full: str) -> FileEntry | Skipped:
    """The entry of a symlink: what it leads to, when that is a file inside the gallery folder."""
    if os.path.exists(full) and not inside(images_dir, full):
        return Skipped(printable(rel), "symlink to a file outside the gallery folder")
    try:
        st = os.stat(full)
    except FileNotFoundError:
        return Skipped(rel, "broken symlink")
    except OSError as e:
        return Skipped(rel, "symlink loop" if e.errno == errno.ELOOP else e.strerror)
    return _entry(rel, st)


def _entry(rel: str, st: os.stat_result) -> FileEntry | Skipped:
    if not stat.S_ISREG(st.st_mode):
        return Skipped(rel, "not a regular file")
    if st.st_size == 0:
        return Skipped(rel, "empty file")
    return FileEntry(rel, st.st_size, st.st_mtime_ns)


def scan(images_dir: str, digest: Any = None) -> tuple[list[FileEntry], list[Skipped]]:
    """Every image file below ``images_dir`` (hidden files and folders excluded), sorted by path, and the
    files that cannot be used, with the reason. Symlinked folders are not followed, so loops cannot occur.

    ``digest`` (a ``hashlib`` object), when given, takes in every entry as it is found, while it is still in
    the processor's cache: read back afterwards, a million scattered entries cost a second."""
    entries: list[FileEntry] = []
    skipped: list[Skipped] = []
    if os.path.isdir(images_dir):
        with _collector_paused():
            _scan_folder(images_dir, "", entries, skipped, digest)
    return entries, skipped


@contextlib.contextmanager
def _collector_paused():
    """Python's cycle collector off while a scan makes its entries. They hold no cycles, and each of its
    passes walks every entry made so far: at a million files the passes cost more than the entries."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _scan_folder(images_dir: str, folder: str, entries: list[FileEntry], skipped: list[Skipped],
                 digest: Any) -> None:
    """Add what the folder ``folder`` (relative, "" for the top, else ending in "/") and its own folders hold,
    in order of path.

    A folder sorts under its name and a slash: every path below ``a/b/`` falls between ``a/b.jpg`` and
    ``a/b0.jpg``, as a sort of the whole list would place it, so the entries come out sorted."""
    try:
        items = _folder_items(images_dir, folder)
    except OSError as e:
        skipped.append(Skipped(folder.rstrip("/") or ".", f"cannot list folder: {e.strerror}"))
        return
    run: list[FileEntry] = []
    for name, result in items:
        if result is None:
            _digest_run(digest, run)
            _scan_folder(images_dir, folder + name, entries, skipped, digest)
        elif isinstance(result, FileEntry):
            entries.append(result)
            run.append(result)
        else:
            skipped.append(result)
    _digest_run(digest, run)


def _folder_items(images_dir: str, folder: str) -> list[tuple[str, FileEntry | Skipped | None]]:
    """A folder's own files (name, entry or Skipped) and folders (name + "/", None), sorted. One listing, and
    one ``lstat`` per file from its entry. The listing is read from a descriptor of the folder: each ``lstat``
    then looks up a name in it instead of walking the whole path again (a tenth less time per file here)."""
    fd = os.open(os.path.join(images_dir, folder) if folder else images_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with os.scandir(fd) as listing:
            found = list(listing)
        items = []
        plain_folder = folder.isascii() and folder.isprintable()
        for item in found:
            name = item.name
            if name.startswith("."):  # hidden files and folders
                continue
            try:
                is_folder = item.is_dir()
            except OSError:
                is_folder = False
            if is_folder:  # a symlinked folder is neither followed nor a file
                if not item.is_symlink():
                    items.append((name + "/", None))
            elif is_image_name(name):
                plain = plain_folder and name.isascii() and name.isprintable() and not _is_raw_name(name)
                result = _checked(images_dir, folder + name, item, plain)
                if result is not None:
                    items.append((name, result))
    finally:
        os.close(fd)
    items.sort()
    return items


def _digest_run(digest: Any, run: list[FileEntry]) -> None:
    """Feed ``digest`` the entries of ``run`` (a folder's files between two of its folders), and empty it."""
    if digest is not None and run:
        digest.update("\n".join([e.path for e in run]).encode("utf-8", "surrogateescape"))
        digest.update(f"\0{[e.size for e in run]}\0{[e.mtime_ns for e in run]}\n".encode())
    run.clear()
