"""The building blocks of the DINOv2 Vision Transformer, one per module (CLIP's towers share them)."""
from .attention import Attention
from .block import DINOV2_LAYOUT, Block, BlockLayout
from .embeddings import Embeddings, patchify
from .linear import Linear
from .mlp import Mlp, SwiGLUFFN

__all__ = ["Attention", "Block", "BlockLayout", "DINOV2_LAYOUT", "Embeddings", "Linear", "Mlp", "SwiGLUFFN",
           "patchify"]
