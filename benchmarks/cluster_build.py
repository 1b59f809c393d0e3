"""The builder locally and on a Dask LocalCluster, on the same gallery of real photos, in one run.

    python benchmarks/cluster_build.py [--images 240] [--shard-size 32]

Prints, for a local build and for ``--cluster local:1`` and ``local:2``: seconds, images per second, the
ratio to the local build, and the cluster path's overhead per image; and the cluster's start-up time, which
the timed builds include (a real cluster is started once, not per build).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from indexer.builder import build_gallery  # noqa: E402
from indexer.config import load_settings  # noqa: E402
from indexer.evaluate import benchmark_gallery  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--shard-size", type=int, default=32)
    args = parser.parse_args()
    weights = load_settings()["WEIGHTS"]
    work = tempfile.mkdtemp(prefix="cluster-build-")
    try:
        benchmark_gallery(work, args.images)
        gallery = os.path.join(work, "gallery")
        build_gallery(gallery, os.path.join(work, "warm"), weights, progress=False)  # untimed: file cache, model
        from indexer.cluster import connect
        start = time.perf_counter()
        client, cluster = connect("local:2")
        client.close()
        cluster.close()
        startup = time.perf_counter() - start
        rows = []
        for name, cluster_address in (("local build", None), ("--cluster local:1", "local:1"),
                                      ("--cluster local:2", "local:2")):
            start = time.perf_counter()
            report = build_gallery(gallery, os.path.join(work, name.replace(" ", "_")), weights, progress=False,
                                   cluster=cluster_address, shard_size=args.shard_size)
            rows.append((name, time.perf_counter() - start, report.embedded))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    local_rate = rows[0][2] / rows[0][1]
    print(f"{args.images} real photos, shards of {args.shard_size}; LocalCluster start-up {startup:.1f} s "
          "(included below)")
    print("| build | seconds | images/s | × local | overhead ms/image |")
    print("| --- | --- | --- | --- | --- |")
    for name, seconds, embedded in rows:
        rate = embedded / seconds
        overhead = (seconds - rows[0][1]) / embedded * 1e3
        print(f"| {name} | {seconds:.1f} | {rate:.2f} | {rate / local_rate:.2f} | {overhead:.1f} |")


if __name__ == "__main__":
    main()
