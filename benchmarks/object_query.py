"""Click-an-object: which query vector retrieves better, re-embedding the object's crop or pooling the
object's patch tokens? Measured on the near-duplicate benchmark.

    python benchmarks/object_query.py [--originals 12]

Every image of the near-duplicate set is a query, with a click at its centre (where these photos' subjects
are). The gallery holds the weights' descriptors of all other images, as the app's index does; the pooled
query averages the object's patch tokens from the descriptor's block. Prints P@1 and mAP for both query
vectors, and for the whole image as the reference.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from app.services.segment import MAX_SIDE, segment  # noqa: E402
from dinov2_numpy import load_model, load_rgb, normalize_rows, preprocess  # noqa: E402
from dinov2_numpy.descriptor import descriptor_of, run  # noqa: E402
from indexer.config import load_settings  # noqa: E402
from indexer.evaluate import (  # noqa: E402
    benchmark_originals,
    make_near_duplicate_set,
    ranking_metrics,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--originals", type=int, default=12)
    args = parser.parse_args()
    model = load_model(load_settings()["WEIGHTS"])
    descriptor = descriptor_of(model)
    with tempfile.TemporaryDirectory() as tmp:
        items = make_near_duplicate_set(benchmark_originals(limit=args.originals), tmp)
        labels = np.array([label for _, label in items])
        gallery = model.embed([p for p, _ in items])
        crop, pooled = [], []
        for path, _ in items:
            image = load_rgb(path)
            found = segment(model, image, image.width / 2, image.height / 2)
            x, y, w, h = found.bbox
            crop.append(model.embed([image.crop((x, y, x + w, y + h))])[0])
            out = run(model, preprocess(image, dynamic=True, max_side=MAX_SIDE)[None], [descriptor])
            tokens = out.intermediate[descriptor.block]
            if descriptor.final_norm:
                tokens = model.final_norm(tokens)
            patches = tokens[0, 1 + model.config.num_registers:]
            pooled.append(patches[found.mask.reshape(-1)].mean(0))
    print(f"{len(items)} queries, a click at the centre of each")
    for name, q in (("whole image (reference)", gallery), ("re-embedded object crop", normalize_rows(np.array(crop))),
                    ("pooled object patch tokens", normalize_rows(np.array(pooled)))):
        found = ranking_metrics(q @ gallery.T, labels)
        print(f"{name:28s} P@1 {found['P@1']:.3f}  mAP {found['mAP']:.3f}")


if __name__ == "__main__":
    main()
