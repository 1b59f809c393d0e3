"""The folder watcher under a card dump: the app as ``make run`` serves it (gunicorn, WATCH_GALLERY=1) on a
gallery of real photos, then 500 more real photos copied into its folder one after another.

    python benchmarks/watch_folder.py [--gallery 100] [--copy 500] [--idle 30]

Prints the time from the last file copied to "all searchable" (every new photo listed by /api/gallery), how
many index changes the watcher made of them, and one client's search latency before the copy (idle) and
while the watcher indexes (p50/p95, and the ratio of the two in the same run). Only 127.0.0.1 is targeted;
every loop is bounded in count and time.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import shutil
import sys
import tempfile
import threading
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from serve_load import HOST, Client, multipart, server_env, start_server  # noqa: E402

from indexer.builder import build_gallery  # noqa: E402
from indexer.config import load_settings  # noqa: E402
from indexer.evaluate import benchmark_gallery, distinct_photos  # noqa: E402

DEADLINE = 1800.0


def card_dump(folder: str, count: int) -> list[str]:
    """``count`` distinct real JPEGs (crops of the benchmark's original photos, none in the gallery)."""
    os.makedirs(folder, exist_ok=True)
    out = []
    for i, image in enumerate(distinct_photos(count, first_cut=2, step=3)):
        path = os.path.join(folder, f"DSC_{i:04d}.jpg")
        image.save(path, quality=90)
        out.append(path)
    return out


def get_json(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    conn.request("GET", path)
    body = json.loads(conn.getresponse().read())
    conn.close()
    return body


def watch_changes(work: str) -> int:
    """How many index changes the watcher has made (its status file, written once it has started)."""
    path = os.path.join(work, "index", ".watch.json")
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.2)
    with open(path) as f:
        return json.load(f)["changes"]


def searches(client: Client, body: bytes, boundary: str, stop, limit: int) -> list[float]:
    """Seconds of each search until ``stop()`` or ``limit`` searches."""
    out = []
    while not stop() and len(out) < limit:
        status, seconds, _ = client.search(body, boundary)
        if status == 200:
            out.append(seconds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery", type=int, default=100)
    parser.add_argument("--copy", type=int, default=500)
    parser.add_argument("--idle", type=int, default=30, help="searches measured before the copy")
    parser.add_argument("--port", type=int, default=5398)
    args = parser.parse_args()
    weights = load_settings()["WEIGHTS"]
    work = tempfile.mkdtemp(prefix="watch-folder-")
    try:
        photos = benchmark_gallery(work, args.gallery)
        build_gallery(os.path.join(work, "gallery"), os.path.join(work, "index"), weights, progress=False)
        dump = card_dump(os.path.join(work, "card"), args.copy)
        query = io.BytesIO()
        Image.open(photos[0]).convert("RGB").save(query, "JPEG", quality=85)
        query_path = os.path.join(work, "query.jpg")
        with open(query_path, "wb") as f:
            f.write(query.getvalue())
        body, boundary = multipart(query_path)
        server = start_server(server_env(work, weights, args.port, WATCH_GALLERY="1"), args.port)
        try:
            client = Client(args.port)
            client.search(body, boundary)  # untimed: loads the model
            idle = searches(client, body, boundary, lambda: False, args.idle)
            before = get_json(args.port, "/api/gallery?per_page=1")["total"]
            changes_before = watch_changes(work)
            target = os.path.join(work, "gallery", "card")
            os.makedirs(target)
            done = threading.Event()
            busy: list[float] = []
            searcher = threading.Thread(target=lambda: busy.extend(
                searches(Client(args.port), body, boundary, done.is_set, 100_000)))
            searcher.start()
            copy_start = time.perf_counter()
            for path in dump:
                shutil.copy(path, target)
            last_copied = time.perf_counter()
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:
                if get_json(args.port, "/api/gallery?per_page=1")["total"] >= before + args.copy:
                    break
                time.sleep(0.2)
            searchable = time.perf_counter()
            done.set()
            searcher.join()
            changes = watch_changes(work) - changes_before
        finally:
            server.terminate()
            server.wait(30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    idle_p50, idle_p95 = np.percentile(idle, 50), np.percentile(idle, 95)
    busy_p50, busy_p95 = np.percentile(busy, 50), np.percentile(busy, 95)
    print(f"copy of {args.copy} photos into a watched gallery of {args.gallery}: copied in "
          f"{last_copied - copy_start:.1f} s; all searchable {searchable - last_copied:.1f} s after the last file "
          f"({(searchable - copy_start) / args.copy * 1e3:.0f} ms a photo from the first), in {changes} index "
          "changes")
    print("| search latency (1 client) | searches | p50 s | p95 s |")
    print("| --- | --- | --- | --- |")
    print(f"| idle, before the copy | {len(idle)} | {idle_p50:.3f} | {idle_p95:.3f} |")
    print(f"| while the watcher indexes | {len(busy)} | {busy_p50:.3f} | {busy_p95:.3f} |")
    print(f"| ratio (same run) | | {busy_p50 / idle_p50:.2f}x | {busy_p95 / idle_p95:.2f}x |")


if __name__ == "__main__":
    main()
