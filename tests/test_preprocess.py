"""Preprocessing: equal to transformers' DINOv2 image processor, plus the image modes it does not handle."""
import io

import numpy as np
import pytest
from PIL import Image
from transformers import BitImageProcessorPil

from dinov2_numpy import ImageError, load_rgb, preprocess
from tests.images import mvtb_photo, skimage_photo, sklearn_photo, varied_photos

# The processor settings of facebook/dinov2-* (preprocessor_config.json).
REFERENCE = BitImageProcessorPil(
    size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}, resample=3,
    image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], do_center_crop=True)


def reference(image: Image.Image) -> np.ndarray:
    return REFERENCE(image, return_tensors="np")["pixel_values"][0]


@pytest.mark.parametrize("path", varied_photos())
def test_matches_transformers_processor(path):
    ours = preprocess(path)
    assert ours.shape == (3, 224, 224) and ours.dtype == np.float32
    assert np.abs(ours - reference(Image.open(path))).max() <= 1e-5


@pytest.mark.parametrize("mode", ["P", "CMYK"])
def test_palette_and_cmyk_match_reference(mode):
    image = Image.open(sklearn_photo("china.jpg")).convert(mode)
    assert np.abs(preprocess(image) - reference(image)).max() <= 1e-5


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 32, 64))
    rgb = load_rgb(rgba)
    assert rgb.mode == "RGB"
    assert rgb.getpixel((48, 10)) == (255, 255, 255)
    assert rgb.getpixel((10, 10)) == (0, 0, 255)
    logo = load_rgb(skimage_photo("logo.png"))  # a real RGBA picture with a transparent background
    assert logo.getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    photo = Image.open(skimage_photo("chelsea.png")).convert("RGB")  # 451 x 300
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    buf = io.BytesIO()
    photo.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    upright = load_rgb(buf.getvalue())
    assert upright.size == (300, 451)


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    camera = np.asarray(Image.open(skimage_photo("camera.png")), np.uint16) * 257
    buf = io.BytesIO()
    Image.fromarray(camera).save(buf, "PNG")  # a real 16-bit greyscale PNG
    assert Image.open(buf).mode.startswith("I")
    rgb = np.asarray(load_rgb(buf.getvalue()))
    assert np.abs(rgb[..., 0].astype(int) - camera // 257).max() <= 1
    assert rgb.std() > 30  # PIL's plain convert would clip almost everything to white


def test_animated_gif_uses_first_frame():
    gif = Image.open(skimage_photo("no_time_for_that_tiny.gif"))
    assert gif.n_frames > 1
    first = np.asarray(gif.convert("RGB"))
    assert np.array_equal(np.asarray(load_rgb(skimage_photo("no_time_for_that_tiny.gif"))), first)


def test_dynamic_resolution_keeps_whole_image_on_patch_multiples():
    pixels = preprocess(skimage_photo("coffee.png"), dynamic=True)  # 600 x 400
    assert pixels.shape == (3, 350, 518)
    small = preprocess(skimage_photo("microaneurysms.png"), dynamic=True)  # 102 x 102 stays near its size
    assert small.shape == (3, 98, 98)


def test_broken_bytes_raise_image_error():
    with pytest.raises(ImageError):
        preprocess(b"definitely not an image")
    data = open(sklearn_photo("china.jpg"), "rb").read()
    with pytest.raises(ImageError):
        preprocess(data[: len(data) // 3])


@pytest.mark.parametrize("path, size", [
    (skimage_photo("chelsea.png"), None),              # landscape: the crop is narrower than the picture
    (mvtb_photo("monalisa.png"), None),                # portrait: shorter than it
    (skimage_photo("astronaut.png"), (300, 5000)),     # very tall: resized through the crop's box only
    (skimage_photo("coffee.png"), (90, 60)),           # smaller than the crop: scaled up
])
def test_input_box_is_the_part_of_the_picture_the_model_sees(path, size):
    """Cutting ``input_box`` out of the picture and resizing it to 224 gives the model input (to resampling),
    so that a patch centre maps back into the picture's own pixels through it."""
    from dinov2_numpy.preprocess import input_box, normalize
    image = Image.open(path).convert("RGB")
    if size:
        image = image.resize(size, Image.BICUBIC)
    x, y, w, h = input_box(*image.size)
    assert 0 <= x and 0 <= y and x + w <= image.width + 1e-6 and y + h <= image.height + 1e-6
    assert w == pytest.approx(h, rel=0.01) and min(image.size) * 224 / 256 == pytest.approx(min(w, h), rel=0.01)
    cut = normalize(image.resize((224, 224), Image.BICUBIC, box=(x, y, x + w, y + h)))
    assert np.abs(cut - preprocess(image)).mean() < 0.01
    shifted = normalize(image.resize((224, 224), Image.BICUBIC, box=(x + w / 16, y, x + w + w / 16, y + h)))
    assert np.abs(shifted - preprocess(image)).mean() > 0.05  # a box off by one patch is told apart
    assert input_box(*image.size, dynamic=True) == (0.0, 0.0, float(image.width), float(image.height))
