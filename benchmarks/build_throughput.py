"""Gallery-build throughput against model-only throughput, measured in the same run; with ``--clip``, also
the build with CLIP on (each picture's CLIP image embedding kept too) and switching CLIP on for a built index.

    flock -x /tmp/cpu.lock python benchmarks/build_throughput.py [--images N] [--batch-size 8] [--clip b32]

Model-only: the weights' descriptor (the forward pass up to its block, and its pooling) on already-preprocessed
tensors, the same work the build does per picture. Build: build_gallery.py's full pipeline
(hashing, decoding and preprocessing in threads overlapped with inference, writing the index) on real JPEG
photos. Prints images/s for both and their ratio. ``--clip`` (b32, b16 or l14) adds, with random CLIP weights
in that shape (which cost what the real ones do): a fresh build with CLIP, and the incremental build that
gives the index built without CLIP its CLIP embeddings (CLIP alone). The model runs without the BLAS pin the
environment may set (``dinov2_numpy.blas.without_blas_pin``), and the BLAS kernel is printed; --clip needs
the open_clip_torch wheel for OpenAI's vocabulary (requirements-dev.txt).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dinov2_numpy import load_model  # noqa: E402
from dinov2_numpy.blas import blas_kernels, without_blas_pin  # noqa: E402
from dinov2_numpy.descriptor import descriptor_of, prepare  # noqa: E402
from indexer.builder import build_gallery  # noqa: E402
from indexer.config import load_settings  # noqa: E402
from indexer.embedding import embed_pixels  # noqa: E402
from indexer.evaluate import distinct_photos  # noqa: E402


def make_photos(folder: str, count: int) -> None:
    """``count`` distinct JPEG photos (real photos, each in a different crop) of typical camera-export size."""
    for i, image in enumerate(distinct_photos(count)):
        image.resize((1024, 768), Image.BICUBIC).save(os.path.join(folder, f"photo{i:04d}.jpg"), quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--clip", choices=("b32", "b16", "l14"), help="also build with CLIP of this shape")
    args = parser.parse_args()
    without_blas_pin()
    weights = load_settings()["WEIGHTS"]
    model = load_model(weights)
    print(f"BLAS: {blas_kernels()}")
    with tempfile.TemporaryDirectory() as tmp:
        gallery = os.path.join(tmp, "gallery")
        os.makedirs(gallery)
        make_photos(gallery, args.images)
        names = sorted(os.listdir(gallery))
        descriptor = descriptor_of(model)
        pixels = np.stack([prepare(os.path.join(gallery, n), descriptor) for n in names[: args.batch_size]])
        embed_pixels(model, pixels)
        start = time.perf_counter()
        for _ in range(0, args.images, args.batch_size):
            embed_pixels(model, pixels)
        model_rate = args.images / (time.perf_counter() - start)
        start = time.perf_counter()
        report = build_gallery(gallery, os.path.join(tmp, "index"), weights, batch_size=args.batch_size, progress=False)
        build_rate = report.embedded / (time.perf_counter() - start)
        clip_rates = _clip_builds(args, tmp, gallery, weights) if args.clip else None
    print(f"BLAS: {blas_kernels()}")
    print(f"model only: {model_rate:6.2f} images/s")
    print(f"full build: {build_rate:6.2f} images/s  ({args.images} JPEG photos 1024x768, batch {args.batch_size})")
    print(f"ratio build / model: {build_rate / model_rate:.2f}")
    if clip_rates:
        with_clip, clip_only = clip_rates
        print(f"full build with CLIP {args.clip}: {with_clip:6.2f} images/s ({with_clip / build_rate:.2f}x the build "
              f"without; {1000 / with_clip - 1000 / build_rate:.1f} ms more a picture)")
        print(f"switching CLIP {args.clip} on for the index built without it (CLIP alone): {clip_only:6.2f} images/s")


def _clip_builds(args, tmp: str, gallery: str, weights: str) -> tuple[float, float]:
    """images/s of a fresh build with CLIP, and of the incremental build adding CLIP to the index built without."""
    from clip_numpy.config import openai_config
    from clip_numpy.weights.random_init import write_random
    from tests.clip_helpers import open_clip_vocab
    clip = os.path.join(tmp, f"clip-{args.clip}.npz")
    write_random(clip, openai_config(args.clip), open_clip_vocab())
    start = time.perf_counter()
    report = build_gallery(gallery, os.path.join(tmp, "index-clip"), weights, batch_size=args.batch_size,
                           progress=False, clip_weights=clip)
    with_clip = report.embedded / (time.perf_counter() - start)
    start = time.perf_counter()
    report = build_gallery(gallery, os.path.join(tmp, "index"), weights, batch_size=args.batch_size, progress=False,
                           clip_weights=clip)
    return with_clip, report.clip_embedded / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
