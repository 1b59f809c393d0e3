"""CLIP's preprocessing: equal to transformers' CLIPImageProcessor with OpenAI's settings (its defaults), on
real photos of every shape and mode the reference handles."""
import numpy as np
import pytest
from PIL import Image
from transformers import CLIPImageProcessorPil

from clip_numpy import preprocess
from tests.images import mvtb_photo, skimage_photo, sklearn_photo

# transformers' CLIPImageProcessor is this PIL backend when torchvision is not installed (our case); with
# torchvision it resizes with torchvision instead, which is not what OpenAI trained with.
REFERENCE = CLIPImageProcessorPil()


def reference(image: Image.Image) -> np.ndarray:
    return REFERENCE(image, return_tensors="np")["pixel_values"][0]


@pytest.mark.parametrize("path", [
    skimage_photo("astronaut.png"),      # RGB, square
    skimage_photo("chelsea.png"),        # RGB, landscape
    skimage_photo("coffee.png"),         # RGB, landscape 3:2
    skimage_photo("camera.png"),         # L
    skimage_photo("page.png"),           # L, wide
    sklearn_photo("flower.jpg"),         # JPEG
    sklearn_photo("china.jpg"),          # JPEG, landscape
    mvtb_photo("monalisa.png"),          # portrait
    skimage_photo("hubble_deep_field.jpg"),
])
def test_matches_clip_image_processor(path):
    ours = preprocess(path)
    assert ours.shape == (3, 224, 224) and ours.dtype == np.float32
    assert np.abs(ours - reference(Image.open(path))).max() <= 1e-5


@pytest.mark.parametrize("mode", ["P", "CMYK"])
def test_palette_and_cmyk_match_reference(mode):
    image = Image.open(sklearn_photo("china.jpg")).convert(mode)
    assert np.abs(preprocess(image) - reference(image)).max() <= 1e-5


def test_small_and_thin_pictures_match_reference():
    """Pictures smaller than the crop are enlarged; a strip keeps its centre."""
    photo = Image.open(skimage_photo("coffee.png"))
    for size in [(100, 60), (50, 400), (224, 225), (2000, 230)]:
        image = photo.resize(size, Image.BILINEAR)
        assert np.abs(preprocess(image) - reference(image)).max() <= 1e-5, size
