"""Camera files made from the PyPI photos: DNGs that LibRaw opens as the RGGB mosaic written, whose half-size
demosaic looks like the photo to the model, with the preview and the EXIF as written; camera-size JPEG and
HEIC pictures."""
import io

import numpy as np
import pytest
import rawpy
from PIL import ExifTags, Image

from indexer import camera_files as cf
from tests.images import mvtb_photo, skimage_photo, sklearn_photo

PHOTOS = [skimage_photo("chelsea.png"), skimage_photo("astronaut.png"), sklearn_photo("china.jpg"),
          mvtb_photo("eiffel-1.png")]
# Measured on all 38 benchmark originals at 1 MP: the lowest cosine of the half-size demosaic against the photo
# is 0.987 (mvtb-tags.png, the mean 0.995); the preview JPEG's lowest is 0.997.
DEMOSAIC_COSINE = 0.98
PREVIEW_COSINE = 0.995


def photo(path: str, megapixels: float = 0.3) -> Image.Image:
    return cf.camera_size(Image.open(path), megapixels)


@pytest.mark.parametrize("bits", [16, 12])
def test_dng_is_the_rggb_mosaic_with_its_levels_and_white_balance(tmp_path, bits):
    image = photo(PHOTOS[0])
    path = str(tmp_path / "shot.dng")
    cf.write_dng(image, path, bits=bits)
    black, white = cf.levels(bits)
    with rawpy.imread(path) as raw:
        samples = raw.raw_image_visible
        assert samples.shape == (image.height, image.width)
        assert np.array_equal(samples, cf.bayer_mosaic(image, bits))
        assert black <= samples.min() and samples.max() <= white
        assert raw.raw_pattern.tolist() == [[0, 1], [3, 2]] and raw.color_desc == b"RGBG"
        assert raw.black_level_per_channel == [black] * 4 and raw.white_level == white
        assert raw.camera_whitebalance[:3] == pytest.approx(cf.DAYLIGHT_GAINS)


def test_bayer_samples_are_linear_light_over_the_gains():
    grey = Image.new("RGB", (4, 4), (188, 188, 188))  # sRGB 188 is 50% linear light
    black, white = cf.levels(16)
    samples = cf.bayer_mosaic(grey)
    light = (samples.astype(float) - black) / (white - black)
    assert light[0, 0] == pytest.approx(0.5 / 2.0, abs=0.005)  # red
    assert light[0, 1] == light[1, 0] == pytest.approx(0.5, abs=0.005)  # greens
    assert light[1, 1] == pytest.approx(0.5 / 1.5, abs=0.005)  # blue


def test_half_size_demosaic_and_preview_look_like_the_photo(tmp_path, model):
    images, demosaiced, previews = [], [], []
    for i, source in enumerate(PHOTOS):
        image = photo(source, 1.0)
        path = str(tmp_path / f"{i}.dng")
        cf.write_dng(image, path, preview=(1024, 1024))
        with rawpy.imread(path) as raw:
            demosaiced.append(Image.fromarray(raw.postprocess(use_camera_wb=True, half_size=True)))
            previews.append(Image.open(io.BytesIO(raw.extract_thumb().data)))
        images.append(image)
    e = model.embed(images + demosaiced + previews)
    n = len(images)
    assert min(float(e[i] @ e[n + i]) for i in range(n)) >= DEMOSAIC_COSINE
    assert min(float(e[i] @ e[2 * n + i]) for i in range(n)) >= PREVIEW_COSINE
    assert demosaiced[0].size == (images[0].width // 2, images[0].height // 2)


@pytest.mark.parametrize("preview, size", [("full", (600, 400)), ((160, 160), (160, 107))])
def test_preview_is_an_embedded_jpeg_of_the_size_asked(tmp_path, preview, size):
    image = photo(skimage_photo("coffee.png"), 0.24)
    path = str(tmp_path / "shot.dng")
    cf.write_dng(image, path, preview=preview)
    with rawpy.imread(path) as raw:
        thumb = raw.extract_thumb()
        assert raw.raw_image_visible.shape == (400, 600)
    assert thumb.format == rawpy.ThumbFormat.JPEG
    jpeg = Image.open(io.BytesIO(thumb.data))
    assert jpeg.format == "JPEG" and jpeg.size == size
    difference = np.abs(np.asarray(jpeg, float) - np.asarray(image.resize(size, Image.LANCZOS), float))
    assert difference.mean() < 5  # the JPEG and a different resampling of a textured photo


def test_no_preview_means_no_thumbnail(tmp_path):
    path = str(tmp_path / "shot.dng")
    cf.write_dng(photo(PHOTOS[1]), path)
    with rawpy.imread(path) as raw, pytest.raises(rawpy.LibRawNoThumbnailError):
        raw.extract_thumb()


CAPTURE = cf.Capture(make="Acme", model="Acme R24", lens="Acme 50mm F1.4", taken="2023:11:05 07:30:15",
                     exposure=(1, 60), f_number=(4, 1), iso=800, focal_length=(50, 1), orientation=6)


@pytest.mark.parametrize("preview", [None, (320, 320)])
def test_metadata_as_written_through_libraw_and_pillow(tmp_path, preview):
    path = str(tmp_path / "shot.dng")
    image = photo(PHOTOS[2])
    cf.write_dng(image, path, preview=preview, capture=CAPTURE)
    with rawpy.imread(path) as raw:
        other, lens, flip = raw.other, raw.lens, raw.sizes.flip
        upright = raw.postprocess(use_camera_wb=True, half_size=True)
    assert (other.iso_speed, other.aperture, other.focal_length) == (800, pytest.approx(4), pytest.approx(50))
    assert other.shutter_speed == pytest.approx(1 / 60)
    assert other.timestamp.isoformat() == "2023-11-05T07:30:15"
    assert lens.model == "Acme 50mm F1.4" and flip == 6
    assert upright.shape[:2] == (image.width // 2, image.height // 2)  # turned upright
    # LibRaw's make and model are not exposed by rawpy; Pillow reads every tag from the TIFF structure
    # without decoding, even where it cannot open the file as an image (a CFA as IFD0).
    exif = Image.Exif()
    with open(path, "rb") as f:
        exif.load_from_fp(f)
        sub = exif.get_ifd(ExifTags.IFD.Exif)  # read from the file when asked for
    base = ExifTags.Base
    assert (exif[base.Make], exif[base.Model], exif[base.Orientation]) == ("Acme", "Acme R24", 6)
    assert sub[base.DateTimeOriginal] == "2023:11:05 07:30:15" and sub[base.LensModel] == "Acme 50mm F1.4"
    assert (sub[base.ExposureTime], sub[base.FNumber]) == (pytest.approx(1 / 60), 4)
    assert (sub[base.ISOSpeedRatings], sub[base.FocalLength]) == (800, 50)


def test_camera_size_keeps_the_aspect_ratio():
    image = Image.new("RGB", (600, 400))
    assert cf.camera_size(image, 24).size == (6000, 4000)
    assert cf.camera_size(Image.new("RGB", (451, 300)), 12).size == (4248, 2826)


@pytest.mark.parametrize("writer, fmt, size", [(cf.write_jpeg, "JPEG", (548, 364)),
                                               (cf.write_heic, "HEIF", (364, 548))])
def test_jpeg_and_heic_carry_the_capture(tmp_path, writer, fmt, size):
    image = photo(PHOTOS[3], 0.2)
    path = str(tmp_path / "shot")
    writer(image, path, capture=CAPTURE)
    with Image.open(path) as written:
        exif = written.getexif()
        # pillow-heif stores a HEIC's orientation as HEIF's own rotation, which its decoder applies
        assert written.format == fmt and written.size == size
        assert exif[ExifTags.Base.Model] == "Acme R24"
        assert exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] == "2023:11:05 07:30:15"
        upright = written.convert("RGB") if fmt == "JPEG" else written.convert("RGB").transpose(Image.ROTATE_90)
    assert np.abs(np.asarray(upright, float) - np.asarray(image, float)).mean() < 4
