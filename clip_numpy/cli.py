"""``python -m clip_numpy {fetch,convert,info}``."""
from __future__ import annotations

import argparse
import json

from dinov2_numpy.cli import run_command


def _summary(meta: dict) -> str:
    return (f"{meta['model']}, {meta['projection_dim']}-d space, vision {meta['vision_hidden_size']}-d "
            f"x {meta['vision_num_layers']} layers / patch {meta['patch_size']}, text {meta['text_hidden_size']}-d "
            f"x {meta['text_num_layers']} layers")


def _fetch(args: argparse.Namespace) -> None:
    from .weights.hub import default_output, fetch
    output = args.output or default_output(args.model)
    meta = fetch(args.model, output, hub_url=args.hub_url, quiet=args.quiet)
    print(f"wrote {output} ({_summary(meta)})")


def _convert(args: argparse.Namespace) -> None:
    from .weights import convert
    meta = convert(args.src, args.dst, vocab=args.vocab, model=args.name)
    print(f"wrote {args.dst} ({_summary(meta)}; from {meta['source_dtype']} safetensors, "
          f"vocabulary from {meta['vocab_source']})")


def _info(args: argparse.Namespace) -> None:
    from .model import load_model
    from .weights.vocab import METADATA_KEY
    model = load_model(args.weights)
    metadata = {k: v for k, v in model.metadata.items() if k != METADATA_KEY}
    metadata["tokenizer"] = f"{model.tokenizer.vocab_size} tokens, context {model.tokenizer.context_length}"
    config = {"vision": model.config.vision.__dict__, "text": model.config.text.__dict__,
              **{k: v for k, v in model.config.__dict__.items() if k not in ("vision", "text")}}
    print(json.dumps({"config": config, "metadata": metadata}, indent=2, sort_keys=True))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clip_numpy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fetch", help="download and convert OpenAI's CLIP weights and tokenizer from the model hub")
    f.add_argument("--model", choices=("b32", "b16", "l14"), default="b32",
                   help="ViT-B/32 (default), ViT-B/16 or ViT-L/14")
    f.add_argument("--output", help="destination .npz (default: weights/<name>.npz)")
    f.add_argument("--hub-url", help="model hub base URL (default: $HF_ENDPOINT or https://huggingface.co)")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=_fetch)

    c = sub.add_parser("convert", help="convert a CLIPModel model.safetensors (fp32/fp16/bf16), or its folder, "
                       "to the canonical .npz")
    c.add_argument("src", help="model.safetensors, or a folder in Hugging Face layout")
    c.add_argument("dst")
    c.add_argument("--vocab", help="merges.txt, a folder holding it (and vocab.json), or OpenAI's "
                   "bpe_simple_vocab_16e6.txt.gz (default: SRC's folder)")
    c.add_argument("--name", help="model name to record in the metadata")
    c.set_defaults(func=_convert)

    i = sub.add_parser("info", help="print a CLIP weights file's configuration and metadata")
    i.add_argument("weights")
    i.set_defaults(func=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; errors print one line and exit with status 2."""
    return run_command(build_parser(), argv)
