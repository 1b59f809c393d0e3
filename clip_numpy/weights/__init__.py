"""Reading, converting and fetching CLIP weights; the file format is DINOv2's canonical ``.npz``."""
from .convert import convert

__all__ = ["convert"]
