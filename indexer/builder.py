"""Embedding a folder of images into the gallery index: incremental, resumable and tolerant of bad files."""
from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Mapping

import numpy as np

from dinov2_numpy import Dinov2, load_model
from dinov2_numpy.descriptor import descriptor_of

from . import clip_set, colour, no_op
from .config import BACKEND_DEFAULTS
from .embedding import descriptor_mismatch, embed_pixels, embed_stream, manifest_descriptor
from .file_facts import FileFacts
from .generations import COLOURS, FEATURES, GalleryIndex, IndexFilesError, load_index, save_index
from .ids import SCHEME as ID_SCHEME
from .options import BuildOptions
from .plan import Batches, Plan, Previous, embed_missing, plan_files, to_embed
from .scan import Skipped, scan
from .stored_rows import StoredRows
from .vector_index import CLIP_SET, build_for_generation
from .work_cache import WorkCache


class BuildError(RuntimeError):
    """A build that must not proceed (another build running, a model change without --rebuild...)."""


class BuildLocked(BuildError):
    """Another build holds the index folder."""


class ModelChanged(BuildError):
    """The index was built with other weights or another descriptor (``index``: that index; ``change``:
    what differs, in a few words)."""

    def __init__(self, message: str, index: GalleryIndex, change: str):
        super().__init__(message)
        self.index, self.change = index, change


@dataclass
class BuildReport:
    images: int = 0  # rows in the new index
    embedded: int = 0
    reused: int = 0
    removed: int = 0
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (path, same content as)
    skipped: list[Skipped] = field(default_factory=list)
    decoded: Counter = field(default_factory=Counter)  # how the embedded files were read (Picture.source)
    seconds: float = 0.0
    index_path: str = ""
    rebuilt_because: str = ""  # the previous index's model or descriptor, when it differed and was replaced
    clip: str = ""  # the CLIP weights' name, when the build keeps CLIP embeddings too
    clip_embedded: int = 0

    def summary(self) -> str:
        lines = [f"embedded everything again: {self.rebuilt_because}"] if self.rebuilt_because else []
        lines += [f"{self.images} images in the index ({self.embedded} embedded, {self.reused} reused, "
                 f"{self.removed} removed) in {self.seconds:.1f}s -> {self.index_path}"]
        if self.clip:
            lines.append(f"CLIP ({self.clip}): {self.clip_embedded} embedded, the others kept")
        if self.decoded:
            lines.append("read as: " + ", ".join(f"{n} {how}" for how, n in sorted(self.decoded.items())))
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


def build_gallery(images_dir: str, index_dir: str, weights: str, options: BuildOptions | None = None,
                  **fields: Any) -> BuildReport:
    """Bring the index in ``index_dir`` up to date with the images below ``images_dir``: plan (what changed
    since the previous index), embed what no stored or resumed embedding covers, publish a new generation.

    ``options`` (``indexer.options.BuildOptions``) says how; keyword arguments set single fields of it
    (``progress=False``). With ``cluster`` the embedding runs on a Dask cluster (``indexer.cluster``).
    """
    options = BuildOptions.merged(options, fields)
    start = time.perf_counter()
    with contextlib.nullcontext() if options.lock_held else build_lock(index_dir):
        model = load_model(weights)
        fed = no_op.new_digest(_depends_on(images_dir, options, model))
        scanned = scan(images_dir, fed)
        digest = no_op.scan_digest(fed, scanned[1])
        report = None if options.rebuild else _unchanged(index_dir, digest)
        if report is None:
            report = _build(images_dir, index_dir, weights, options, model, scanned, digest)
    report.seconds = time.perf_counter() - start
    _write_log(options.log_path or os.path.join(index_dir, "build.log"), report)
    return report


def _build(images_dir: str, index_dir: str, weights: str, options: BuildOptions, model: Dinov2,
           scanned: tuple[list, list[Skipped]], digest: str) -> BuildReport:
    try:
        old = _previous_index(index_dir, model, options.rebuild)
        changed = ""
    except ModelChanged as e:
        if not options.rebuild_on_model_change:
            raise
        options, old, changed = replace(options, rebuild=True), e.index, e.change
    build = _Build(images_dir, index_dir, weights, options, model, old, digest=digest)
    build.report.rebuilt_because = changed
    plan = build.plan(scanned)
    if not build.keep_if_unchanged(plan):
        rows = build.embed(plan)
        build.publish(plan, rows, build.embed_clip(plan))
    return build.report


def _depends_on(images_dir: str, options: BuildOptions, model: Dinov2) -> dict:
    """What a build's result depends on besides the files: the scan digest covers these too."""
    return {"model": model_fingerprint(model), "descriptor": descriptor_of(model).to_dict(), "colour": colour.VERSION,
            "ids": ID_SCHEME, "images_dir": os.path.abspath(images_dir), "gps": options.gps,
            "max_pixels": options.max_pixels,
            "backend": options.backend.get("VECTOR_BACKEND", BACKEND_DEFAULTS["VECTOR_BACKEND"]),
            "clip": clip_set.fingerprint(clip_set.load_clip(options.clip_weights)) if options.clip_weights else None}


def _unchanged(index_dir: str, digest: str) -> BuildReport | None:
    """The report of a build with nothing to do, when the current generation's stamp says so (``no_op``)."""
    stamp = no_op.stamped(index_dir, digest)
    if stamp is None:
        return None
    return BuildReport(images=stamp["images"], reused=stamp["images"], index_path=stamp["location"],
                       duplicates=[tuple(d) for d in stamp["duplicates"]],
                       skipped=[Skipped(p, r) for p, r in stamp["skipped"]])


def _previous_index(index_dir: str, model: Dinov2, rebuild: bool) -> GalleryIndex | None:
    """The index this build replaces (None when there is none, or it is unreadable and ``rebuild`` is set);
    ModelChanged when it was built with another model or descriptor and ``rebuild`` is not set."""
    try:
        old = load_index(index_dir)
    except IndexFilesError:
        if not rebuild:
            raise
        return None
    if old is not None and not rebuild:
        fingerprint = model_fingerprint(model)
        if old.manifest.get("model") != fingerprint:
            built = old.manifest.get("model", {}).get("name", "another model")
            raise ModelChanged(f"the index was built with {built} and this run uses {fingerprint['name']}; "
                               "features cannot be mixed: pass --rebuild to re-embed everything", old,
                               f"the index was made with {built}, the weights are {fingerprint['name']}")
        mismatch = descriptor_mismatch(old.manifest, model)
        if mismatch:
            raise ModelChanged(mismatch, old, f"the index was made with the descriptor "
                               f"'{manifest_descriptor(old.manifest).label()}', the weights use "
                               f"'{descriptor_of(model).label()}'")
    return old


@dataclass
class _Build:
    """One build as it goes: ``plan``, ``embed``, ``publish``, filling ``report``."""

    images_dir: str
    index_dir: str
    weights: str
    options: BuildOptions
    model: Dinov2
    old: GalleryIndex | None  # the index replaced
    report: BuildReport = field(default_factory=BuildReport)
    digest: str = ""  # of the scan and settings (``no_op``), stamped on what this build publishes

    def __post_init__(self) -> None:
        self.descriptor = descriptor_of(self.model)
        self.width = self.descriptor.width(self.model)  # of an embedding; a row adds its colour histogram
        # Hashes, file facts and embeddings are reused from the replaced index, unless everything is rebuilt.
        self.previous = None if self.options.rebuild else self.old
        self.failed: set[str] = set()  # paths whose pictures could not be embedded
        self.work = WorkCache(self.index_dir, {"model": model_fingerprint(self.model),
                                               "descriptor": self.descriptor.to_dict(), "colour": colour.VERSION})
        self.clip = clip_set.load_clip(self.options.clip_weights) if self.options.clip_weights else None
        self.clip_fresh: set[str] = set()  # contents whose CLIP embedding this build made
        self.clip_work: WorkCache | None = None

    def plan(self, scanned: tuple[list, list[Skipped]] | None = None) -> Plan:
        """The plan of every file below the images folder (``scanned``: what ``scan`` found there) against
        the replaced index."""
        entries, skipped = scanned or scan(self.images_dir)
        plan = plan_files(self.images_dir, entries, Previous.files(self.previous.files if self.previous else {}),
                          self.options.gps)
        self.report.skipped = skipped + plan.skipped
        self.report.duplicates = list(plan.duplicates)
        return plan

    def keep_if_unchanged(self, plan: Plan) -> bool:
        """When the replaced index already is what this build would publish, report it and publish nothing."""
        paths = sorted(plan.contents.values())
        if self.previous is None or not no_op.is_no_op(self.previous, self._manifest(plan.files), paths):
            return False
        if self.clip is not None and not self.previous.has_clip:  # CLIP switched on: its vectors to make
            return False
        self.report.images = self.report.reused = len(paths)
        self.report.index_path = self.previous.location or ""
        self._stamp(self.report.index_path)  # the next build with nothing to do need not read the manifest
        self._clear_work()
        return True

    def _stamp(self, folder: str) -> None:
        if self.digest and folder and not self.failed and no_op.applies(self.options.backend):
            no_op.write_stamp(folder, self.digest, self.report.images, self.report.duplicates, self.report.skipped)

    def embed(self, plan: Plan) -> StoredRows:
        """Rows (embedding and colour histogram) by content hash: the replaced index's, those an interrupted
        build left in the work cache, and the missing ones embedded now (each batch cached as it comes)."""
        rows = StoredRows(self.previous, self.width)
        rows.update(self.work.load())
        todo = to_embed(self.images_dir, plan.contents, rows)
        self.report.reused = len(plan.contents) - len(todo)
        from tqdm import tqdm
        quiet = not self.options.progress or not todo
        with tqdm(total=len(todo), unit="img", desc="embedding", disable=quiet) as bar, \
                _embedder(self, todo, bar) as batches:
            def on_batch(keys: list[str], embeddings: np.ndarray, failures: list[tuple[str, str]]) -> None:
                if keys:
                    self.work.add(keys, embeddings)
                self.report.embedded += len(keys)
                bar.update(len(keys) + len(failures))
                if self.options.on_progress is not None:
                    self.options.on_progress(bar.n, len(todo))

            failed = embed_missing(batches, rows, on_batch)
        self.report.skipped += [Skipped(plan.contents[key], reason) for key, reason in failed.items()]
        self.failed = {plan.contents[key] for key in failed}
        return rows

    def embed_clip(self, plan: Plan) -> dict[str, np.ndarray] | None:
        """CLIP embeddings by content hash (None when CLIP is off): the replaced index's, made with the same
        CLIP weights, those an interrupted build left, and the missing ones embedded now with CLIP alone."""
        if self.clip is None:
            return None
        self.report.clip = self.clip.name
        work = WorkCache(self.index_dir, {"clip": clip_set.fingerprint(self.clip)}, clip_set.WORK_FOLDER)
        vectors = clip_set.stored(self.previous, self.clip)
        vectors.update(work.load())
        contents = {sha: p for sha, p in plan.contents.items() if p not in self.failed}
        todo = to_embed(self.images_dir, contents, vectors)
        from tqdm import tqdm
        with tqdm(total=len(todo), unit="img", desc="CLIP", disable=not self.options.progress or not todo) as bar, \
                _embedder(self, todo, bar, clip=True) as batches:
            def on_batch(keys: list[str], embeddings: np.ndarray, failures: list[tuple[str, str]]) -> None:
                if keys:
                    work.add(keys, embeddings)
                self.clip_fresh.update(keys)
                bar.update(len(keys) + len(failures))

            embed_missing(batches, vectors, on_batch)
        self.report.clip_embedded = len(self.clip_fresh)
        self.clip_work = work
        return vectors

    def publish(self, plan: Plan, rows: StoredRows, clip: dict[str, np.ndarray] | None = None) -> None:
        """Write the new generation: every planned path with a row (and its CLIP embedding, when ``clip``
        holds them), sorted, and the manifest. The plan's facts are spent: once they are the manifest's
        columns the dicts are let go (at a million pictures 1.7 GB, which a FAISS graph would sit beside)."""
        paths = sorted(p for sha, p in plan.contents.items() if p not in self.failed and sha in rows)
        files = {p: info for p, info in plan.files.items() if p not in self.failed}
        shas = [files[p]["sha256"] for p in paths]
        embeddings, colours = rows.write(shas, os.path.join(self.work.folder, "publish"))
        kept = set(paths)
        self.report.duplicates = [(p, q) for p, q in self.report.duplicates if q in kept]
        manifest = self._manifest(FileFacts.from_dicts(paths, files))
        # Paths whose content is new to the previous index: the backends that keep state re-upload these.
        fresh = {p for p, sha in zip(paths, shas) if not self._held_before(p, sha)}
        clip_rows = self._clip_rows(shas, clip)
        renewed = fresh | {p for p, sha in zip(paths, shas) if sha in self.clip_fresh}
        self.report.images = len(paths)
        plan.spend()
        del files, shas

        def extra(folder: str) -> None:
            self._backends(folder, paths, embeddings, clip_rows, fresh, renewed)
            self._stamp(folder)

        self.report.index_path = save_index(
            self.index_dir, GalleryIndex.single(embeddings, paths, manifest, colours, clip_rows), extra=extra,
            written={FEATURES: embeddings.filename, COLOURS: colours.filename})
        self._clear_work()
        self.report.removed = len(set(self.old.paths) - kept) if self.old is not None else 0

    def _held_before(self, path: str, sha: str) -> bool:
        """Whether the replaced index held this content under this path."""
        facts = self.previous.facts if self.previous is not None else None
        row = facts.row_of(path) if facts is not None else None
        return row is not None and facts.has(row) and facts.sha256(row) == sha

    def _clip_rows(self, shas: list[str], clip: dict[str, np.ndarray] | None) -> np.ndarray | None:
        """The CLIP rows of the contents ``shas`` from ``clip`` (content hash -> embedding), None when CLIP
        is off."""
        return None if clip is None else clip_set.matrix(self.clip, shas, clip)

    def _clear_work(self) -> None:
        """Forget what an interrupted build would have resumed from: the generation holds it now."""
        self.work.clear()
        if self.clip_work is not None:
            self.clip_work.clear()

    def _backends(self, folder: str, paths: list[str], embeddings: np.ndarray, clip_rows: np.ndarray | None,
                  fresh: set[str], renewed: set[str]) -> None:
        """The configured backend for the new generation: its descriptors, and its CLIP set when kept (where
        Milvus re-uploads ``renewed``: the rows whose content or CLIP embedding this build made)."""
        build_for_generation(self.options.backend, folder, paths, embeddings, fresh)
        if clip_rows is not None:
            build_for_generation(self.options.backend, folder, paths, clip_rows, renewed, vector_set=CLIP_SET)

    def _manifest(self, files: Mapping[str, dict]) -> dict:
        return {
            "version": 1,
            "ids": ID_SCHEME,
            "vector_backend": self.options.backend.get("VECTOR_BACKEND", BACKEND_DEFAULTS["VECTOR_BACKEND"]),
            "model": model_fingerprint(self.model),
            "descriptor": self.descriptor.to_dict(),
            "colour": colour.VERSION,
            "images_dir": os.path.abspath(self.images_dir),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": files,
            "duplicates": dict(self.report.duplicates),
            "skipped": {f.path: f.reason for f in self.report.skipped},
            **({clip_set.MANIFEST_KEY: clip_set.fingerprint(self.clip)} if self.clip is not None else {}),
        }


@contextlib.contextmanager
def _embedder(build: _Build, todo: list[tuple[str, str]], bar, clip: bool = False) -> Iterator[Batches]:
    """The batches of embedded rows (with ``clip``, of CLIP embeddings): local threads and the model, or
    shards on a Dask cluster."""
    options = build.options
    if clip and (options.cluster is None or not todo):
        yield clip_set.stream(build.clip, todo, options)
        return
    if options.cluster is None or not todo:
        yield embed_stream(colour.with_colour(options.embed or functools.partial(embed_pixels, build.model)),
                           build.width + colour.DIM, todo, options.batch_size, options.workers, options.max_pixels,
                           build.descriptor, build.report.decoded)
        return
    from .cluster import connect, embed_on_cluster, environment_kept, live_workers
    with environment_kept():
        client, local = connect(options.cluster)
        try:
            def stream():
                for part in embed_on_cluster(client, options.clip_weights if clip else build.weights, todo,
                                             shard_size=options.shard_size, batch_size=options.batch_size,
                                             max_pixels=options.max_pixels, ship_bytes=options.ship_bytes,
                                             task=clip_set.embed_shard if clip else None):
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
