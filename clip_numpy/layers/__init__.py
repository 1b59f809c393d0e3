"""CLIP's own layers: its two embeddings and the encoder stack, whose blocks are ``dinov2_numpy.layers.Block``."""
from .encoder import Encoder, clip_layout
from .text_embeddings import TextEmbeddings
from .vision_embeddings import VisionEmbeddings

__all__ = ["Encoder", "TextEmbeddings", "VisionEmbeddings", "clip_layout"]
