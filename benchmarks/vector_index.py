"""Vector-index backends on realistic vectors: build time, memory, latency, throughput and recall@10.

    python benchmarks/vector_index.py [--sizes 10000 100000 1000000] [--dims 384 768] [--queries 200]

Vectors are real DINOv2 token embeddings of the demo photos (384-d: cls and patch tokens; 768-d: a patch token
beside its image's cls token), mixed pairwise and perturbed into N distinct points; queries are made the same
way and are not in the set. The perturbation has the real embeddings' own covariance, so the set keeps their
low effective dimension (printed to stderr as a participation ratio); --isotropic-noise adds white noise
instead, a stress set whose dimension is mostly noise. Recall@10 is against exact search in the same run.
Milvus Lite is measured at 10k only: it is meant for tests and single machines, a Milvus server for more.
FAISS parameters come from the environment as in the app (FAISS_HNSW_M=48 python benchmarks/vector_index.py);
HNSW is measured at several efSearch values.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dinov2_numpy import load_model, normalize_rows, preprocess  # noqa: E402
from indexer.config import load_settings  # noqa: E402
from indexer.evaluate import benchmark_originals  # noqa: E402
from indexer.vector_index import NumpyIndex, open_backend  # noqa: E402

NOISE_TERMS = 8


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory in MB (``VmHWM``: its peak so far)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def real_embeddings(weights: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Real token embeddings of the demo photos: every image's cls token and each of its 256 patch tokens
    (384-d), or each patch token beside its image's cls token (768-d): about 10,000 distinct real vectors.
    Also returns the images' own (cls) embeddings, what a gallery holds."""
    model = load_model(weights)
    out, images = [], []
    for path in benchmark_originals():
        o = model(preprocess(path)[None])
        tokens = np.concatenate([o.cls_token, o.patch_tokens[0]])
        if dim != model.dim:
            tokens = np.concatenate([np.repeat(o.cls_token, len(tokens), axis=0), tokens], axis=1)
        out.append(tokens)
        images.append(o.cls_token[0])
    return normalize_rows(np.concatenate(out)), normalize_rows(np.array(images))


def synthesize(base: np.ndarray, n: int, seed: int, isotropic: bool = False) -> np.ndarray:
    """Points between pairs of real embeddings, with noise: clustered like a real gallery, none identical.

    The noise is a random Gaussian mix of centred real embeddings, which gives it exactly their covariance:
    spread along the directions real images vary in. ``isotropic`` uses white noise (0.05 a coordinate, as
    strong as the signal itself at 384-d) in directions no real image takes.
    """
    rng = np.random.default_rng(seed)
    centred = base - base.mean(axis=0)
    out = np.empty((n, base.shape[1]), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        i, j = rng.integers(0, len(base), m), rng.integers(0, len(base), m)
        a = rng.beta(5, 1, m).astype(np.float32)[:, None]
        if isotropic:
            noise = rng.normal(0, 0.05, (m, base.shape[1])).astype(np.float32)
        else:
            mix = rng.normal(0, 1 / np.sqrt(NOISE_TERMS), (m, NOISE_TERMS)).astype(np.float32)
            noise = np.einsum("mk,mkd->md", mix, centred[rng.integers(0, len(base), (m, NOISE_TERMS))])
        chunk = a * base[i] + (1 - a) * base[j] + noise
        out[start:start + m] = normalize_rows(chunk)
    return out


def effective_dimension(x: np.ndarray) -> float:
    """Participation ratio of the principal-component variances, (sum λ)^2 / sum λ^2, on up to 20k rows."""
    x = x[:20_000] - x[:20_000].mean(axis=0)
    var = np.linalg.svd(x, compute_uv=False) ** 2
    return float(var.sum() ** 2 / (var ** 2).sum())


def query_stats(index, queries: np.ndarray, truth: np.ndarray) -> dict:
    """p50/p95 single-query latency, batched throughput and recall@10 against ``truth``."""
    index.search(queries[:1], 10)
    latencies = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None], 10)
        latencies.append((time.perf_counter() - t) * 1e3)
    t = time.perf_counter()
    found = np.concatenate([index.search(queries[s:s + 64], 10)[0] for s in range(0, len(queries), 64)])
    qps = len(queries) / (time.perf_counter() - t)
    recall = np.mean([len(set(f) & set(g)) / 10 for f, g in zip(found.tolist(), truth.tolist())])
    return {"p50_ms": float(np.percentile(latencies, 50)), "p95_ms": float(np.percentile(latencies, 95)),
            "qps": qps, "recall": recall}


def measure(name: str, cfg: dict, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> list[dict]:
    """One row per setting: HNSW is measured at several efSearch values over the same graph."""
    ids = np.arange(len(vectors), dtype=np.int64)
    gc.collect()
    # Hand memory freed by the previous backend back to the OS, or this one reuses it and seems to need none.
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = rss_mb()
    start = time.perf_counter()
    index = NumpyIndex(vectors.shape[1], ids, vectors) if name == "numpy" else open_backend(cfg, vectors.shape[1])
    if name != "numpy":
        index.add(ids, vectors)
    built = {"build_s": time.perf_counter() - start,
             "memory_mb": rss_mb() - before if name != "numpy" else vectors.nbytes / 2**20}
    rows = []
    for ef in (64, 128, 256, 512) if name == "faiss" and cfg["FAISS_INDEX"] == "hnsw" else (None,):
        if ef is not None:
            index.params["ef_search"] = ef
        rows.append(dict(built, setting=f" ef={ef}" if ef else "", **query_stats(index, queries, truth)))
    index.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 768])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--isotropic-noise", action="store_true", help="white noise instead of the real covariance")
    parser.add_argument("--backends", nargs="+", default=["numpy", "faiss-hnsw", "faiss-ivf", "milvus"])
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    settings = load_settings()
    print("| N | D | backend | build s | memory MB | p50 ms | p95 ms | batched q/s | recall@10 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)
    for dim in args.dims:
        base, images = real_embeddings(settings["WEIGHTS"], dim)
        real = f"real tokens {effective_dimension(base):.1f}, real images {effective_dimension(images):.1f}"
        queries = synthesize(base, args.queries, seed=1, isotropic=args.isotropic_noise)
        for n in args.sizes:
            vectors = synthesize(base, n, seed=2, isotropic=args.isotropic_noise)
            print(f"N={n:,} D={dim}: effective dimension {effective_dimension(vectors):.1f} ({real})",
                  file=sys.stderr, flush=True)
            truth = NumpyIndex(dim, np.arange(n), vectors).search(queries, 10)[0]
            for backend in args.backends:
                if backend == "milvus" and n > 10_000:
                    continue
                name, _, kind = backend.partition("-")
                cfg = {**settings, "VECTOR_BACKEND": name, "FAISS_INDEX": kind or "hnsw",
                       "MILVUS_URI": os.path.join(tmp, f"bench-{dim}-{n}.db"), "MILVUS_COLLECTION": "bench"}
                for r in measure(name, cfg, vectors, queries, truth):
                    print(f"| {n:,} | {dim} | {backend}{r['setting']} | {r['build_s']:.1f} | {r['memory_mb']:.0f} | "
                          f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['qps']:.0f} | {r['recall']:.3f} |", flush=True)
            del vectors
    from indexer.vector_index.milvus_index import release_local_servers
    release_local_servers()


if __name__ == "__main__":
    main()
