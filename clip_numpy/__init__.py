"""OpenAI's CLIP in pure NumPy, beside DINOv2 and sharing its layers: ``load_model(path).embed_texts([...])``."""
from dinov2_numpy.config import WeightsError

from .config import ClipConfig, TowerConfig
from .model import Clip, load_model
from .preprocess import preprocess
from .tokenizer import Tokenizer

__all__ = ["Clip", "ClipConfig", "Tokenizer", "TowerConfig", "WeightsError", "load_model", "preprocess"]
