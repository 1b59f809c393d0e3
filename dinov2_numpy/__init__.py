"""DINOv2 in pure NumPy: ``load_model(path)(pixels)`` or ``load_model(path).embed(images)``."""
from .config import Dinov2Config, WeightsError
from .model import Dinov2, Dinov2Output, load_model, normalize_rows
from .preprocess import ImageError, ImageTooLarge, NotAnImage, load_rgb, preprocess

__all__ = ["Dinov2", "Dinov2Config", "Dinov2Output", "ImageError", "ImageTooLarge", "NotAnImage", "WeightsError",
           "load_model", "load_rgb", "normalize_rows", "preprocess"]
