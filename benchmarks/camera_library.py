"""A photographer's library through the builder: camera-size files against the same photos at 1 MP and
against the model alone, in the same run.

    python benchmarks/camera_library.py [--count 12] [--batch-size 8] [--dng-preview full|WxH] [--kinds ...]

Real photos from the PyPI wheels (``indexer.evaluate.distinct_photos``) become, one kind at a time, files as
cameras write them (``indexer.camera_files``): 1 MP JPEG (the baseline), 24 and 48 MP JPEG at quality 92, 12 MP
HEIC, 24 MP DNG with an embedded preview and without one. Each set is built by ``build_gallery.py`` in a
subprocess, then deleted (a 24 MP DNG is 48 MB). Per kind:

- CPU per file before the model: the builder's own decode and preprocessing (``prepare_file``), one file at
  a time on one thread;
- build images/s (the subprocess's wall time less an empty build's, which is start-up and model loading),
  against the 1 MP set's and against the model alone on the same pictures, timed just before each build;
- the builder's CPU seconds and peak memory;
- the cosine of each camera-size file's descriptor to its 1 MP twin's, and retrieval: every near-duplicate
  edit of the 1 MP photos (``indexer.evaluate.near_duplicate_edits``) queries the set, P@1 and mAP.

A kind the builder did not index is printed as skipped, with its reason. The model runs without the BLAS pin
the environment may set (see ``without_blas_pin``), and the BLAS kernel is printed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dinov2_numpy.blas import blas_kernels, without_blas_pin  # noqa: E402
from dinov2_numpy import ImageError, load_model  # noqa: E402
from dinov2_numpy.descriptor import by_shape, descriptor_of, prepare  # noqa: E402
from indexer import camera_files  # noqa: E402
from indexer.config import load_settings  # noqa: E402
from indexer.embedding import embed_pixels, prepare_file  # noqa: E402
from indexer.evaluate import average_precision, distinct_photos, near_duplicate_edits  # noqa: E402
from indexer.generations import load_index  # noqa: E402


@dataclass(frozen=True)
class Kind:
    """A kind of camera file: its name in the table, file extension, size and writer."""

    name: str
    extension: str
    megapixels: float
    write: Callable[[Image.Image, str], None]


def kinds(dng_preview) -> list[Kind]:
    """The kinds the benchmark builds, the 1 MP baseline first."""
    return [
        Kind("1 MP JPEG q92", "jpg", 1, camera_files.write_jpeg),
        Kind("24 MP JPEG q92", "jpg", 24, camera_files.write_jpeg),
        Kind("48 MP JPEG q92", "jpg", 48, camera_files.write_jpeg),
        Kind("12 MP HEIC", "heic", 12, camera_files.write_heic),
        Kind("24 MP DNG + preview", "dng", 24, partial(camera_files.write_dng, preview=dng_preview)),
        Kind("24 MP DNG", "dng", 24, camera_files.write_dng),
    ]


def write_set(kind: Kind, photos: list[Image.Image], folder: str) -> list[str]:
    """The photos as ``kind`` files in ``folder``; their paths, photo by photo."""
    os.makedirs(folder)
    paths = [os.path.join(folder, f"photo{i:04d}.{kind.extension}") for i in range(len(photos))]
    for photo, path in zip(photos, paths):
        kind.write(camera_files.camera_size(photo, kind.megapixels), path)
    # A library's files are on disk before it is indexed: without this the build would read a gigabyte of
    # DNGs while the kernel is still writing them back, and time the disk instead of the builder.
    os.sync()
    return paths


def cpu_before_model(paths: list[str], descriptor, max_pixels: int) -> tuple[float | None, str | None]:
    """CPU seconds per file the builder's decode and preprocessing take, and the first refusal's reason."""
    seconds = []
    for path in paths:
        start = time.process_time()
        try:
            prepare_file(path, descriptor, max_pixels)
        except ImageError as e:
            return None, str(e)
        seconds.append(time.process_time() - start)
    return float(np.mean(seconds)), None


def model_rate(model, pixels: list[np.ndarray], batch_size: int) -> float:
    """Images/s of the model alone (the weights' descriptor) on prepared ``pixels``, after a warm-up batch."""
    embed = partial(embed_pixels, model)
    by_shape(embed, pixels[:batch_size])
    start = time.perf_counter()
    for i in range(0, len(pixels), batch_size):
        by_shape(embed, pixels[i:i + batch_size])
    return len(pixels) / (time.perf_counter() - start)


@dataclass
class Build:
    """One run of ``build_gallery.py``: its wall and CPU seconds, peak memory (MiB) and printed summary."""

    wall: float
    cpu: float
    peak_mb: float
    summary: str


def _peak_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:")), 0.0)
    except OSError:
        return 0.0


def run_build(images: str, index: str, weights: str, batch_size: int) -> Build:
    """``build_gallery.py`` on ``images`` in a subprocess. Its CPU comes from ``wait4``; its peak memory from
    polling VmHWM, as ``ru_maxrss`` starts from this process's own size, which the child inherits at fork."""
    command = [sys.executable, os.path.join(ROOT, "build_gallery.py"), "--images", images, "--output", index,
               "--weights", weights, "--batch-size", str(batch_size), "--quiet"]
    peak = 0.0
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT) as proc:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _peak_mb(proc.pid))
            time.sleep(0.02)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        summary = out.read().strip()
    if proc.returncode != 0:
        raise RuntimeError(f"build_gallery.py failed ({proc.returncode}): {summary}")
    return Build(wall, usage.ru_utime + usage.ru_stime, peak, summary)


def indexed_features(index_dir: str, count: int) -> tuple[np.ndarray | None, int]:
    """The index's descriptors in photo order (None unless every photo was indexed), and how many it holds."""
    index = load_index(index_dir)
    held = len(index) if index is not None else 0
    if held != count:
        return None, held
    order = np.argsort([int(os.path.basename(p)[5:9]) for p in index.paths])
    return np.asarray(index.features)[order], held


def query_metrics(queries: np.ndarray, labels: np.ndarray, gallery: np.ndarray) -> dict[str, float]:
    """P@1 and mAP of ``queries`` (photo ``labels``) against a gallery holding photo i in row i."""
    order = np.argsort(-(queries @ gallery.T), axis=1, kind="stable")
    relevant = order == labels[:, None]
    return {"P@1": float(relevant[:, 0].mean()), "mAP": float(np.mean([average_precision(r) for r in relevant]))}


def edit_queries(model, photos: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors of every near-duplicate edit of each photo (the original left out) and their photos."""
    images, labels = [], []
    for i, photo in enumerate(photos):
        edits = near_duplicate_edits(photo, photos[(i + 1) % len(photos)], seed=i)
        images += [im for name, im in edits.items() if name != "original"]
        labels += [i] * (len(edits) - 1)
    return model.embed(images), np.asarray(labels)


def measure_kind(kind: Kind, photos, context: dict, tmp: str) -> dict:
    """Write one kind's files, time what happens before the model, build them, and read their descriptors
    back; the files are deleted afterwards."""
    folder, index = os.path.join(tmp, "files"), os.path.join(tmp, f"index-{kind.megapixels}-{kind.extension}")
    paths = write_set(kind, photos, folder)
    try:
        row = {"kind": kind.name, "MB": sum(os.path.getsize(p) for p in paths) / len(paths) / 2**20}
        row["cpu"], row["refused"] = cpu_before_model(paths, context["descriptor"], context["max_pixels"])
        row["model"] = model_rate(context["model"], context["pixels"], context["batch_size"])
        row["build"] = run_build(folder, index, context["weights"], context["batch_size"])
    finally:
        shutil.rmtree(folder)
    row["features"], row["indexed"] = indexed_features(index, len(photos))
    return row


HEADER = (f"{'kind':<20} {'MB/file':>7} {'CPU before':>10}  {'build/s':>7} {'x 1 MP':>6} {'x model':>7} {'model/s':>7} "
          f"{'builder CPU':>11} {'peak MB':>7}  {'cos min':>7} {'mean':>6}  {'P@1':>5} {'mAP':>5}")


def print_row(row: dict, baseline: dict, startup: float, count: int, queries) -> None:
    """One kind's figures under ``HEADER``, or why it was skipped."""
    build = row["build"]
    cpu = f"{row['cpu'] * 1000:7.1f} ms" if row["cpu"] is not None else "   refused"
    head = f"{row['kind']:<20} {row['MB']:7.1f} {cpu}"
    if row["features"] is None:
        refused = f"; decoding refuses them: {row['refused']}" if row["refused"] else ""
        print(f"{head}  skipped: the builder indexed {row['indexed']} of {count} files{refused}")
        return
    rate = count / max(build.wall - startup, 1e-9)
    base_rate = count / max(baseline["build"].wall - startup, 1e-9)
    twins = np.sum(row["features"] * baseline["features"], axis=1)
    metrics = query_metrics(*queries, row["features"])
    print(f"{head}  {rate:7.2f} {rate / base_rate:6.2f} {rate / row['model']:7.2f} {row['model']:7.2f} "
          f"{build.cpu:10.1f}s {build.peak_mb:7.0f}  {twins.min():7.4f} {twins.mean():6.4f}  "
          f"{metrics['P@1']:5.3f} {metrics['mAP']:5.3f}")


def parse_size(text: str):
    """``full`` or ``WxH``, for ``--dng-preview``."""
    return text if text == "full" else tuple(int(v) for v in text.lower().split("x"))


def chosen_kinds(names: str, dng_preview) -> list[Kind]:
    """The 1 MP baseline, then the kinds whose names contain one of the comma-separated ``names`` (all when
    there are none)."""
    wanted = [w.strip() for w in names.split(",") if w.strip()]
    baseline, *others = kinds(dng_preview)
    return [baseline] + [k for k in others if not wanted or any(w in k.name for w in wanted)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=12, help="photos in each set")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dng-preview", type=parse_size, default="full", help="full, or WxH to fit it in")
    parser.add_argument("--kinds", default="", help="comma-separated names to keep (substrings), after the 1 MP set")
    args = parser.parse_args()
    without_blas_pin()
    settings = load_settings()
    model = load_model(settings["WEIGHTS"])
    print(f"BLAS: {blas_kernels()}")
    photos = distinct_photos(args.count)
    small = [camera_files.camera_size(p, 1) for p in photos]
    descriptor = descriptor_of(model)
    context = {"model": model, "descriptor": descriptor, "max_pixels": settings["MAX_IMAGE_PIXELS"],
               "weights": settings["WEIGHTS"], "batch_size": args.batch_size,
               "pixels": [prepare(p, descriptor) for p in small]}
    queries = edit_queries(model, small)
    with tempfile.TemporaryDirectory(prefix="camera-library-") as tmp:
        os.makedirs(os.path.join(tmp, "empty"))
        startup = run_build(os.path.join(tmp, "empty"), os.path.join(tmp, "index-empty"), settings["WEIGHTS"],
                            args.batch_size).wall
        print(f"{args.count} photos per set, batch {args.batch_size}, {len(queries[1])} edit queries; "
              f"an empty build (start-up, model loading) takes {startup:.2f}s, left out of the rates")
        print(HEADER)
        rows = []
        for kind in chosen_kinds(args.kinds, args.dng_preview):
            rows.append(measure_kind(kind, photos, context, tmp))
            print_row(rows[-1], rows[0], startup, args.count, queries)


if __name__ == "__main__":
    main()
