"""What the CLIP tests share: OpenAI's vocabulary and tokenizer as the open_clip_torch wheel ships them, and
transformers' CLIPModel with random weights in a named shape, converted by our CLI. torch and transformers are
imported only where used, so that a benchmark may take the vocabulary without loading them."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

from clip_numpy.config import OPENAI_SHAPES
from tests.images import package_dir

if TYPE_CHECKING:
    from transformers import CLIPConfig, CLIPModel

def open_clip_vocab() -> str:
    """OpenAI's BPE merges inside the MIT-licensed open_clip_torch wheel."""
    return os.path.join(package_dir("open_clip"), "bpe_simple_vocab_16e6.txt.gz")


def open_clip_tokenizer():
    """open_clip's copy of OpenAI's ``SimpleTokenizer`` (``open_clip/tokenizer.py``), loaded from its file: the
    package's ``__init__`` imports its models, which need torchvision, and only the tokenizer is wanted here."""
    path = os.path.join(package_dir("open_clip"), "tokenizer.py")
    spec = importlib.util.spec_from_file_location("open_clip_reference_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SimpleTokenizer(open_clip_vocab())


def clip_config(model: str, vision_layers: int | None = None, text_layers: int | None = None) -> CLIPConfig:
    """transformers' configuration of OpenAI's ``model`` (``b32``, ``b16``, ``l14``), with as many layers as given."""
    from transformers import CLIPConfig
    (vw, vl, vh, patch), (tw, tl, th), projection = OPENAI_SHAPES[model]
    return CLIPConfig(
        vision_config=dict(hidden_size=vw, intermediate_size=4 * vw, num_hidden_layers=vision_layers or vl,
                           num_attention_heads=vh, patch_size=patch, image_size=224),
        text_config=dict(hidden_size=tw, intermediate_size=4 * tw, num_hidden_layers=text_layers or tl,
                         num_attention_heads=th, eos_token_id=2),  # 2: what OpenAI's configs on the hub say
        projection_dim=projection)


def random_clip(config: CLIPConfig, seed: int = 0) -> CLIPModel:
    """A random-init CLIPModel whose LayerNorms and embeddings are far from their initial values."""
    import torch
    from transformers import CLIPModel
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
            elif "class_embedding" in name or "position_embedding" in name:
                p.normal_(std=0.5)
    return model


def convert_with_cli(folder, dst, *extra: str) -> subprocess.CompletedProcess:
    """``python -m clip_numpy convert FOLDER DST --vocab <open_clip's>`` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "clip_numpy", "convert", str(folder), str(dst),
                           "--vocab", open_clip_vocab(), *extra], capture_output=True, text=True)


def hub_tokenizer_files(reference) -> dict[str, bytes]:
    """``merges.txt`` and ``vocab.json`` as the hub ships them for OpenAI's checkpoints, written from open_clip's
    tokenizer ``reference`` (its ranks and its token ids, special tokens under the hub's names)."""
    pairs = sorted(reference.bpe_ranks.items(), key=lambda item: item[1])
    merges = "#version: 0.2\n" + "\n".join(" ".join(pair) for pair, _ in pairs) + "\n"
    names = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {names.get(token, token): i for token, i in reference.encoder.items()}
    return {"merges.txt": merges.encode("utf-8"), "vocab.json": json.dumps(vocab).encode("utf-8")}
