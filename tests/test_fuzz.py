"""Property-based fuzzing (Hypothesis) of every API field and of the image decoder. Only the contract is
asserted: a JSON answer that is a 200 or a 4xx (503 only where the service says it is busy), never a 500,
within a bounded time; and for the decoder, a picture the model can take or a clear refusal, within a bounded
amount of memory.

Fast by default (30 examples a property); ``HYPOTHESIS_PROFILE=nightly`` runs 600, as CI does (about 15 s).
Both are derandomized, so that a run is repeatable; change the seed by hand to explore further.
"""
import base64
import io
import json
import os
import tracemalloc

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.services.errors import Unprocessable, UnsupportedMedia
from app.services.images import decode
from dinov2_numpy import preprocess
from indexer import formats
from tests.helpers import csrf_headers
from tests.images import skimage_photo

# The deadline bounds each example's time (hundreds of times what a request normally takes): a hang fails.
settings.register_profile("default", max_examples=30, deadline=20_000, derandomize=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=600, deadline=20_000, derandomize=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

ALLOWED = {200, 400, 401, 403, 404, 409, 413, 415, 422, 503}

numbers = st.one_of(st.integers(min_value=-10**30, max_value=10**30), st.integers().map(lambda i: i * 10**300),
                    st.floats(allow_nan=True, allow_infinity=True))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=5), inner, max_size=4)),
                           max_leaves=12)
boxes = st.fixed_dictionaries({k: numbers for k in ("x", "y", "w", "h")})
points = st.fixed_dictionaries({k: numbers for k in ("x", "y")})
urls = st.one_of(st.text(max_size=60), st.sampled_from([
    "http://[::1", "http://example.invalid:99999/", "http://x:abc/", "ftp://example.org/a.png", "file:///etc/passwd",
    "http://127.0.0.1:1/a.png", "http://[64:ff9b::7f00:1]/", "http://user:pw@10.0.0.1/", "https://", "http://%zz/",
    "http://0x7f.1/", "http://2130706433/", "http://[::ffff:169.254.169.254]/"]))
fields = st.fixed_dictionaries({}, optional={
    "top_k": json_values, "threshold": json_values, "gallery_id": json_values, "query_gallery_id": json_values,
    "region": st.one_of(boxes, json_values),
    "point": st.one_of(points, json_values), "url": st.one_of(urls, json_values),
    "image_base64": st.one_of(st.text(max_size=80), st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),
                              json_values),
    "sketch_base64": st.one_of(st.text(max_size=40), json_values), "filename": json_values})


def check_contract(response):
    assert response.status_code in ALLOWED, (response.status_code, response.get_data(as_text=True)[:300])
    body = response.get_json()
    assert isinstance(body, dict)
    if response.status_code != 200:
        assert set(body["error"]) == {"code", "message"}
    if response.status_code == 503:
        assert body["error"]["code"] in ("overloaded", "not_ready")


@given(body=fields)
def test_search_json_fields(client, body):
    text = json.dumps(body, allow_nan=True)
    for url in ("/api/search", "/api/segment", "/api/explain"):
        check_contract(client.post(url, data=text, content_type="application/json", headers=csrf_headers(client)))


@given(raw=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_search_raw_bodies(client, raw):
    for ctype in ("application/json", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"):
        check_contract(client.post("/api/search", data=raw, content_type=ctype, headers=csrf_headers(client)))


@given(data=st.binary(max_size=2000), form=st.dictionaries(st.sampled_from(["top_k", "threshold", "region", "point"]),
                                                            st.text(max_size=30), max_size=3))
def test_search_multipart_uploads(client, data, form):
    r = client.post("/api/search", data={"image": (io.BytesIO(data), "x.jpg"), **form}, headers=csrf_headers(client),
                    content_type="multipart/form-data")
    check_contract(r)


@given(query=st.dictionaries(st.sampled_from(["page", "per_page", "q"]), st.text(max_size=30), max_size=3))
def test_gallery_and_history_queries(client, query):
    check_contract(client.get("/api/gallery", query_string=query))
    check_contract(client.get("/api/history", query_string=query))


MODES = {"1": "PNG", "L": "PNG", "P": "GIF", "RGB": "JPEG", "RGBA": "PNG", "I;16": "PNG", "I": "TIFF", "F": "TIFF",
         "CMYK": "JPEG", "LA": "PNG"}
sizes = st.one_of(st.tuples(st.integers(1, 700), st.integers(1, 700)),
                  st.sampled_from([(1, 8000), (8000, 1), (2, 20000), (20000, 3), (1, 1), (13, 7000)]))


@st.composite
def encoded_images(draw):
    mode = draw(st.sampled_from(sorted(MODES)))
    width, height = draw(sizes)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    image = Image.new(mode, (width, height))
    if width * height <= 700 * 700 and mode in ("L", "RGB", "RGBA"):
        channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
        noise = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        image = Image.fromarray(noise[..., 0] if channels == 1 else noise, mode)
    fmt = draw(st.sampled_from([MODES[mode], "PNG", "TIFF"])) if mode in ("L", "RGB") else MODES[mode]
    buf = io.BytesIO()
    image.save(buf, fmt)
    data = buf.getvalue()
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    return data if cut is None else data[:cut]


def decoded_within_bounds(data: bytes) -> bool:
    """Decode ``data`` as an upload is decoded: True for a picture the model can take, False for one of the
    product's own refusals (415 or 422); either way within a bounded amount of memory. Any other exception
    (a decoder's own error escaping) fails the test."""
    tracemalloc.start()
    try:
        image, _ = decode(data, max_pixels=50_000_000)
        pixels = preprocess(image)
    except (UnsupportedMedia, Unprocessable):
        return False
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 64 * 2**20, peak  # Python and NumPy allocations for one picture, whatever its shape
    assert pixels.shape == (3, 224, 224) and np.isfinite(pixels).all()
    return True


@given(data=st.one_of(encoded_images(), st.binary(max_size=500)))
def test_decoder_gives_a_model_input_or_a_clear_refusal_in_bounded_memory(data):
    decoded_within_bounds(data)


def _real_files() -> dict[str, bytes]:
    """A real photo (a crop of scikit-image's cat, small so that each example decodes fast), encoded in every
    format the product accepts, animated GIF and multi-page TIFF included."""
    photo = Image.open(skimage_photo("chelsea.png")).convert("RGB").crop((100, 40, 196, 112))
    out = {}
    for pil_format in ("JPEG", "PNG", "TIFF", "WEBP", "GIF", "BMP", "HEIF", "AVIF"):
        buf = io.BytesIO()
        extra = {"save_all": True, "append_images": [photo.rotate(90)]} if pil_format in ("GIF", "TIFF") else {}
        photo.save(buf, pil_format, **extra)
        out[pil_format] = buf.getvalue()
    return out


REAL_FILES = _real_files()


def test_intact_files_of_every_accepted_format_are_accepted():
    assert set(formats.FORMATS) - {"MPO"} - set(formats.RAW_FORMATS) == set(REAL_FILES)  # RAW: tests/test_raw.py
    for pil_format, data in REAL_FILES.items():
        image, ext = decode(data, max_pixels=50_000_000)
        assert image.size == (96, 72) and ext == formats.FORMATS[pil_format][0], pil_format
        assert decoded_within_bounds(data), pil_format


@st.composite
def mutated_files(draw):
    """A real file of an accepted format with a few bytes flipped, inserted, overwritten or cut off: what a
    damaged card, a broken download or a fuzzer sends."""
    data = bytearray(REAL_FILES[draw(st.sampled_from(sorted(REAL_FILES)))])
    for _ in range(draw(st.integers(1, 4))):
        if not data:  # cut to nothing already
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "insert", "overwrite", "truncate"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at:at + len(chunk)] = chunk
        else:
            del data[at:]
    return bytes(data)


@given(data=mutated_files())
def test_mutated_real_files_of_every_format_are_decoded_or_refused(data):
    decoded_within_bounds(data)


def test_searching_with_mutated_files_never_answers_500(client):
    import random
    rng = random.Random(0)
    for pil_format, data in sorted(REAL_FILES.items()):
        for cut in (8, 21, len(data) // 2, len(data) - 1):
            r = client.post("/api/search", data={"image": (io.BytesIO(data[:cut]), "q.bin")},
                            headers=csrf_headers(client), content_type="multipart/form-data")
            check_contract(r)
        flipped = bytearray(data)
        for _ in range(8):
            flipped[rng.randrange(len(flipped))] ^= 0xFF
        check_contract(client.post("/api/search", data={"image": (io.BytesIO(bytes(flipped)), "q.bin")},
                                   headers=csrf_headers(client), content_type="multipart/form-data"))
