"""The files' facts as columns (``indexer.file_facts``): what a build records of real photos comes back the same
from the columns, after a change and a compaction; the filter columns agree with the metadata; an index an
older release wrote (facts in its JSON manifest) is read, and the next build rewrites it in columns."""
import functools
import json
import os
import shutil

import numpy as np
import pytest

from indexer import generations
from indexer.builder import build_gallery, build_lock
from indexer.changes import compact, update_paths
from indexer.embedding import embed_pixels
from indexer.exif import read_metadata
from indexer.file_facts import FileFacts, has_facts
from indexer.generations import MANIFEST, load_index
from tests.images import skimage_photo

@pytest.fixture
def built(four_photos, weights_path):
    """Four real photos, built; returns (gallery folder, index folder)."""
    gallery, index_dir = four_photos
    build_gallery(str(gallery), str(index_dir), weights_path, progress=False)
    return gallery, index_dir


def test_a_build_keeps_each_files_facts_in_columns_and_gives_them_back(built):
    gallery, index_dir = built
    index = load_index(str(index_dir))
    assert has_facts(index.location)
    with open(os.path.join(index.location, MANIFEST)) as f:
        assert "files" not in json.load(f)  # no longer one JSON document of every file
    for path in index.paths:
        facts = index.files[path]
        st = os.stat(gallery / path)
        assert (facts["size"], facts["mtime_ns"]) == (st.st_size, st.st_mtime_ns)
        assert facts["meta"] == read_metadata(str(gallery / path))
        assert index.path_of_sha(facts["sha256"]) == path
    assert index.path_of_sha("00" * 32) is None and "nothing.png" not in index.files


def test_the_filter_columns_say_what_the_metadata_say(built):
    index = load_index(str(built[1]))
    facts = index.facts
    for row, path in enumerate(index.paths):
        meta = index.files[path]["meta"]
        assert facts.columns["width"][row] == meta["width"] and facts.columns["height"][row] == meta["height"]
        assert ("landscape", "portrait", "square")[facts.columns["orientation"][row]] == meta["orientation"]
        taken = np.int64(facts.columns["taken"][row]).astype("datetime64[s]")
        assert str(taken) == meta["taken_at"]


def test_rows_taken_and_joined_keep_their_own_facts():
    files = {f"p{k}.jpg": {"size": 10 + k, "mtime_ns": k, "sha256": f"{k:02x}" * 32,
                           "meta": {"camera": ["A", "B", None][k % 3], "width": 4, "height": 3 + k,
                                    "orientation": "landscape", "taken_at": f"2020-01-0{k + 1}T10:00:00"}}
             for k in range(6)}
    for info in files.values():
        if info["meta"]["camera"] is None:
            del info["meta"]["camera"]
    paths = sorted(files)
    whole = FileFacts.from_dicts(paths, files)
    picked = whole.take(np.array([4, 1]))
    assert list(picked.paths) == ["p4.jpg", "p1.jpg"] and picked["p4.jpg"] == files["p4.jpg"]
    other = FileFacts.from_dicts(paths[::-1], files)  # the same files, their cameras coded in another order
    joined = FileFacts.concat([(whole, np.arange(6) < 2), (other, np.arange(6) == 0)])
    assert list(joined.paths) == ["p0.jpg", "p1.jpg", "p5.jpg"]
    assert dict(joined.items()) == {p: files[p] for p in joined.paths}
    names = [joined.cameras[c] if c >= 0 else None for c in joined.columns["camera"]]
    assert names == ["A", "B", None]
    assert whole == FileFacts.from_dicts(paths, files) and whole != FileFacts.from_dicts(paths[:-1] + ["x"], files)
    assert whole.row_of_sha("03" * 32) == 3
    # Facts recorded before metadata were read come back without them (a plan then reads them), unlike {}.
    older = {"a.jpg": {"size": 1, "mtime_ns": 2, "sha256": "aa" * 32},
             "b.jpg": {"size": 1, "mtime_ns": 2, "sha256": "bb" * 32, "meta": {}}}
    assert dict(FileFacts.from_dicts(["a.jpg", "b.jpg"], older).items()) == older


def test_a_change_and_a_compaction_keep_the_facts(built, model):
    gallery, index_dir = built
    before = load_index(str(index_dir))
    recorded = {p: before.files[p] for p in before.paths}
    shutil.copy(skimage_photo("astronaut.png"), gallery / "astronaut.png")
    os.unlink(gallery / "coffee.png")
    with build_lock(str(index_dir)):
        update_paths(str(gallery), str(index_dir), functools.partial(embed_pixels, model),
                     add=["astronaut.png"], remove=["coffee.png"])
    changed = load_index(str(index_dir))
    assert has_facts(changed.location, changed.segments[1].name + ".")
    assert changed.files["astronaut.png"]["meta"] == read_metadata(str(gallery / "astronaut.png"))
    assert "coffee.png" not in changed.files
    compact(str(index_dir))
    folded = load_index(str(index_dir))
    assert len(folded.segments) == 1
    expected = {**{p: f for p, f in recorded.items() if p != "coffee.png"},
                "astronaut.png": changed.files["astronaut.png"]}
    assert {p: folded.files[p] for p in folded.paths} == expected
    assert folded.path_of_sha(expected["astronaut.png"]["sha256"]) == "astronaut.png"


def test_an_index_an_older_release_wrote_is_read_and_rewritten_once(built, weights_path):
    gallery, index_dir = built
    index = load_index(str(index_dir))
    recorded = {p: index.files[p] for p in index.paths}
    folder = index.location
    with open(os.path.join(folder, MANIFEST)) as f:
        manifest = json.load(f)
    for name in ("facts.npy", "facts-meta.npy", "facts.json", "build-stamp.json"):
        os.unlink(os.path.join(folder, name))
    with open(os.path.join(folder, MANIFEST), "w") as f:
        json.dump({**manifest, "files": recorded}, f)
    generations._cache.clear()  # segments are cached by their files' inodes: this one changed in place
    older = load_index(str(index_dir))
    assert older.segments[0].files.legacy and {p: older.files[p] for p in older.paths} == recorded
    report = build_gallery(str(gallery), str(index_dir), weights_path, progress=False)
    assert report.embedded == 0
    rewritten = load_index(str(index_dir))
    assert rewritten.location != folder and has_facts(rewritten.location)
    assert {p: rewritten.files[p] for p in rewritten.paths} == recorded
    again = build_gallery(str(gallery), str(index_dir), weights_path, progress=False)
    assert again.embedded == 0 and load_index(str(index_dir)).location == rewritten.location  # a no-op now
