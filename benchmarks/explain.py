"""Why it matched: how right the correspondences are on real photos and their edits, and what one costs.

    python benchmarks/explain.py [--repeats 10]

Builds a small gallery of real photos (the PyPI wheels' photos) and asks ``app.services.explain.run_explain``,
the service behind ``POST /api/explain`` and ``python -m app.cli explain``, about edits of them:
- a horizontally mirrored copy: the correlation of the pairs' x in the query and in the result (-1 is a
  perfect mirror) and the median distance from the mirrored position, in the query's patches;
- centre crops (60 % and 75 % of each side): the median distance between where a pair lands in the original
  and where the crop came from, in the query's patches (a patch is 14 model pixels at the query's scale);
- the picture against itself: whether every pair joins a patch to itself.
Then the mirrored copies of other photos (``HELD_OUT``, not in the gallery of the tests), and the time of one
explanation at 224 pixels, the median of ``--repeats`` runs: after the search that found the result (its
query's patch tokens kept, so the model runs on the result alone) and cold, as ``app.cli explain`` runs
(both pictures), beside one search query's forward pass alone.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from app.services.engine import Engine  # noqa: E402
from app.services.explain import run_explain  # noqa: E402
from app.services.recent_patches import RecentPatches  # noqa: E402
from dinov2_numpy.blas import blas_kernels, without_blas_pin  # noqa: E402
from app.services.search import Limits, Query  # noqa: E402
from dinov2_numpy.descriptor import prepare  # noqa: E402
from indexer.builder import build_gallery  # noqa: E402
from indexer.config import load_settings  # noqa: E402
from tests.images import mvtb_photo, skimage_photo, sklearn_photo  # noqa: E402

PHOTOS = {"chelsea.png": skimage_photo("chelsea.png"), "astronaut.png": skimage_photo("astronaut.png"),
          "coffee.png": skimage_photo("coffee.png"), "china.jpg": sklearn_photo("china.jpg"),
          "eiffel.png": mvtb_photo("eiffel-1.png")}
HELD_OUT = {name: find(name) for find, names in (
    (skimage_photo, ["rocket.jpg", "motorcycle_left.png", "retina.jpg"]), (sklearn_photo, ["flower.jpg"]),
    (mvtb_photo, ["monalisa.png", "building2-1.png", "castle.png", "church.png", "notre-dame.png", "parks.png",
                  "penguins.png", "road.png", "street.png", "roof.png", "butterfly.jpg", "lab-scene.png",
                  "walls-l.png", "wally.png"])) for name in names}
LIMITS = Limits(max_pixels=50_000_000, max_bytes=50 << 20)


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def pairs(answer: dict) -> tuple[np.ndarray, np.ndarray]:
    return tuple(np.array([[p[s]["x"], p[s]["y"]] for p in answer["pairs"]]).reshape(-1, 2) for s in ("query", "result"))


def mirror_correlation(engine: Engine, path: str, gallery_id: int) -> tuple[float, int]:
    """The correlation of the pairs' x between a mirrored copy of ``path`` and the gallery's, and their number."""
    answer = run_explain(engine, Query("upload", data=png(ImageOps.mirror(Image.open(path).convert("RGB")))),
                         gallery_id, LIMITS)
    q, r = pairs(answer)
    return float(np.corrcoef(q[:, 0], r[:, 0])[0, 1]), len(q)


def held_out(engine: Engine, ids: dict[str, int]) -> None:
    print("\n| photo (held out) | mirrored: corr. of x |\n| --- | --- |")
    reached = 0
    for name in HELD_OUT:
        corr, count = mirror_correlation(engine, HELD_OUT[name], ids[name])
        reached += corr <= -0.9
        print(f"| {name} | {corr:.3f} ({count} pairs) |")
    print(f"{reached} of {len(HELD_OUT)} at -0.9 or below")


def geometry(engine: Engine, ids: dict[str, int]) -> None:
    print("| photo | mirrored: corr. of x | mirrored: median error | crop 60 %: median error | "
          "crop 75 %: median error | itself: identity |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, path in PHOTOS.items():
        original = Image.open(path).convert("RGB")
        ask = lambda image: run_explain(engine, Query("upload", data=png(image)), ids[name], LIMITS)  # noqa: E731
        mirrored = ask(ImageOps.mirror(original))
        q, r = pairs(mirrored)
        corr = np.corrcoef(q[:, 0], r[:, 0])[0, 1]
        mirror_error = np.median(np.abs(q[:, 0] - (original.width - r[:, 0]))) / mirrored["query"]["patch_size"]
        cells = [f"{corr:.3f} ({len(q)} pairs)", f"{mirror_error:.2f} patch"]
        for fraction in (0.6, 0.75):
            w, h = int(original.width * fraction), int(original.height * fraction)
            x0, y0 = (original.width - w) // 2, (original.height - h) // 2
            answer = ask(original.crop((x0, y0, x0 + w, y0 + h)))
            q, r = pairs(answer)
            error = np.median(np.linalg.norm(q + [x0, y0] - r, axis=1)) / answer["query"]["patch_size"]
            cells.append(f"{error:.2f} patch ({len(q)} pairs)")
        itself = ask(original)
        q, r = pairs(itself)
        cells.append(f"{'yes' if np.array_equal(q, r) else 'no'} ({len(q)} pairs)")
        print(f"| {name} | " + " | ".join(cells) + " |")


def timing(engine: Engine, ids: dict[str, int], repeats: int) -> None:
    picture = Image.open(PHOTOS["chelsea.png"]).convert("RGB")
    query = Query("upload", data=png(picture))

    def explained(after_search: bool) -> dict:
        engine.recent_patches = RecentPatches()  # nothing seen before this round
        if after_search:
            engine.embed_query(picture)
        return run_explain(engine, query, ids["astronaut.png"], LIMITS)

    pixels = prepare(picture, engine.descriptor)
    alone = []
    for _ in range(repeats):
        t = time.perf_counter()
        engine.queue.embed(pixels)
        alone.append((time.perf_counter() - t) * 1e3)
    rounds = {case: [explained(case) for _ in range(repeats + 1)][1:] for case in (True, False)}
    print(f"\none explanation at 224 px (median of {repeats}):")
    print("| stage | after its search (ms) | cold (ms) |\n| --- | --- | --- |")
    print("| pictures the model ran on | " + " | ".join(str(rounds[c][0]["pictures_run"]) for c in rounds) + " |")
    for key in ("decode", "decode_result", "preprocess", "inference", "match", "total"):
        cells = [f"{float(np.median([a['timings_ms'][key] for a in rounds[c]])):.1f}" for c in rounds]
        print(f"| {key} | " + " | ".join(cells) + " |")
    print(f"| a search query's forward pass alone (batch 1), for comparison | {float(np.median(alone)):.1f} | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    without_blas_pin()
    with tempfile.TemporaryDirectory() as tmp:
        gallery = os.path.join(tmp, "gallery")
        os.makedirs(gallery)
        for name, path in {**PHOTOS, **HELD_OUT}.items():
            shutil.copy(path, os.path.join(gallery, name))
        weights = load_settings()["WEIGHTS"]
        build_gallery(gallery, os.path.join(tmp, "index"), weights, progress=False)
        engine = Engine({"GALLERY_DIR": gallery, "INDEX_DIR": os.path.join(tmp, "index"), "WEIGHTS": weights})
        index = engine.index()
        ids = {name: int(index.ids[index.row_of_path(name)]) for name in {**PHOTOS, **HELD_OUT}}
        print(f"BLAS: {blas_kernels()}\n")
        geometry(engine, ids)
        held_out(engine, ids)
        timing(engine, ids, args.repeats)


if __name__ == "__main__":
    main()
