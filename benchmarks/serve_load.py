"""Load benchmark of the web app as ``make run`` serves it (gunicorn with ``gunicorn.conf.py``), on a gallery of
real photos, with concurrent clients each uploading a real photo to ``POST /api/search``.

    python benchmarks/serve_load.py [--images 500] [--queries 8] [--levels 1 2 4 8 16 32] [--overload 200]

Prints per concurrency level: throughput, p50/p95/p99 latency, errors by status and the mean batch size the
server ran; then the overload case (every request at once) with the health check's worst latency meanwhile;
and, measured in the same run before the server starts, the model alone at batch 1 and batch 8. Only
127.0.0.1 is targeted; every loop is bounded in count and time. The model and the server run without the
environment's BLAS pin (``dinov2_numpy.blas.without_blas_pin``); the kernel is printed.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dinov2_numpy import load_model, preprocess  # noqa: E402
from dinov2_numpy.blas import blas_kernels, without_blas_pin  # noqa: E402
from indexer.builder import build_gallery  # noqa: E402
from indexer.config import load_settings  # noqa: E402
from indexer.embedding import embed_pixels  # noqa: E402
from indexer.evaluate import benchmark_gallery  # noqa: E402

HOST = "127.0.0.1"
TIMEOUT = 120.0


def model_alone(weights: str, photos: list[str], repeat: int = 3) -> dict[int, float]:
    """Images per second of the forward pass alone at batch 1 and 8, on real preprocessed photos."""
    model = load_model(weights)
    pixels = np.stack([preprocess(p) for p in photos[:8]])
    out = {}
    for batch in (1, 8):
        embed_pixels(model, pixels[:batch])  # untimed: warms caches and thread pools
        start = time.perf_counter()
        for _ in range(repeat):
            for i in range(0, 8, batch):
                embed_pixels(model, pixels[i:i + batch])
        out[batch] = repeat * 8 / (time.perf_counter() - start)
    return out


class Client:
    """One HTTP client with its own session cookie and CSRF token."""

    def __init__(self, port: int) -> None:
        self.port = port
        conn = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT)
        conn.request("GET", "/api/csrf-token")
        response = conn.getresponse()
        self.token = json.loads(response.read())["csrf_token"]
        self.cookie = response.getheader("Set-Cookie").split(";")[0]
        conn.close()

    def search(self, body: bytes, boundary: str) -> tuple[int, float, dict]:
        """(status, seconds, headers) of one search; status 0 for a connection error."""
        start = time.perf_counter()
        conn = http.client.HTTPConnection(HOST, self.port, timeout=TIMEOUT)
        try:
            conn.request("POST", "/api/search", body=body, headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}", "X-CSRFToken": self.token,
                "Cookie": self.cookie})
            response = conn.getresponse()
            response.read()
            return response.status, time.perf_counter() - start, dict(response.getheaders())
        except OSError:
            return 0, time.perf_counter() - start, {}
        finally:
            conn.close()


def multipart(photo: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    with open(photo, "rb") as f:
        data = f.read()
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.jpg\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + \
           f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"top_k\"\r\n\r\n10\r\n--{boundary}--\r\n".encode()
    return body, boundary


def queue_stats(port: int) -> dict:
    conn = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT)
    conn.request("GET", "/api/health")
    stats = json.loads(conn.getresponse().read())["queue"]
    conn.close()
    return stats


def run_level(port: int, clients: int, queries: int, body: bytes, boundary: str) -> dict:
    """``clients`` threads, each sending ``queries`` searches one after another."""
    sessions = [Client(port) for _ in range(clients)]
    before = queue_stats(port)
    results: list[tuple[int, float, dict]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def work(client: Client) -> None:
        barrier.wait()
        for _ in range(queries):
            r = client.search(body, boundary)
            with lock:
                results.append(r)

    start = time.perf_counter()
    threads = [threading.Thread(target=work, args=(c,)) for c in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    after = queue_stats(port)
    ok = [s for status, s, _ in results if status == 200]
    jobs, batches = after["jobs"] - before["jobs"], after["batches"] - before["batches"]
    return {"clients": clients, "queries": len(results), "throughput": len(ok) / elapsed,
            "p50": _pct(ok, 50), "p95": _pct(ok, 95), "p99": _pct(ok, 99),
            "errors": dict(Counter(status for status, _, _ in results if status != 200)),
            "retry_after": all(h.get("Retry-After") for status, _, h in results if status == 503),
            "mean_batch": jobs / batches if batches else 0.0}


def _pct(values: list[float], q: int) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def overload(port: int, clients: int, body: bytes, boundary: str) -> dict:
    """Every client sends one search at the same moment, while a monitor checks /api/health every 0.1 s."""
    sessions = [Client(port) for _ in range(clients)]
    results: list[tuple[int, float, dict]] = []
    health: list[tuple[int, float]] = []
    lock = threading.Lock()
    done = threading.Event()
    barrier = threading.Barrier(clients + 1)

    def work(client: Client) -> None:
        barrier.wait()
        r = client.search(body, boundary)
        with lock:
            results.append(r)

    def monitor() -> None:
        barrier.wait()
        deadline = time.monotonic() + TIMEOUT
        while not done.is_set() and time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                conn = http.client.HTTPConnection(HOST, port, timeout=10)
                conn.request("GET", "/api/health")
                status = conn.getresponse().status
                conn.close()
            except OSError:
                status = 0
            health.append((status, time.perf_counter() - start))
            time.sleep(0.1)

    threads = [threading.Thread(target=work, args=(c,)) for c in sessions]
    watcher = threading.Thread(target=monitor)
    for t in threads + [watcher]:
        t.start()
    for t in threads:
        t.join()
    done.set()
    watcher.join()
    after = Client(port).search(body, boundary)
    statuses = Counter(status for status, _, _ in results)
    return {"clients": clients, "statuses": dict(statuses),
            "retry_after": all(h.get("Retry-After") for status, _, h in results if status == 503),
            "health_max": max(s for _, s in health), "health_ok": all(st == 200 for st, _ in health),
            "health_checks": len(health), "after": after[0],
            "p95_ok": _pct([s for status, s, _ in results if status == 200], 95)}


def server_env(work: str, weights: str, port: int, **extra: str) -> dict:
    """The environment of a server on the gallery and index in ``work``, public as ``make run`` serves the demo."""
    return dict(os.environ, ACCESS="public", HOST=HOST, PORT=str(port), GALLERY_DIR=os.path.join(work, "gallery"),
                INDEX_DIR=os.path.join(work, "index"), INSTANCE_DIR=os.path.join(work, "instance"),
                MEDIA_DIR=os.path.join(work, "media"), DINOV2_WEIGHTS=weights, **extra)


def start_server(env: dict, port: int) -> subprocess.Popen:
    """The app exactly as ``make run`` starts it: migrations, then gunicorn with gunicorn.conf.py."""
    flask = os.path.join(os.path.dirname(sys.executable), "flask")
    subprocess.run([flask, "--app", "app", "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    server = subprocess.Popen([gunicorn, "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/api/health")
            if conn.getresponse().status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.3)
    server.kill()
    raise SystemExit("the server did not become healthy within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--queries", type=int, default=8, help="searches per client at each level")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--overload", type=int, default=200)
    parser.add_argument("--port", type=int, default=5399)
    args = parser.parse_args()
    without_blas_pin()
    weights = load_settings()["WEIGHTS"]
    work = tempfile.mkdtemp(prefix="serve-load-")
    try:
        photos = benchmark_gallery(work, args.images)
        print(f"gallery: {args.images} real photos; building the index...", file=sys.stderr)
        build_gallery(os.path.join(work, "gallery"), os.path.join(work, "index"), weights, progress=False)
        alone = model_alone(weights, photos)
        query = os.path.join(work, "query.jpg")
        from PIL import Image
        Image.open(photos[0]).convert("RGB").save(query, quality=85)
        body, boundary = multipart(query)
        env = server_env(work, weights, args.port)
        server = start_server(env, args.port)
        try:
            Client(args.port).search(body, boundary)  # untimed: loads the model
            rows = [run_level(args.port, c, args.queries, body, boundary) for c in args.levels]
            over = overload(args.port, args.overload, body, boundary) if args.overload else None
        finally:
            server.terminate()
            server.wait(30)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    one = rows[0]["throughput"]
    print(f"BLAS: {blas_kernels()} (the server inherits this process's environment, without the pin)")
    print(f"model alone: batch 1 {alone[1]:.2f} img/s, batch 8 {alone[8]:.2f} img/s (same run)")
    print("| clients | queries | throughput q/s | × 1 client | × model batch 8 | p50 s | p95 s | p99 s | "
          "errors | mean batch |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(r["errors"].items())) or "0"
        print(f"| {r['clients']} | {r['queries']} | {r['throughput']:.2f} | {r['throughput'] / one:.2f} | "
              f"{r['throughput'] / alone[8]:.2f} | {r['p50']:.2f} | {r['p95']:.2f} | {r['p99']:.2f} | {errors} | "
              f"{r['mean_batch']:.2f} |")
    if over:
        print(f"overload: {over['clients']} clients at once -> {over['statuses']}; every 503 has Retry-After: "
              f"{over['retry_after']}; /api/health answered {over['health_checks']} checks, all 200: "
              f"{over['health_ok']}, slowest {over['health_max']:.2f} s; a search afterwards: {over['after']}")
    checks = [("no collapse (every level ≥ 0.9× one client)", all(r["throughput"] >= 0.9 * one for r in rows)),
              ("≥ 8 clients: ≥ 1.3× one client", all(r["throughput"] >= 1.3 * one for r in rows if r["clients"] >= 8)),
              ("≥ 8 clients: ≥ 0.8× model batch 8",
               all(r["throughput"] >= 0.8 * alone[8] for r in rows if r["clients"] >= 8)),
              ("no errors up to 32 clients", all(not r["errors"] for r in rows)),
              ("p95 at 16 clients ≤ 2 × 16 / throughput",
               all(r["p95"] <= 2 * 16 / r["throughput"] for r in rows if r["clients"] == 16))]
    if over:
        checks += [("overload: only 200 and 503 with Retry-After",
                    set(over["statuses"]) <= {200, 503} and over["retry_after"]),
                   ("overload: health within 1 s throughout", over["health_ok"] and over["health_max"] <= 1.0),
                   ("overload: serves normally afterwards", over["after"] == 200)]
    for name, ok in checks:
        print(f"{'PASS' if ok else 'MISS'}  {name}")


if __name__ == "__main__":
    main()
