"""Duplicates, groups and the map on large synthetic galleries: time and peak memory.

    python benchmarks/explore.py [--sizes 10000 100000 1000000] [--tasks duplicates groups map]
    python benchmarks/explore.py --sizes 100000 --tasks latency

``duplicates`` is what the app does whatever its backend (``indexer.duplicate_job``: exact below 50k
pictures, the inverted file beyond, in a low-priority process with one BLAS thread); its memory is that
process's peak. Its recall is against exact search on 2,000 sampled pictures: of the pairs of 0.8 or more
among their 10 nearest (what the job keeps), of those of 0.95 or more, and how many of the latter end in one
group at 0.95; up to 100k the groups at 0.95 are also compared whole with exact all-pairs. ``duplicates-faiss``
is the earlier way, through the FAISS backend's graph.

Vectors come from the realistic generator of benchmarks/vector_index.py (384-d). Each task at each size runs
in a process of its own; its memory is the peak resident size while it runs (VmHWM, reset when it starts)
above what was resident before (the interpreter, the libraries and the vectors, whose size is shown apart).
``duplicates-faiss`` goes through FAISS HNSW: the graph's build is timed apart (an app has it already),
then every picture asks for its 10 nearest (``indexer.explore.neighbour_edges``) and the groups are formed at
0.95. Groups: mini-batch k-means with the app's rule for k. Map: PCA to 2-D.

``latency`` starts the app (gunicorn as ``make run`` does) on a synthetic N-picture gallery made by
``benchmarks/scale_app.py`` and times searches by id (p50/p95 of 200) while idle, then while the app
computes its duplicates (the searches go on until the job is done, at most 10 minutes).
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
from indexer.duplicate_job import find_pairs  # noqa: E402
from indexer.explore import (  # noqa: E402
    choose_k,
    duplicate_groups,
    minibatch_kmeans,
    neighbour_edges,
    pca_2d,
    similar_pairs,
)

SAMPLE = 2000  # pictures whose exact neighbours are the recall's reference


def peak_mb() -> float:
    return rss_mb("VmHWM")


def reset_peak() -> None:
    """Start the peak over from what is resident now (Linux: writing 5 to clear_refs resets VmHWM)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def process_peak_mb(pid: int) -> float:
    """The peak resident memory of a running process (0 once it has ended)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return 0.0


def recall(x: np.ndarray, a: np.ndarray, b: np.ndarray, s: np.ndarray) -> dict:
    """The found pairs and groups against exact search from ``SAMPLE`` pictures (see the module's text)."""
    n = len(x)
    rows = np.sort(np.random.default_rng(5).choice(n, min(n, SAMPLE), replace=False))
    truth = []
    for start in range(0, len(rows), 100):
        chunk = rows[start:start + 100]
        scores = np.asarray(x[chunk], np.float32) @ np.asarray(x).T
        scores[np.arange(len(chunk)), chunk] = -np.inf
        top = np.argpartition(-scores, 9, axis=1)[:, :10]
        for r, js, vs in zip(chunk.tolist(), top.tolist(), np.take_along_axis(scores, top, axis=1).tolist()):
            truth += [(min(r, j), max(r, j), v) for j, v in zip(js, vs) if v >= 0.8]
    found = set(zip(a.tolist(), b.tolist()))
    group = np.full(n, -1)
    for g, members in enumerate(duplicate_groups(n, a, b, s, 0.95)):
        group[members] = g
    strong = [(p, q) for p, q, v in truth if v >= 0.95]
    return {"pairs_08": np.mean([(p, q) in found for p, q, _ in truth]),
            "pairs_095": np.mean([(p, q) in found for p, q in strong]),
            "together_095": np.mean([group[p] == group[q] >= 0 for p, q in strong]), "truth": len(truth)}


def duplicates(vectors: np.ndarray, out: dict) -> None:
    """The app's way, in its low-priority process: time, that process's peak, recall against exact."""
    n = len(vectors)
    path = os.path.join(tempfile.mkdtemp(prefix="explore-dups-"), "features.npy")
    np.save(path, vectors)
    features = np.load(path, mmap_mode="r")  # as a generation holds it: the job maps the same file
    peak, pid = [0.0], []

    def progress(done: int, total: int) -> None:
        peak[0] = max(peak[0], process_peak_mb(pid[0]))

    start = time.perf_counter()
    a, b, s = find_pairs(features, 10, 0.8, progress=progress, started=pid.append)
    out["seconds"] = time.perf_counter() - start
    out["job_peak_mb"] = peak[0]
    groups = duplicate_groups(n, a, b, s, 0.95)
    out.update(edges=len(a), groups=len(groups), in_groups=sum(len(g) for g in groups), **recall(vectors, a, b, s))
    if n <= 100_000:
        exact = duplicate_groups(n, *similar_pairs(vectors, 10, 0.8, exact_below=n), 0.95)
        out["same_groups"] = f"{len({tuple(g) for g in groups} & {tuple(g) for g in exact})} of {len(exact)}"
    os.unlink(path)


def one(task: str, n: int, base_path: str) -> dict:
    """Run ``task`` on ``n`` vectors made from the real embeddings in ``base_path``, in this process."""
    vectors = synthesize(np.load(base_path), n, seed=2)
    reset_peak()  # the generator's temporaries are not the task's
    before_mb = rss_mb()  # the interpreter, the libraries and the vectors
    ids = np.arange(n, dtype=np.int64)
    out: dict = {"task": task, "n": n}
    start = time.perf_counter()
    if task == "duplicates":
        duplicates(vectors, out)
    elif task == "duplicates-faiss":
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
    out.setdefault("seconds", time.perf_counter() - start)
    out["peak_mb"] = out.pop("job_peak_mb", None) or peak_mb() - before_mb
    out["vectors_mb"] = vectors.nbytes / 2**20
    return out


def _times(port: int, ids: list[int], headers: dict, until=None) -> list[float]:
    """Milliseconds of searches by id, one after another: each id once, or round and round until ``until()``."""
    from scale_app import request
    times, q = [], 0
    while q < len(ids) if until is None else not until():
        start = time.perf_counter()
        status, data, _ = request(int(port), "POST", "/api/search", {"gallery_id": ids[q % len(ids)], "top_k": 10},
                                  headers)
        times.append((time.perf_counter() - start) * 1e3)
        if status != 200:
            raise SystemExit(f"search: {status} {data[:300]!r}")
        q += 1
        time.sleep(0.05)  # a user's pace, not a load test: the question is what one search waits
    return times


def _p(times: list[float], q: float) -> float:
    return float(np.percentile(times, q))


def latency(n: int) -> str:
    """The app on a synthetic N-picture gallery: search p50/p95 idle and while it computes its duplicates."""
    from scale_app import HOST, WEIGHTS, free_port, make_gallery, request, run_child, start_server, stop_server
    code = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    work = tempfile.mkdtemp(prefix="explore-latency-")
    gallery, index = make_gallery(work, n)
    port = free_port()
    env = dict(os.environ, ACCESS="public", HOST=HOST, PORT=str(port), GALLERY_DIR=gallery, INDEX_DIR=index,
               INSTANCE_DIR=os.path.join(work, "instance"), MEDIA_DIR=os.path.dirname(gallery),
               DINOV2_WEIGHTS=WEIGHTS, PYTHONPATH=code)
    run_child([os.path.join(os.path.dirname(sys.executable), "flask"), "--app", "app", "db", "upgrade"], code, env)
    server, _ = start_server(code, env, port)
    try:
        _, token, token_headers = request(port, "GET", "/api/csrf-token")
        headers = {"X-CSRFToken": json.loads(token)["csrf_token"],
                   "Cookie": token_headers.get("Set-Cookie", "").split(";")[0]}
        ids = [item["id"] for item in json.loads(request(port, "GET", "/api/gallery?per_page=200")[1])["items"]]
        _times(port, ids[:20], headers)  # warm
        idle = _times(port, ids, headers)
        start, state = time.perf_counter(), {}

        def finished() -> bool:
            if time.perf_counter() - start > 600:
                return True
            status, body, _ = request(port, "GET", "/api/duplicates")
            state.update(json.loads(body), status=status)
            return status != 202

        busy = _times(port, ids, headers, until=finished)
        seconds = time.perf_counter() - start
    finally:
        stop_server(server)
    return (f"| {n:,} | search by id, idle | p50 {_p(idle, 50):.0f} ms, p95 {_p(idle, 95):.0f} ms ({len(idle)}) |\n"
            f"| {n:,} | search by id, during duplicates ({seconds:.0f} s, {state.get('status')}: "
            f"{state.get('total', '?')} groups) | p50 {_p(busy, 50):.0f} ms, p95 {_p(busy, 95):.0f} ms ({len(busy)}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--tasks", nargs="+", default=["duplicates", "groups", "map"],
                        help="duplicates, duplicates-faiss, groups, map; or latency alone")
    parser.add_argument("--one", nargs=3, metavar=("TASK", "N", "BASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.one[2])))
        return
    if "latency" in args.tasks:
        for n in args.sizes:
            print(latency(n), flush=True)
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
            result = (f"{r['groups']} groups, {r['in_groups']} pictures, {r['edges']} edges"
                      if task.startswith("duplicates") else
                      f"k={r['k']}, largest {r['largest']}" if task == "groups" else "")
            if task == "duplicates":
                result += (f"; recall of pairs ≥ 0.8 {r['pairs_08']:.3f} ({r['truth']} pairs), ≥ 0.95 "
                           f"{r['pairs_095']:.3f}, together at 0.95 {r['together_095']:.3f}"
                           + (f"; groups as exact: {r['same_groups']}" if "same_groups" in r else ""))
            result = (result if task.startswith("duplicates") else f"k={r['k']}, largest {r['largest']}" if task == "groups" else "")
            build = f"{r['build_s']:.1f}" if "build_s" in r else ""
            print(f"| {n:,} | {task} | {r['seconds']:.1f} | {build} | {r['peak_mb']:.0f} ({r['vectors_mb']:.0f}) | "
                  f"{result} |", flush=True)


if __name__ == "__main__":
    main()
