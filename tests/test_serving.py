"""Serving under load: concurrent searches share forward passes through the one inference queue, overload is a
503 with Retry-After and a JSON error, and a client that hangs up harms nobody else's search."""
import io
import json
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from app.extensions import engine
from app.services.errors import Overloaded
from app.services.inference_queue import InferenceQueue
from dinov2_numpy import preprocess
from indexer.embedding import embed_pixels
from tests.helpers import csrf_headers, live_server, make_app, post_search, wait_until
from tests.images import mvtb_photo, skimage_photo, sklearn_photo

PHOTOS = [skimage_photo("coffee.png"), skimage_photo("chelsea.png"), skimage_photo("astronaut.png"),
          skimage_photo("rocket.jpg"), sklearn_photo("china.jpg"), mvtb_photo("eiffel-1.png"),
          skimage_photo("camera.png"), sklearn_photo("flower.jpg")]


def jpeg(path, scale=0.6):
    image = Image.open(path).convert("RGB")
    image = image.resize((int(image.width * scale), int(image.height * scale)))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def busy_dispatcher(queue, work):
    """Run ``work()`` on ``queue``'s dispatcher, which is busy until it returns. Returns the thread waiting for
    it and an event set once the dispatcher has started it."""
    started = threading.Event()

    def occupy(model):
        started.set()
        work()

    blocker = threading.Thread(target=queue.call, args=(occupy,))
    blocker.start()
    return blocker, started


def ranked(body):
    return [(r["id"], r["score"]) for r in body["results"]]


def same_answer(got, want):
    assert [i for i, _ in got] == [i for i, _ in want]
    assert np.abs(np.array([s for _, s in got]) - np.array([s for _, s in want])).max() <= 1e-5


def test_queue_batches_and_batched_equals_single(model):
    queue = InferenceQueue(lambda: model, max_batch=8, max_wait_ms=300, limit=32, deadline_s=10)
    pixels = [preprocess(p) for p in PHOTOS[:6]]
    single = [embed_pixels(model, p[None])[0] for p in pixels]
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(queue.embed, pixels))
    assert max(ran.batch_size for _, ran in got) > 1 and queue.stats()["largest_batch"] > 1
    for (vector, _), want in zip(got, single):
        assert np.abs(vector - want).max() <= 1e-5


def test_queue_refuses_what_waited_past_its_deadline(model):
    queue = InferenceQueue(lambda: model, max_batch=8, max_wait_ms=0, limit=32, deadline_s=0.2)
    blocker, started = busy_dispatcher(queue, lambda: time.sleep(0.6))
    assert started.wait(10)  # the dispatcher is now busy for 0.6 s, three times the deadline
    with pytest.raises(Overloaded) as refused:
        queue.embed(preprocess(PHOTOS[0]))
    blocker.join()
    assert refused.value.retry_after >= 1
    vector, ran = queue.embed(preprocess(PHOTOS[0]))  # nothing leaked: the next one runs at once
    assert ran.batch_size == 1 and vector.shape == (384,)
    assert queue.stats()["waiting"] == 0 and queue.stats()["refused"] == 1


def test_indexing_work_yields_to_searches_and_never_shares_their_batch(model):
    queue = InferenceQueue(lambda: model, max_batch=8, max_wait_ms=0, limit=32, deadline_s=10)
    pixels = preprocess(PHOTOS[0])
    order = []
    gate = threading.Event()
    blocker, started = busy_dispatcher(queue, lambda: gate.wait(5))
    assert started.wait(10)  # the dispatcher has taken the blocker and waits on the gate

    def submit(name, background):
        vector, ran = queue.embed(pixels, background=background)
        order.append((name, ran.batch_size))

    threads = [threading.Thread(target=submit, args=(f"background-{i}", True)) for i in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: queue.stats()["waiting"] == 3, "the indexing jobs to queue")
    searches = [threading.Thread(target=submit, args=(f"search-{i}", False)) for i in range(2)]
    for t in searches:
        t.start()
    wait_until(lambda: queue.stats()["waiting"] == 5, "the searches to queue behind them")
    gate.set()  # everything is queued: the backgrounds first, then the searches
    for t in threads + searches + [blocker]:
        t.join()
    # The searches, queued last, ran first, together; each indexing image ran alone afterwards.
    assert [name for name, _ in order[:2]] == ["search-0", "search-1"] or \
        [name for name, _ in order[:2]] == ["search-1", "search-0"]
    assert order[0][1] == order[1][1] == 2
    assert all(size == 1 for name, size in order[2:]) and len(order) == 5


def test_concurrent_searches_coalesce_and_equal_serial_answers(gallery_dirs, tmp_path, weights_path):
    app = make_app(gallery_dirs, tmp_path, weights_path, INFER_MAX_WAIT_MS=150)
    client = app.test_client()
    headers = csrf_headers(client)
    queries = [jpeg(p) for p in PHOTOS]
    serial = [ranked(post_search(client, q, headers=headers, top_k="5").get_json()) for q in queries]
    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda q: post_search(client, q, headers=headers, top_k="5").get_json(), queries))
    assert max(b["analysis"]["batch_size"] for b in bodies) > 1
    for body, want in zip(bodies, serial):
        same_answer(ranked(body), want)
    with app.app_context():
        assert engine().queue.stats()["largest_batch"] > 1


def test_overload_is_503_with_retry_after_and_nothing_leaks(gallery_dirs, tmp_path, weights_path):
    app = make_app(gallery_dirs, tmp_path, weights_path, QUEUE_LIMIT=1)
    client = app.test_client()
    headers = csrf_headers(client)
    query = jpeg(PHOTOS[0])
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: post_search(client, query, headers=headers, top_k="5"), range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 503 in statuses and set(statuses) == {200, 503}
    for r in responses:
        if r.status_code == 503:
            assert int(r.headers["Retry-After"]) >= 1 and r.get_json()["error"]["code"] == "overloaded"
    with app.app_context():
        stats = engine().queue.stats()
        assert stats["in_progress"] == 0 and stats["waiting"] == 0
    assert post_search(client, query, headers=headers, top_k="5").status_code == 200


def test_deadline_gives_503_through_the_api(gallery_dirs, tmp_path, weights_path):
    app = make_app(gallery_dirs, tmp_path, weights_path, QUEUE_DEADLINE=0.2, INFER_MAX_WAIT_MS=0)
    client = app.test_client()
    headers = csrf_headers(client)
    with app.app_context():
        queue = engine().queue
    blocker, started = busy_dispatcher(queue, lambda: time.sleep(1.0))
    assert started.wait(10)
    r = post_search(client, jpeg(PHOTOS[0]), headers=headers, top_k="5")
    blocker.join()
    assert r.status_code == 503 and r.headers["Retry-After"].isdigit()
    assert "waited" in r.get_json()["error"]["message"]
    assert post_search(client, jpeg(PHOTOS[0]), headers=headers, top_k="5").status_code == 200


def raw_search(port, data, token, cookie, hang_up=False):
    """A search over a plain socket; ``hang_up`` closes it as soon as the request is sent."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.jpg\"\r\n\r\n").encode() \
        + data + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST /api/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={boundary}"
            f"\r\nContent-Length: {len(body)}\r\nX-CSRFToken: {token}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n")
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(head.encode() + body)
    if hang_up:
        sock.close()
        return None
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    sock.close()
    status = int(reply.split(b" ", 2)[1])
    return status, json.loads(reply.split(b"\r\n\r\n", 1)[1])


def test_a_client_that_hangs_up_does_not_poison_its_batch(gallery_dirs, tmp_path, weights_path):
    app = make_app(gallery_dirs, tmp_path, weights_path, INFER_MAX_WAIT_MS=300)
    with live_server(app) as base:
        port = urlsplit(base).port
        client = app.test_client()
        token = client.get("/api/csrf-token").get_json()["csrf_token"]
        cookie = f"session={client.get_cookie('session').value}"
        queries = [jpeg(p) for p in PHOTOS[:5]]
        serial = [ranked(raw_search(port, q, token, cookie)[1]) for q in queries]
        with ThreadPoolExecutor(6) as pool:
            gone = pool.submit(raw_search, port, jpeg(PHOTOS[5]), token, cookie, True)
            answers = list(pool.map(lambda q: raw_search(port, q, token, cookie), queries))
        assert gone.result() is None
        assert all(status == 200 for status, _ in answers)
        assert max(body["analysis"]["batch_size"] for _, body in answers) > 1
        for (_, body), want in zip(answers, serial):
            same_answer(ranked(body), want)
        with app.app_context():
            wait_until(lambda: engine().queue.stats()["in_progress"] == 0, "the hung-up search to end", timeout=10)
        status, body = raw_search(port, queries[0], token, cookie)
        assert status == 200 and ranked(body) == serial[0]
