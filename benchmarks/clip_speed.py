"""What a text query and a picture cost with the NumPy CLIP: ViT-B/32 (or B/16, L/14) with random weights in
the real shape, which cost what the real ones do.

    flock -x /tmp/cpu.lock python benchmarks/clip_speed.py [--model b32] [--repeat 30] [--images 16]

Prints, as medians over ``--repeat`` runs after a warm-up: a text query (tokenizing, the text tower and
normalising; batch 1, every word new to the tokenizer) for a short query and for one that fills the 77-token
context, and tokenizing alone; per picture, preprocessing real photos (from the scikit-image, scikit-learn and
mvtb-data wheels) from their files, and the vision tower at batch 1 and at batch 8; and the time to load the
weights. The model runs without the BLAS pin the environment may set, and the BLAS kernel is printed. Needs
the open_clip_torch wheel for OpenAI's vocabulary (requirements-dev.txt).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Callable

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dinov2_numpy.blas import blas_kernels, without_blas_pin  # noqa: E402
from clip_numpy import load_model, preprocess  # noqa: E402
from clip_numpy.config import OPENAI_SHAPES, openai_config  # noqa: E402
from clip_numpy.weights.random_init import write_random  # noqa: E402
from dinov2_numpy.bench import run_times  # noqa: E402
from tests.clip_helpers import open_clip_vocab  # noqa: E402
from tests.images import mvtb_photo, skimage_photo, sklearn_photo  # noqa: E402

SHORT = "red car at night"
PHOTOS = [skimage_photo("astronaut.png"), skimage_photo("chelsea.png"), skimage_photo("coffee.png"),
          skimage_photo("rocket.jpg"), sklearn_photo("china.jpg"), sklearn_photo("flower.jpg"),
          mvtb_photo("monalisa.png"), mvtb_photo("eiffel-1.png")]
LONG = "a photo of a red car parked at night in the rain under a street lamp, " * 6  # cut to 77 tokens


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` in milliseconds, after one warm-up call."""
    return 1000 * statistics.median(run_times(fn, repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=list(OPENAI_SHAPES), default="b32")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--images", type=int, default=16, help="real photos to preprocess and embed")
    args = parser.parse_args()
    without_blas_pin()
    with tempfile.TemporaryDirectory(prefix="clip-speed-") as tmp:
        path = os.path.join(tmp, "clip.npz")
        write_random(path, openai_config(args.model), open_clip_vocab())
        start = time.perf_counter()
        model = load_model(path)
        load_s = time.perf_counter() - start
        print(f"BLAS: {blas_kernels()}")
        print(f"CLIP {args.model} (random weights, {model.dim}-d space), loaded in {load_s:.2f}s; "
              f"medians of {args.repeat} runs")
        forget = model.tokenizer.forget_words  # each run a new query: no word merged before
        for label, text in (("short query", SHORT), ("77-token query", LONG)):
            tokens = int((model.tokenize(text) != 0).sum())
            ms = median_ms(lambda: (forget(), model.embed_texts([text])), args.repeat)
            print(f"text {label} ({tokens} tokens), batch 1: {ms:.1f} ms")
        for label, text in (("short query", SHORT), ("77-token query", LONG)):
            ms = median_ms(lambda: (forget(), model.tokenize(text)), args.repeat)
            print(f"  of which tokenizing the {label}: {ms:.2f} ms")
        photos = (PHOTOS * args.images)[:args.images]
        prep = median_ms(lambda: [preprocess(p) for p in photos], max(3, args.repeat // 10)) / len(photos)
        pixels = np.stack([preprocess(p) for p in photos])
        one = median_ms(lambda: model.encode_images(pixels[:1]), args.repeat)
        eight = median_ms(lambda: model.encode_images(pixels[:8]), max(3, args.repeat // 4)) / 8
        print(f"image, preprocessing a photo from its file: {prep:.1f} ms")
        print(f"image, vision tower: {one:.1f} ms at batch 1, {eight:.1f} ms a picture at batch 8")


if __name__ == "__main__":
    main()
