"""CLIP's preprocessing: equal to transformers' CLIPImageProcessor with OpenAI's settings (its defaults), on
real photos of every shape and mode the reference handles."""
import numpy as np
import pytest
from PIL import Image
from transformers import CLIPImageProcessorPil

from clip_numpy import preprocess
from tests.images import skimage_photo, sklearn_photo, varied_photos

# transformers' CLIPImageProcessor is this PIL backend when torchvision is not installed (our case); with
# torchvision it resizes with torchvision instead, which is not what OpenAI trained with.
REFERENCE = CLIPImageProcessorPil()


def cases() -> dict[str, Image.Image]:
    """The photos as they are; a JPEG as palette and CMYK; a photo smaller than the crop, thin strips, and one
    a pixel off square."""
    images = {path.rsplit("/", 1)[1]: Image.open(path) for path in varied_photos() + [sklearn_photo("china.jpg")]}
    china = Image.open(sklearn_photo("china.jpg"))
    images.update({f"china {mode}": china.convert(mode) for mode in ("P", "CMYK")})
    coffee = Image.open(skimage_photo("coffee.png"))
    images.update({f"coffee {w}x{h}": coffee.resize((w, h), Image.BILINEAR)
                   for w, h in [(100, 60), (50, 400), (224, 225), (2000, 230)]})
    return images


CASES = cases()


@pytest.mark.parametrize("name", list(CASES))
def test_matches_clip_image_processor(name):
    image = CASES[name]
    ours = preprocess(image)
    assert ours.shape == (3, 224, 224) and ours.dtype == np.float32
    assert np.abs(ours - REFERENCE(image, return_tensors="np")["pixel_values"][0]).max() <= 1e-5
