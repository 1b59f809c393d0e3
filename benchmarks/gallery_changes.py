"""What one gallery change costs through the admin path, at 10k, 100k and 1M rows, for each vector backend;
and a real Milvus server's HNSW search at those sizes.

    python benchmarks/gallery_changes.py [--sizes 10000 100000 1000000] [--backends numpy faiss milvus-server]

The galleries are synthetic rows (the realistic generator of benchmarks/vector_index.py); the images added are
real photos (the demo originals and crops of them), embedded by the real model. Per size and backend:
- "full write": publishing the whole generation once (features, paths, manifest and the backend's own build):
  what every upload and delete cost before changes became segments. It is the reference of the same run.
- "add 1" / "add 100" / "delete 1": ``add_images`` and ``delete_images`` as the admin API calls them, holding
  the lock, journaling, moving files, decoding, embedding, publishing. "of which not the model" takes out the
  time of the change's own forward passes (timed inside the same call): the target is "add 1 at 1M <= 1 s
  plus its embedding".
- "reload": what a worker pays to pick up the new generation on its next search (warm: segments cached).
- "compaction": folding the segments back into one (in the background in the app).
The Milvus server (PyPI package ``milvus``) is started by this script in a temporary folder; its rows also get
single-query p50/p95 and recall@10 against exact search, as the app searches a generation older than
``FRESH_SECONDS`` (bounded consistency), and the p50 while a generation is fresh (strong consistency).
"""
from __future__ import annotations

import argparse
import functools
import io
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from vector_index import query_stats, real_embeddings, synthesize  # noqa: E402

from app.services.engine import Engine  # noqa: E402
from app.services.gallery_changes import add_images, delete_images  # noqa: E402
from dinov2_numpy import load_model  # noqa: E402
from indexer.builder import build_lock  # noqa: E402
from indexer.changes import compact  # noqa: E402
from indexer.config import load_settings  # noqa: E402
from indexer.embedding import embed_pixels  # noqa: E402
from indexer.evaluate import distinct_photos  # noqa: E402
from indexer.generations import GalleryIndex, load_index, save_index  # noqa: E402
from indexer.ids import SCHEME, image_id, image_ids  # noqa: E402
from indexer.vector_index import (  # noqa: E402
    NumpyIndex,
    build_for_generation,
    open_backend,
    open_for_generation,
)


def real_photos(count: int) -> list[bytes]:
    """``count`` distinct JPEGs: the demo originals, then crops of them."""
    out = []
    for image in distinct_photos(count, step=7):
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def write_generation(cfg: dict, vectors: np.ndarray) -> float:
    """Publish ``vectors`` as a whole generation with the backend's build; seconds."""
    paths = [f"synthetic/{i:07d}.jpg" for i in range(len(vectors))]
    files = {p: {"size": 1, "mtime_ns": 1, "sha256": f"{i:064x}"} for i, p in enumerate(paths)}
    manifest = {"version": 1, "ids": SCHEME, "files": files, "skipped": {}, "duplicates": {}}
    start = time.perf_counter()
    save_index(cfg["INDEX_DIR"], GalleryIndex.single(vectors, paths, manifest),
               extra=lambda folder: build_for_generation(cfg, folder, paths, vectors, fresh=set(paths)))
    return time.perf_counter() - start


def reload_seconds(cfg: dict) -> float:
    start = time.perf_counter()
    open_for_generation(cfg, load_index(cfg["INDEX_DIR"])).close()
    return time.perf_counter() - start


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def wait_for_milvus_index(cfg: dict, timeout: float = 1800) -> float:
    """Flush and wait until the server's HNSW graph covers every row; seconds."""
    from pymilvus import MilvusClient
    client = MilvusClient(cfg["MILVUS_URI"])
    start = time.perf_counter()
    client.flush(cfg["MILVUS_COLLECTION"])
    while time.perf_counter() - start < timeout:
        info = client.describe_index(cfg["MILVUS_COLLECTION"], "vector")
        if int(info.get("pending_index_rows", 0)) == 0 and int(info.get("indexed_rows", 0)) >= int(info.get("total_rows", 1)):
            break
        time.sleep(1)
    client.close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--backends", nargs="+", default=["numpy", "faiss", "milvus-server"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    settings = load_settings()
    model = load_model(settings["WEIGHTS"])
    forward = functools.partial(embed_pixels, model)
    spent = [0.0]

    def embed(pixels):
        """The model, timed: a change's own embedding time is taken out of its total."""
        start = time.perf_counter()
        try:
            return forward(pixels)
        finally:
            spent[0] += time.perf_counter() - start

    def change_seconds(fn) -> tuple[float, float]:
        """(total, total without the model's forward passes) of one change."""
        spent[0] = 0.0
        total = timed(fn)
        return total, total - spent[0]
    photos = real_photos(100 + 2 * args.repeats)
    base, _ = real_embeddings(settings["WEIGHTS"], model.dim)
    queries = synthesize(base, args.queries, seed=1)
    tmp = tempfile.mkdtemp(prefix="bench-changes-")
    server_uri = None
    if "milvus-server" in args.backends:
        from milvus import default_server
        default_server.set_base_dir(os.path.join(tmp, "milvus-server"))
        default_server.start()
        server_uri = f"http://127.0.0.1:{default_server.listen_port}"

    print("| N | backend | full write s (before) | add 1 s | of which not the model | add 100 s | "
          "of which not the model | delete 1 s | reload s | compaction s | add 1 not the model / full write |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)
    search_rows = []
    for n in args.sizes:
        vectors = synthesize(base, n, seed=2)
        truth = NumpyIndex(model.dim, np.arange(n), vectors).search(queries, 10)[0]
        for backend in args.backends:
            name = backend.split("-")[0]
            folder = os.path.join(tmp, f"{backend}-{n}")
            cfg = {**settings, "INDEX_DIR": os.path.join(folder, "index"), "GALLERY_DIR": os.path.join(folder, "g"),
                   "VECTOR_BACKEND": name, "FAISS_INDEX": "hnsw", "MILVUS_URI": server_uri or "",
                   "MILVUS_COLLECTION": f"changes_{n}"}
            os.makedirs(cfg["GALLERY_DIR"])
            full = write_generation(cfg, vectors)
            if backend == "milvus-server":
                built = wait_for_milvus_index(cfg)
                ids = image_ids([f"synthetic/{i:07d}.jpg" for i in range(n)])
                steady = open_backend(cfg, model.dim, written_at=time.time() - 3600)
                fresh = open_backend(cfg, model.dim)
                search_rows.append((n, built, query_stats(steady, queries, ids[truth]),
                                    query_stats(fresh, queries[:20], ids[truth[:20]])))
                steady.close()
                fresh.close()
            reload_seconds(cfg)  # the first load reads the base; later ones find it cached
            changes = Engine(cfg)
            adds = [change_seconds(lambda: add_images(changes, [(f"p{i}.jpg", photos[100 + i], "jpg")], embed))
                    for i in range(args.repeats)]
            add1, add1_rest = statistics.median(a for a, _ in adds), statistics.median(r for _, r in adds)
            add100, add100_rest = change_seconds(
                lambda: add_images(changes, [(f"q{i}.jpg", b, "jpg") for i, b in enumerate(photos[:100])], embed))
            victims = [image_id(f"synthetic/{i:07d}.jpg") for i in range(args.repeats)]
            del1 = statistics.median(timed(lambda: delete_images(changes, [v])) for v in victims)
            reload = statistics.median(reload_seconds(cfg) for _ in range(args.repeats))
            with build_lock(cfg["INDEX_DIR"]):
                folded = timed(lambda: compact(cfg["INDEX_DIR"], cfg))
            print(f"| {n:,} | {backend} | {full:.2f} | {add1:.3f} | {add1_rest:.3f} | {add100:.2f} | "
                  f"{add100_rest:.2f} | {del1:.3f} | {reload:.3f} | {folded:.2f} | {add1_rest / full:.4f} |",
                  flush=True)
        del vectors
    if search_rows:
        print("\nMilvus server, HNSW (M=%d, efConstruction=%d, ef=%d):" % (
            settings["MILVUS_HNSW_M"], settings["MILVUS_EF_CONSTRUCTION"], settings["MILVUS_EF_SEARCH"]))
        print("| N | index ready after s | p50 ms | p95 ms | batched q/s | recall@10 | p50 ms while fresh (strong) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for n, built, s, f in search_rows:
            print(f"| {n:,} | {built:.0f} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} | {s['qps']:.0f} | {s['recall']:.3f} | "
                  f"{f['p50_ms']:.0f} |")
    if server_uri:
        default_server.stop()


if __name__ == "__main__":
    main()
