"""Real photos that ship inside PyPI wheels (scikit-image: CC0/public domain; scikit-learn; mvtb-data)."""
from __future__ import annotations

import importlib.util
import os


def package_dir(name: str) -> str:
    spec = importlib.util.find_spec(name)
    assert spec and spec.submodule_search_locations, f"package {name} is not installed"
    return list(spec.submodule_search_locations)[0]


def skimage_photo(name: str) -> str:
    return os.path.join(package_dir("skimage"), "data", name)


def sklearn_photo(name: str) -> str:
    return os.path.join(package_dir("sklearn"), "datasets", "images", name)


def mvtb_photo(name: str) -> str:
    return os.path.join(package_dir("mvtbdata"), "images", name)


def varied_photos() -> list[str]:
    """Photos of every shape and mode a preprocessing reference handles: square, landscape, wide, portrait,
    greyscale, JPEG."""
    return [
        skimage_photo("astronaut.png"),      # RGB, square
        skimage_photo("chelsea.png"),        # RGB, landscape
        skimage_photo("coffee.png"),         # RGB, landscape 3:2
        skimage_photo("camera.png"),         # L
        skimage_photo("page.png"),           # L, wide
        sklearn_photo("flower.jpg"),         # JPEG
        mvtb_photo("monalisa.png"),          # portrait
        skimage_photo("hubble_deep_field.jpg"),
    ]
