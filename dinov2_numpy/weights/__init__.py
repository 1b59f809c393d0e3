"""Reading, converting and fetching DINOv2 weights. The canonical file is an uncompressed ``.npz``."""
from .convert import convert
from .npz import load_npz, save_npz

__all__ = ["convert", "load_npz", "save_npz"]
