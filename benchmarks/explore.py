"""Duplicates, groups and the map on large synthetic galleries: time and peak memory.

    python benchmarks/explore.py [--sizes 10000 100000 1000000] [--tasks duplicates groups map]

Vectors come from the realistic generator of benchmarks/vector_index.py (384-d). Each task at each size runs
in a process of its own; its memory is the peak resident size while it runs (VmHWM, reset when it starts)
above what was resident before (the interpreter, the libraries and the vectors, whose size is shown apart).
Duplicates go through FAISS HNSW as the app does with VECTOR_BACKEND=faiss: the graph's build is timed apart
(an app has it already), then every picture asks for its 10 nearest (``indexer.explore.neighbour_edges``)
and the groups are formed at 0.95. Groups: mini-batch k-means with the app's rule for k. Map: PCA to 2-D.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from vector_index import real_embeddings, rss_mb, synthesize  # noqa: E402

from indexer.config import load_settings  # noqa: E402
from indexer.explore import (  # noqa: E402
    choose_k,
    duplicate_groups,
    minibatch_kmeans,
    neighbour_edges,
    pca_2d,
)


def peak_mb() -> float:
    return rss_mb("VmHWM")


def reset_peak() -> None:
    """Start the peak over from what is resident now (Linux: writing 5 to clear_refs resets VmHWM)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def one(task: str, n: int, base_path: str) -> dict:
    """Run ``task`` on ``n`` vectors made from the real embeddings in ``base_path``, in this process."""
    vectors = synthesize(np.load(base_path), n, seed=2)
    reset_peak()  # the generator's temporaries are not the task's
    before_mb = rss_mb()  # the interpreter, the libraries and the vectors
    ids = np.arange(n, dtype=np.int64)
    out: dict = {"task": task, "n": n}
    start = time.perf_counter()
    if task == "duplicates":
        from indexer.vector_index.faiss_index import FaissIndex
        index = FaissIndex(384, "hnsw", {"hnsw_m": 32, "ef_construction": 200, "ef_search": 128})
        index.add(ids, vectors)
        out["build_s"] = time.perf_counter() - start
        start = time.perf_counter()
        a, b, s = neighbour_edges(vectors, ids, index, k=10, floor=0.8)
        groups = duplicate_groups(n, a, b, s, 0.95)
        out.update(edges=len(a), groups=len(groups), in_groups=sum(len(g) for g in groups))
    elif task == "groups":
        k = choose_k(n)
        _, labels = minibatch_kmeans(vectors, k, seed=0)
        out.update(k=k, largest=int(np.bincount(labels).max()))
    else:
        pca_2d(vectors)
    out["seconds"] = time.perf_counter() - start
    out["peak_mb"] = peak_mb() - before_mb
    out["vectors_mb"] = vectors.nbytes / 2**20
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--tasks", nargs="+", default=["duplicates", "groups", "map"])
    parser.add_argument("--one", nargs=3, metavar=("TASK", "N", "BASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.one[2])))
        return
    base_path = os.path.join(tempfile.mkdtemp(prefix="explore-"), "base.npy")
    np.save(base_path, real_embeddings(load_settings()["WEIGHTS"], 384)[0])  # the model stays out of the children
    print("| N | task | seconds | graph build s (apart) | peak memory MB of the task (the vectors) | result |")
    print("| --- | --- | --- | --- | --- | --- |", flush=True)
    for n in args.sizes:
        for task in args.tasks:
            done = subprocess.run([sys.executable, __file__, "--one", task, str(n), base_path], capture_output=True,
                                  text=True, check=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            result = (f"{r['groups']} groups, {r['in_groups']} pictures, {r['edges']} edges" if task == "duplicates"
                      else f"k={r['k']}, largest {r['largest']}" if task == "groups" else "")
            build = f"{r['build_s']:.1f}" if "build_s" in r else ""
            print(f"| {n:,} | {task} | {r['seconds']:.1f} | {build} | {r['peak_mb']:.0f} ({r['vectors_mb']:.0f}) | "
                  f"{result} |", flush=True)


if __name__ == "__main__":
    main()
