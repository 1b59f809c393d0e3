"""Click-an-object segmentation without a segmentation model: DINOv2 patch tokens that resemble the clicked
patch, grown into the connected region around the click, with holes filled."""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from dinov2_numpy import Dinov2, normalize_rows, preprocess

MAX_SIDE = 448  # 32 x 32 patches at most: small enough to outline objects, fast enough for a click
THRESHOLD = 0.55  # cosine similarity to the clicked patch


@dataclass
class ObjectMask:
    """The clicked object: its patches and its box (not an index segment, ``indexer.generations.Segment``)."""

    mask: np.ndarray  # (rows, cols) bool on the patch grid
    bbox: tuple[int, int, int, int]  # x, y, w, h in image pixels
    image_size: tuple[int, int]

    @property
    def coverage(self) -> float:
        return float(self.mask.mean())

    def mask_png(self, max_side: int = 512) -> str:
        """The mask as a data URL: a PNG of the image's aspect ratio, the object tinted and soft-edged, the rest
        transparent, ready to lay over the picture."""
        w, h = self.image_size
        scale = min(1.0, max_side / max(w, h))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        alpha = Image.fromarray(self.mask.astype(np.uint8) * 150, "L").resize(size, Image.BILINEAR)
        image = Image.new("RGBA", size, (13, 110, 253, 0))
        image.putalpha(alpha)
        buf = io.BytesIO()
        image.save(buf, "PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    def json(self) -> dict:
        x, y, w, h = self.bbox
        return {"bbox": {"x": x, "y": y, "w": w, "h": h}, "grid": list(self.mask.shape),
                "coverage": round(self.coverage, 4), "mask": self.mask_png()}


def segment(model: Dinov2, image: Image.Image, x: float, y: float, threshold: float = THRESHOLD) -> ObjectMask:
    """The object under pixel (x, y) of an RGB ``image``; the caller checks the point lies inside it."""
    width, height = image.size
    pixels = preprocess(image, dynamic=True, max_side=MAX_SIDE)
    out = model(pixels[None])
    rows, cols = out.grid
    tokens = normalize_rows(out.patch_tokens[0])
    r, c = min(int(y / height * rows), rows - 1), min(int(x / width * cols), cols - 1)
    similar = (tokens @ tokens[r * cols + c]).reshape(rows, cols) >= threshold
    labels, _ = ndimage.label(similar)
    mask = ndimage.binary_fill_holes(labels == labels[r, c])
    ys, xs = np.nonzero(mask)
    x0, x1 = int(xs.min() * width / cols), int(np.ceil((xs.max() + 1) * width / cols))
    y0, y1 = int(ys.min() * height / rows), int(np.ceil((ys.max() + 1) * height / rows))
    x1, y1 = min(x1, width), min(y1, height)
    return ObjectMask(mask, (x0, y0, x1 - x0, y1 - y0), (width, height))
