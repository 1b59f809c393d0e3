"""Gallery-build throughput against model-only throughput, measured in the same run.

    python benchmarks/build_throughput.py [--images N] [--batch-size 8]

Model-only: the weights' descriptor (the forward pass up to its block, and its pooling) on already-preprocessed
tensors, the same work the build does per picture. Build: build_gallery.py's full pipeline
(hashing, decoding and preprocessing in threads overlapped with inference, writing the index) on real JPEG
photos. Prints images/s for both and their ratio, and the BLAS kernel, which runs without the environment's
pin (``dinov2_numpy.blas.without_blas_pin``).
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
    print(f"model only: {model_rate:6.2f} images/s")
    print(f"full build: {build_rate:6.2f} images/s  ({args.images} JPEG photos 1024x768, batch {args.batch_size})")
    print(f"ratio build / model: {build_rate / model_rate:.2f}")


if __name__ == "__main__":
    main()
