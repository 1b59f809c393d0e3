"""The building blocks of the DINOv2 Vision Transformer, one per module."""
from .attention import Attention
from .block import Block
from .embeddings import Embeddings
from .linear import Linear
from .mlp import Mlp, SwiGLUFFN

__all__ = ["Attention", "Block", "Embeddings", "Linear", "Mlp", "SwiGLUFFN"]
