"""The builder on a Dask distributed cluster (LocalCluster with worker processes): the same index as a local
build, a worker killed mid-build changes nothing, an unreachable scheduler fails fast and clearly."""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from indexer.builder import build_gallery
from indexer.generations import load_index
from tests.images import mvtb_photo, package_dir, skimage_photo

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, weights_path):
    """24 real photos, and the index a local build makes of them."""
    root = tmp_path_factory.mktemp("cluster")
    folder = root / "gallery"
    (folder / "mvtb").mkdir(parents=True)
    for name in ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.jpg", "retina.jpg",
                 "hubble_deep_field.jpg", "ihc.png", "immunohistochemistry.png", "motorcycle_left.png"):
        if os.path.exists(skimage_photo(name)):
            shutil.copy(skimage_photo(name), folder)
    mvtb = sorted(n for n in os.listdir(os.path.join(package_dir("mvtbdata"), "images")) if n.endswith(".png"))
    for name in mvtb[:24 - len(os.listdir(folder)) + 1]:
        shutil.copy(mvtb_photo(name), folder / "mvtb")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    build_gallery(str(folder), str(root / "local"), weights_path, progress=False)
    return root


def assert_same_index(a, b):
    x, y = load_index(a), load_index(b)
    assert x.paths == y.paths and len(x.paths) >= 20
    assert np.abs(np.asarray(x.features) - np.asarray(y.features)).max() <= 1e-5


def test_a_cluster_build_equals_a_local_one(gallery, weights_path):
    environment = dict(os.environ)
    report = build_gallery(str(gallery / "gallery"), str(gallery / "two"), weights_path, progress=False,
                           cluster="local:2", shard_size=4)
    assert dict(os.environ) == environment  # Dask's settings for its workers stay theirs
    assert report.embedded == len(load_index(str(gallery / "two")).paths)
    assert [s.path for s in report.skipped] == ["broken.png"]
    assert_same_index(str(gallery / "local"), str(gallery / "two"))
    again = build_gallery(str(gallery / "gallery"), str(gallery / "two"), weights_path, progress=False)
    assert again.embedded == 0 and again.reused == report.embedded  # a local incremental build accepts it
    shipped = build_gallery(str(gallery / "gallery"), str(gallery / "shipped"), weights_path, progress=False,
                            cluster="local:1", ship_bytes=True, shard_size=8)
    assert shipped.embedded == report.embedded
    assert_same_index(str(gallery / "local"), str(gallery / "shipped"))


def finished_shards(index) -> int:
    work = index / ".work"
    return len([n for n in os.listdir(work) if n.startswith("chunk-")]) if work.exists() else 0


def test_a_worker_killed_mid_build_changes_nothing(gallery, weights_path):
    from dask.distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           env={"DINOV2_THREADS": "1"}, silence_logs=40)
    client = Client(cluster)
    try:
        pids = list(client.run(os.getpid).values())
        assert len(pids) == 2
        index = gallery / "killed"
        result = {}
        thread = threading.Thread(target=lambda: result.update(report=build_gallery(
            str(gallery / "gallery"), str(index), weights_path, progress=False, cluster=cluster.scheduler_address,
            shard_size=2)))
        thread.start()
        deadline = time.monotonic() + 120
        while not finished_shards(index) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert finished_shards(index) and thread.is_alive()
        os.kill(pids[0], signal.SIGKILL)  # one worker process dies with shards in hand
        thread.join(300)
        assert not thread.is_alive() and "report" in result
        assert_same_index(str(gallery / "local"), str(index))
        assert result["report"].embedded == len(load_index(str(index)).paths)
    finally:
        client.close()
        cluster.close()


def test_an_unreachable_scheduler_fails_fast_with_one_line(gallery, weights_path):
    start = time.monotonic()
    result = subprocess.run([sys.executable, "build_gallery.py", "--images", str(gallery / "gallery"), "--output",
                             str(gallery / "nowhere"), "--weights", weights_path, "--cluster", "tcp://127.0.0.1:9",
                             "--quiet", "--rebuild"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and time.monotonic() - start < 30
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in lines[0]
