"""CLIP's input pipeline, as transformers' ``CLIPImageProcessor`` does it: shortest side to the model's image
size (PIL bicubic), centre crop to a square of that size, scale 1/255, OpenAI's mean and std. It is
DINOv2's pipeline with other sizes and statistics, so it is the same code."""
from __future__ import annotations

import numpy as np

from dinov2_numpy.preprocess import ImageInput
from dinov2_numpy.preprocess import preprocess as _prepare

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
IMAGE_SIZE = 224  # OpenAI's B/32, B/16 and L/14


def preprocess(image: ImageInput, size: int = IMAGE_SIZE, max_pixels: int | None = None) -> np.ndarray:
    """One image (PIL image, path or encoded bytes) as (3, size, size) float32 model input."""
    return _prepare(image, resize=size, crop=size, max_pixels=max_pixels, mean=CLIP_MEAN, std=CLIP_STD)
