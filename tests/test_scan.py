"""The scan's order and the digest it feeds: a no-op build trusts both."""
import hashlib
import os
import shutil

from indexer.scan import scan
from tests.images import skimage_photo

# Names where a folder's paths fall between two files of the folder above it: '-' < '.' < '/' < '0'.
NAMES = ["b.jpg", "b-x.jpg", "b0.jpg", "b/x.jpg", "b/y/z.png", "b.c/d.jpg", "B.jpg", "a/b/c.jpg", "é.jpg",
         "b/.hidden.jpg", ".b/x.jpg", "notes.txt"]


def make(root, names=NAMES):
    for name in names:
        os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
        shutil.copy(skimage_photo("chelsea.png"), os.path.join(root, name))


def digest_of(root):
    fed = hashlib.sha256()
    entries, skipped = scan(str(root), fed)
    return entries, fed.hexdigest()


def test_entries_come_out_sorted_by_path_without_hidden_or_other_files(tmp_path):
    make(tmp_path)
    entries, _ = scan(str(tmp_path))
    paths = [e.path for e in entries]
    assert paths == sorted(paths)
    assert set(paths) == {n for n in NAMES if not n.endswith(".txt") and "/." not in "/" + n}


def test_the_digest_follows_every_path_size_and_time_and_nothing_else(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    make(one)
    make(two, list(reversed(NAMES)))  # made in another order: the same tree
    for name in NAMES:
        stat = os.stat(one / name)
        os.utime(two / name, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    entries, digest = digest_of(one)
    assert digest_of(two) == (entries, digest)
    os.utime(one / "b/y/z.png", ns=(1, 1))
    assert digest_of(one)[1] != digest
    os.utime(one / "b/y/z.png", ns=(1, entries[[e.path for e in entries].index("b/y/z.png")].mtime_ns))
    assert digest_of(one)[1] == digest
    with open(one / "b0.jpg", "ab") as f:
        f.write(b"\0")
    assert digest_of(one)[1] != digest
    os.rename(one / "b0.jpg", one / "b1.jpg")
    assert digest_of(one)[1] != digest
