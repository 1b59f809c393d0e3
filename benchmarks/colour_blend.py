"""What the colour blend (``color_weight``) changes, on two sets of real photos.

    python benchmarks/colour_blend.py [--weights-to-try 0 0.1 0.2 0.3 0.5 0.8]

- The near-duplicate benchmark (every demo original and its 17 edits: crops, JPEG, noise, text, picture in
  picture, greyscale...): a copy should be found whatever happened to its colours.
- A colour-dependent set made from the same originals: each photo in four hues (turned 0, 90, 180 and 270
  degrees round the colour circle), each hue in three light edits (crop, JPEG 50, half size). A query's
  relevant pictures are the other edits of the same photo in the same hue: the colour is the point.

Every picture queries all the others, ranked as the app ranks them (``Engine.search``): the 200 visually
nearest are reordered by (1 - w) x visual + w x colour similarity. Prints P@1 and mAP per weight.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from app.services.engine import RERANK_POOL  # noqa: E402
from dinov2_numpy import load_model  # noqa: E402
from dinov2_numpy.descriptor import descriptor_of, prepare  # noqa: E402
from indexer.colour import colour_histograms  # noqa: E402
from indexer.config import load_settings  # noqa: E402
from indexer.embedding import embed_pixels  # noqa: E402
from indexer.evaluate import (  # noqa: E402
    average_precision,
    benchmark_originals,
    make_near_duplicate_set,
)


def hue_turned(image: Image.Image, degrees: int) -> Image.Image:
    h, s, v = image.convert("HSV").split()
    turn = round(degrees / 360 * 256)
    return Image.merge("HSV", (h.point(lambda x: (x + turn) % 256), s, v)).convert("RGB")


def colour_set(originals: list[str], folder: str) -> list[tuple[str, str]]:
    """Four hues of each original, three light edits of each hue; label = original and hue."""
    items = []
    for path in originals:
        name = os.path.splitext(os.path.basename(path))[0]
        image = Image.open(path).convert("RGB")
        for degrees in (0, 90, 180, 270):
            turned = hue_turned(image, degrees)
            w, h = turned.size
            edits = {"crop": turned.crop((w // 20, h // 20, w - w // 20, h - h // 20)),
                     "half": turned.resize((max(1, w // 2), max(1, h // 2)), Image.BICUBIC), "jpeg": turned}
            for edit, picture in edits.items():
                out = os.path.join(folder, f"{name}-{degrees}-{edit}.jpg")
                picture.save(out, quality=50 if edit == "jpeg" else 90)
                items.append((out, f"{name}-{degrees}"))
    return items


def describe(model, items: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    features, colours = [], []
    descriptor = descriptor_of(model)  # prepared as the app prepares them, colours from the same pixels
    for start in range(0, len(items), 16):
        pixels = np.stack([prepare(p, descriptor) for p, _ in items[start:start + 16]])
        features.append(embed_pixels(model, pixels))
        colours.append(colour_histograms(pixels))
    return np.concatenate(features), np.concatenate(colours), np.array([label for _, label in items])


def ranked_metrics(features, colours, labels, weight: float) -> tuple[float, float]:
    """P@1 and mAP with every picture as a query, ranked as the app does with this colour weight."""
    visual = features @ features.T
    colour = colours @ colours.T
    p1, aps = [], []
    for i in range(len(labels)):
        v = visual[i].copy()
        v[i] = -np.inf
        order = np.argsort(-v, kind="stable")[:-1]
        if weight > 0:
            pool = order[:RERANK_POOL]
            blended = (1 - weight) * visual[i, pool] + weight * colour[i, pool]
            order = np.concatenate([pool[np.argsort(-blended, kind="stable")], order[RERANK_POOL:]])
        relevant = labels[order] == labels[i]
        if not relevant.any():
            continue
        p1.append(relevant[0])
        aps.append(average_precision(relevant))
    return float(np.mean(p1)), float(np.mean(aps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-to-try", type=float, nargs="+", default=[0, 0.1, 0.2, 0.3, 0.5, 0.8])
    args = parser.parse_args()
    model = load_model(load_settings()["WEIGHTS"])
    work = tempfile.mkdtemp(prefix="colour-blend-")
    originals = benchmark_originals()
    sets = {"near-duplicates": make_near_duplicate_set(originals, os.path.join(work, "dup")),
            "colour-dependent": colour_set(originals, work)}
    described = {name: describe(model, items) for name, items in sets.items()}
    print("| colour weight | " + " | ".join(f"{n} P@1 | {n} mAP" for n in sets) + " |")
    print("| --- | " + " | ".join("--- | ---" for _ in sets) + " |")
    for w in args.weights_to_try:
        cells = []
        for name in sets:
            p1, ap = ranked_metrics(*described[name], w)
            cells += [f"{p1:.3f}", f"{ap:.3f}"]
        print(f"| {w:g} | " + " | ".join(cells) + " |", flush=True)
    print(f"({', '.join(f'{n}: {len(i)} pictures' for n, i in sets.items())})")


if __name__ == "__main__":
    main()
