"""Embedding a folder of images into the gallery index: incremental, resumable and tolerant of bad files."""
from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from dinov2_numpy import Dinov2, load_model
from dinov2_numpy.descriptor import descriptor_of
from dinov2_numpy.weights.convert import sha256_file

from . import colour
from .embedding import descriptor_mismatch, embed_pixels, embed_stream
from .exif import read_metadata
from .generations import GalleryIndex, IndexFilesError, load_index, save_index
from .ids import SCHEME as ID_SCHEME
from .ids import image_id
from .scan import FileEntry, Skipped, scan
from .vector_index import build_for_generation
from .work_cache import WorkCache


class BuildError(RuntimeError):
    """A build that must not proceed (another build running, a model change without --rebuild...)."""


class BuildLocked(BuildError):
    """Another build holds the index folder."""


@dataclass
class BuildReport:
    images: int = 0  # rows in the new index
    embedded: int = 0
    reused: int = 0
    removed: int = 0
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (path, same content as)
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0
    index_path: str = ""

    def summary(self) -> str:
        lines = [f"{self.images} images in the index ({self.embedded} embedded, {self.reused} reused, "
                 f"{self.removed} removed) in {self.seconds:.1f}s -> {self.index_path}"]
        if self.duplicates:
            lines.append(f"{len(self.duplicates)} duplicate file(s), embedded once:")
            lines += [f"  {p} = {q}" for p, q in self.duplicates]
        if self.skipped:
            lines.append(f"{len(self.skipped)} file(s) skipped:")
            lines += [f"  {s.path}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)


def model_fingerprint(model: Dinov2) -> dict:
    return {"name": model.name, "sha256": model.metadata.get("source_sha256", ""), "dim": model.dim}


@contextlib.contextmanager
def build_lock(index_dir: str) -> Iterator[None]:
    """One build (or gallery change) at a time per index folder, across processes; BuildLocked otherwise."""
    os.makedirs(index_dir, exist_ok=True)
    with open(os.path.join(index_dir, ".build.lock"), "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildLocked(f"another build is running on {index_dir}") from None
        yield


def is_locked(index_dir: str) -> bool:
    """Whether some process (this one included) holds the build lock of ``index_dir`` now."""
    try:
        with build_lock(index_dir):
            return False
    except BuildLocked:
        return True


def build_gallery(images_dir: str, index_dir: str, weights: str, *, batch_size: int = 8, workers: int = 2,
                  rebuild: bool = False, max_pixels: int | None = 50_000_000, progress: bool = True,
                  log_path: str | None = None, backend: dict | None = None,
                  on_progress: Callable[[int, int], None] | None = None,
                  embed: Callable[[np.ndarray], np.ndarray] | None = None, lock_held: bool = False,
                  cluster: str | None = None, ship_bytes: bool = False, shard_size: int = 64) -> BuildReport:
    """Bring the index in ``index_dir`` up to date with the images below ``images_dir``.

    ``backend`` holds the vector-index settings (``VECTOR_BACKEND`` and its parameters; default NumPy).
    ``on_progress(done, total)`` is called as images are embedded. ``embed`` replaces the model's own forward
    pass for batches of pixels (the web app routes it through its inference queue). ``lock_held``: the caller
    already holds ``build_lock`` (a gallery change that must not move files while another build runs).
    ``cluster`` (``tcp://scheduler:8786`` or ``local:N``) embeds on a Dask cluster in shards of ``shard_size``
    (``indexer.cluster``); ``ship_bytes`` sends the files' bytes instead of their paths.
    """
    start = time.perf_counter()
    report = BuildReport()
    with contextlib.nullcontext() if lock_held else build_lock(index_dir):
        model = load_model(weights)
        fingerprint = model_fingerprint(model)
        descriptor = descriptor_of(model)
        width = descriptor.width(model)
        try:
            old = load_index(index_dir)
        except IndexFilesError:
            if not rebuild:
                raise
            old = None
        if old is not None and not rebuild:
            if old.manifest.get("model") != fingerprint:
                built = old.manifest.get("model", {}).get("name", "another model")
                raise BuildError(f"the index was built with {built} and this run uses {fingerprint['name']}; "
                                 "features cannot be mixed: pass --rebuild to re-embed everything")
            mismatch = descriptor_mismatch(old.manifest, model)
            if mismatch:
                raise BuildError(mismatch)
        old_files = {} if old is None or rebuild else old.files
        known: dict[str, np.ndarray] = {}
        # Descriptors and colours travel as one row (indexer.colour.with_colour); an index made before colours,
        # or with other ones, is embedded again.
        if old is not None and not rebuild and old.manifest.get("colour") == colour.VERSION and old.has_colours:
            rows = np.concatenate([old.features, old.colours_of(np.arange(len(old)))], axis=1)
            for row, path in enumerate(old.paths):
                if path in old_files:
                    known[old_files[path]["sha256"]] = rows[row]

        entries, skipped = scan(images_dir)
        report.skipped.extend(skipped)
        hashed: list[tuple[FileEntry, str]] = []
        for entry in entries:
            prev = old_files.get(entry.path)
            if prev and prev["size"] == entry.size and prev["mtime_ns"] == entry.mtime_ns:
                hashed.append((entry, prev["sha256"]))
                continue
            try:
                hashed.append((entry, sha256_file(os.path.join(images_dir, entry.path))))
            except OSError as e:
                report.skipped.append(Skipped(entry.path, f"cannot read: {e.strerror}"))

        first_path: dict[str, str] = {}
        id_owner: dict[int, str] = {}
        for entry, sha in hashed:
            owner = id_owner.setdefault(image_id(entry.path), entry.path)
            if owner != entry.path:  # two paths, one 53-bit id: keep the first, never confuse them
                report.skipped.append(Skipped(entry.path, f"its id equals that of {owner}; rename the file"))
            elif sha in first_path:
                report.duplicates.append((entry.path, first_path[sha]))
            else:
                first_path[sha] = entry.path

        work = WorkCache(index_dir, {"model": fingerprint, "descriptor": descriptor.to_dict(), "colour": colour.VERSION})
        resumed = work.load()
        todo = [(sha, os.path.join(images_dir, path)) for sha, path in first_path.items()
                if sha not in known and sha not in resumed]
        report.reused = len(first_path) - len(todo)
        known.update(resumed)
        failed: set[str] = set()
        from tqdm import tqdm
        with tqdm(total=len(todo), unit="img", desc="embedding", disable=not progress or not todo) as bar, \
                _embedder(cluster, todo, weights, model, descriptor, embed, batch_size, workers, max_pixels, ship_bytes,
                          shard_size, bar) as stream:
            for keys, features, failures in stream:
                if keys:
                    work.add(keys, features)
                    known.update(zip(keys, features))
                for key, reason in failures:
                    report.skipped.append(Skipped(first_path[key], reason))
                    failed.add(first_path[key])
                report.embedded += len(keys)
                bar.update(len(keys) + len(failures))
                if on_progress is not None:
                    on_progress(bar.n, len(todo))

        gps = bool((backend or {}).get("SHOW_GPS"))
        files = {e.path: {"size": e.size, "mtime_ns": e.mtime_ns, "sha256": sha,
                          "meta": _metadata(images_dir, e, old_files.get(e.path), gps)} for e, sha in hashed}
        paths = [p for sha, p in first_path.items() if p not in failed and sha in known]
        paths.sort()
        rows = np.stack([known[files[p]["sha256"]] for p in paths]) if paths else np.empty((0, width + colour.DIM))
        features, colours = colour.split(rows, width)
        kept = set(paths)
        dup_ok = [(p, q) for p, q in report.duplicates if q in kept]
        report.duplicates = dup_ok
        manifest = {
            "version": 1,
            "ids": ID_SCHEME,
            "vector_backend": (backend or {}).get("VECTOR_BACKEND", "numpy"),
            "model": fingerprint,
            "descriptor": descriptor.to_dict(),
            "colour": colour.VERSION,
            "images_dir": os.path.abspath(images_dir),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": {p: info for p, info in files.items() if p not in failed},
            "duplicates": dict(dup_ok),
            "skipped": {f.path: f.reason for f in report.skipped},
        }
        report.removed = len(set(old.paths) - kept) if old is not None else 0
        # Paths whose content is new to the previous index: the backends that keep state re-upload these.
        fresh = {p for p in paths if old_files.get(p, {}).get("sha256") != files[p]["sha256"]}
        report.index_path = save_index(index_dir, GalleryIndex.single(features, paths, manifest, colours),
                                       extra=lambda folder: build_for_generation(backend or {}, folder, paths,
                                                                                 features, fresh))
        work.clear()
        report.images = len(paths)
    report.seconds = time.perf_counter() - start
    _write_log(log_path or os.path.join(index_dir, "build.log"), report)
    return report


def _metadata(images_dir: str, entry: FileEntry, previous: dict | None, gps: bool) -> dict:
    """The file's EXIF facts: the previous build's when the file did not change and the position setting
    agrees with them (with SHOW_GPS on, files without a position are read again: a header read is cheap)."""
    if previous and (previous["size"], previous["mtime_ns"]) == (entry.size, entry.mtime_ns) and "meta" in previous \
            and ("latitude" in previous["meta"]) == gps:
        return previous["meta"]
    return read_metadata(os.path.join(images_dir, entry.path), gps=gps)


@contextlib.contextmanager
def _embedder(cluster, todo, weights, model, descriptor, embed, batch_size, workers, max_pixels, ship_bytes, shard_size,
              bar):
    """The stream of embedded batches: local threads and the model, or shards on a Dask cluster."""
    if cluster is None or not todo:
        yield embed_stream(colour.with_colour(embed or functools.partial(embed_pixels, model)),
                           descriptor.width(model) + colour.DIM, todo, batch_size, workers, max_pixels, descriptor)
        return
    from .cluster import connect, embed_on_cluster, live_workers
    client, local = connect(cluster)
    try:
        def stream():
            for part in embed_on_cluster(client, weights, todo, shard_size=shard_size, batch_size=batch_size,
                                         max_pixels=max_pixels, ship_bytes=ship_bytes):
                bar.set_postfix(workers=live_workers(client))
                yield part
        yield stream()
    finally:
        client.close()
        if local is not None:
            local.close()


def _write_log(path: str, report: BuildReport) -> None:
    with open(path, "a") as f:
        f.write(f"--- build at {time.strftime('%Y-%m-%d %H:%M:%S')}\n{report.summary()}\n")
