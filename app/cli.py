"""Command-line search and evaluation against the same configuration as the web app.

    python -m app.cli search photo.jpg [more.jpg | folder ...] [--top-k 5] [--json | --jsonl] [--grid out.png]
    python -m app.cli search --text "red car at night" [photo.jpg ...] [--space clip]   (CLIP_WEIGHTS set)
    python -m app.cli explain QUERY GALLERY_PATH [--out pairs.png] [--pairs 30] [--json]
    python -m app.cli evaluate LABELLED_FOLDER_OR_CSV
    python -m app.cli near-dup-benchmark [--originals N] [--out DIR]
    python -m app.cli tune-descriptor [LABELLED_FOLDER_OR_CSV ...] [--write]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from indexer.formats import is_image_name

from .config import load_config


def _queries(args: list[str]) -> list[str]:
    out = []
    for a in args:
        if os.path.isdir(a):
            out += sorted(os.path.join(root, n) for root, _, names in os.walk(a) for n in names if is_image_name(n))
        else:
            out.append(a)
    return out


def search_file(engine, path: str, limits, top_k: int, text: str | None = None, space: str = "dinov2") -> dict:
    """The API's result for one query file (with ``text``: the picture plus the words, in CLIP's space), or
    ``{"query", "error", "code"}`` when it cannot be used."""
    from .services.errors import NotReady, ServiceError
    from .services.search import Query, run_search
    try:
        with open(path, "rb") as f:
            data = f.read()
        return run_search(engine, Query("file", data=data, original_name=path, text=text, space=space), limits, top_k)
    except NotReady:
        raise
    except ServiceError as e:
        return {"query": {"mode": "file", "filename": path}, "error": e.message, "code": e.code}
    except OSError as e:
        return {"query": {"mode": "file", "filename": path}, "error": f"cannot read: {e.strerror}", "code": "unreadable"}


def cmd_search(args, cfg) -> int:
    from .services.engine import Engine
    from .services.search import Limits
    from .services.search import Query, run_search
    engine = Engine(cfg)
    index = engine.index()  # no index: NotReady before any query is embedded
    if args.text is not None or args.space == "clip":
        engine.check_clip(index)  # without CLIP: one line naming the fetch command
    limits = Limits(max_pixels=cfg["MAX_IMAGE_PIXELS"], max_bytes=cfg["MAX_CONTENT_LENGTH"])
    if args.queries:
        results = [search_file(engine, q, limits, args.top_k, args.text, args.space) for q in _queries(args.queries)]
    else:
        results = [run_search(engine, Query("text", text=args.text), limits, args.top_k)]
    if args.json:
        print(json.dumps(results, indent=2))
    elif args.jsonl:
        for r in results:
            print(json.dumps(r))
    else:
        for r in results:
            print(r["query"]["filename"] or f"words: {r['query']['text']}")
            if "error" in r:
                print(f"  error: {r['error']}")
            for h in r.get("results", []):
                print(f"  {h['rank']:>3}  {h['score']:.4f}  {h['path']}")
    if args.grid:
        write_grid(results, cfg["GALLERY_DIR"], args.grid)
    return 1 if any("error" in r for r in results) else 0


def write_grid(results: list[dict], gallery_dir: str, out: str, cell: int = 160) -> None:
    """A picture with one row per query: the query, then its results, each with its score."""
    from PIL import Image, ImageDraw, ImageOps
    rows = [r for r in results if "results" in r]
    cols = 1 + max((len(r["results"]) for r in rows), default=0)
    sheet = Image.new("RGB", (cols * cell, max(1, len(rows)) * (cell + 20)), "white")
    draw = ImageDraw.Draw(sheet)
    for y, r in enumerate(rows):
        items = [(r["query"]["filename"], "query")] + [(os.path.join(gallery_dir, h["path"]), f"{h['score']:.3f}") for h in r["results"]]
        for x, (path, caption) in enumerate(items):
            try:
                with Image.open(path) as im:
                    thumb = ImageOps.contain(im.convert("RGB"), (cell - 8, cell - 8))
                sheet.paste(thumb, (x * cell + 4, y * (cell + 20) + 4))
            except OSError:
                pass
            draw.text((x * cell + 4, y * (cell + 20) + cell), caption, fill="black")
    sheet.save(out)


def cmd_explain(args, cfg) -> int:
    """Why GALLERY_PATH matches QUERY: the pairs ``POST /api/explain`` gives, drawn side by side."""
    from .services.engine import Engine
    from .services.explain import run_explain
    from .services.search import Limits, Query
    engine = Engine(cfg)
    index = engine.index()
    path = _gallery_relative(args.gallery_path, cfg["GALLERY_DIR"])
    row = index.row_of_path(path)
    if row is None:
        print(f"error: the gallery index holds no picture '{path}'", file=sys.stderr)
        return 2
    with open(args.query, "rb") as f:
        query = Query("file", data=f.read(), original_name=args.query)
    limits = Limits(max_pixels=cfg["MAX_IMAGE_PIXELS"], max_bytes=cfg["MAX_CONTENT_LENGTH"])
    answer = run_explain(engine, query, int(index.ids[row]), limits)
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        t = answer["timings_ms"]
        print(f"{len(answer['pairs'])} matched parts; model {t['inference']:.0f} ms, matching {t['match']:.1f} ms, "
              f"total {t['total']:.0f} ms")
    if args.out:
        write_pairs(args.query, os.path.join(cfg["GALLERY_DIR"], path), answer, args.out, args.pairs)
        print(f"wrote {args.out}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _gallery_relative(path: str, gallery_dir: str) -> str:
    """A gallery picture's path as the index holds it: relative to the gallery folder (a path to the file
    inside it is made relative)."""
    full, gallery = os.path.abspath(path), os.path.abspath(gallery_dir)
    if os.path.exists(path) and os.path.commonpath([full, gallery]) == gallery:
        return os.path.relpath(full, gallery).replace(os.sep, "/")
    return path.replace(os.sep, "/")


def write_pairs(query_path: str, result_path: str, answer: dict, out: str, count: int, height: int = 480) -> None:
    """The query and the result side by side at ``height`` pixels, the ``count`` strongest pairs joined by
    lines coloured from red (weak) to green (unmistakable), as the page draws them."""
    import colorsys

    from PIL import Image, ImageDraw

    from indexer.decode import decode
    pictures = []
    for path, side in ((query_path, "query"), (result_path, "result")):
        image = decode(path, shortest_side=height).image
        width = round(image.width * height / image.height)
        pictures.append((image.resize((width, height), Image.BICUBIC), answer[side]["image_size"]))
    gap = 24
    sheet = Image.new("RGB", (pictures[0][0].width + gap + pictures[1][0].width, height), "white")
    sheet.paste(pictures[0][0], (0, 0))
    sheet.paste(pictures[1][0], (pictures[0][0].width + gap, 0))
    draw = ImageDraw.Draw(sheet)
    left = pictures[0][0].width + gap
    for pair in answer["pairs"][:count]:
        r, g, b = colorsys.hsv_to_rgb(pair["score"] / 3, 0.85, 0.95)
        colour = (round(255 * r), round(255 * g), round(255 * b))
        a = [pair["query"][k] * height / pictures[0][1][1] for k in ("x", "y")]
        z = [left + pair["result"]["x"] * height / pictures[1][1][1], pair["result"]["y"] * height / pictures[1][1][1]]
        draw.line([*a, *z], fill=colour, width=2)
        for x, y in (a, z):
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour, outline="white")
    sheet.save(out)


def _model(cfg):
    """The model, through the engine (NotReady when the weights are missing or unreadable)."""
    from .services.engine import Engine
    return Engine(cfg).model


def cmd_evaluate(args, cfg) -> int:
    from indexer.evaluate import labelled_images, retrieval_metrics
    items = labelled_images(args.source)
    if len(items) < 2:
        print("error: need at least two labelled images", file=sys.stderr)
        return 2
    model = _model(cfg)
    features = model.embed([p for p, _ in items], batch_size=cfg["BATCH_SIZE"])
    print_metrics(retrieval_metrics(features, [label for _, label in items]), model.name, len(items))
    return 0


def print_metrics(metrics: dict, model_name: str, images: int) -> None:
    print(f"model {model_name}, {images} images, {metrics['queries']} queries (leave-one-out)")
    print(" | ".join(f"{k} {metrics[k]:.3f}" for k in ("P@1", "P@5", "mAP", "recall@10")))


def cmd_near_dup(args, cfg) -> int:
    from indexer.evaluate import (
        benchmark_originals,
        make_near_duplicate_set,
        retrieval_metrics,
    )
    out = args.out or os.path.join(tempfile.gettempdir(), "search-by-image-near-dup")
    items = make_near_duplicate_set(benchmark_originals(args.originals), out)
    model = _model(cfg)
    features = model.embed([p for p, _ in items], batch_size=cfg["BATCH_SIZE"])
    print_metrics(retrieval_metrics(features, [label for _, label in items]), model.name, len(items))
    return 0


def cmd_tune_descriptor(args, cfg) -> int:
    from dinov2_numpy.descriptor import descriptor_of
    from indexer import descriptor_tuning as tuning
    weights = args.weights or cfg["WEIGHTS"]
    sets = _tuning_sets(args)
    for name, items in sets.items():
        if len({label for _, label in items}) == len(items):
            print(f"error: the set '{name}' has no label shared by two images, so nothing to evaluate", file=sys.stderr)
            return 2
    model = _model({**cfg, "WEIGHTS": weights})
    reference, current = tuning.reference_descriptor(model), descriptor_of(model)
    candidates = tuning.candidates(model, args.sizes or tuning.SIZES)
    print(f"model {model.name}: {len(candidates)} candidate descriptors on "
          + ", ".join(f"{name} ({len(items)} images)" for name, items in sets.items()), flush=True)
    from tqdm import tqdm
    embeddings = len(tuning.input_groups(candidates)) * sum(len(items) for items in sets.values())
    with tqdm(total=embeddings, unit="img", desc="embedding", file=sys.stderr) as bar:
        evaluation = tuning.evaluate_candidates(model, sets, candidates, progress=bar.update)
    best, table = tuning.choose(evaluation, reference, model)
    _print_tuning(table, evaluation.features, sets, model, reference, current, best)
    if args.write:
        if best == current:
            print(f"{weights} already uses it; nothing written")
        else:
            backup = tuning.write_descriptor(weights, best)
            print(f"wrote it to {weights} (the previous file is kept as {backup}); rebuild the index with "
                  "'python build_gallery.py --rebuild'")
    return 0


def _tuning_sets(args) -> dict[str, list]:
    """The evaluation sets of ``tune-descriptor``: near-duplicates, the scene set and the Caltech-101 tuning
    split unless left out, and the labelled sets named on the command line."""
    from indexer.evaluate import (
        CALTECH_TUNE_DIR,
        benchmark_originals,
        labelled_images,
        make_near_duplicate_set,
        make_scene_set,
    )
    tmp = tempfile.gettempdir()
    sets = {"near-dup": make_near_duplicate_set(benchmark_originals(args.originals),
                                                os.path.join(tmp, "search-by-image-near-dup"))}
    if not args.no_scenes:
        sets["scenes"] = make_scene_set(os.path.join(tmp, "search-by-image-scenes"))
    if not args.no_caltech:
        if not os.path.isdir(CALTECH_TUNE_DIR):
            raise OSError(f"the Caltech-101 tuning split is not at {CALTECH_TUNE_DIR}; pass --no-caltech to tune "
                          "without it")
        sets["caltech101-tune"] = labelled_images(CALTECH_TUNE_DIR)
    for source in args.sources:
        sets[os.path.splitext(os.path.basename(os.path.normpath(source)))[0]] = labelled_images(source)
    return sets


def _print_tuning(table, features, sets, model, reference, current, best) -> None:
    """The candidates' table (reference, current and best marked), the re-ranking table for a centre-crop
    winner, the embedding times and the choice."""
    from indexer import descriptor_tuning as tuning
    marks: dict = {}
    at_reference = [ok and d.size == reference.size for d, ok in zip(table.index, table["P@1 ok"])]
    top = table.loc[at_reference, "weighted mAP"].idxmax()
    for d, mark in ((reference, "reference"), (current, "current"), (top, "top"), (best, "best")):
        marks[d] = f"{marks[d]} / {mark}" if d in marks else mark
    table = table.assign(**{"ms/img": tuning.embedding_ms(model, list(table.index))})
    shown = table.sort_values("weighted mAP", ascending=False).copy()
    shown.insert(0, "", [marks.get(d, "") for d in shown.index])
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if best.preprocessing == "center-crop":
        print("\nre-ranking (leave-one-out, the same sets):")
        print(tuning.reranking_table(sets, features, [reference, best]).to_string(
            index=False, float_format=lambda v: f"{v:.3f}"))
    ms = tuning.embedding_ms(model, [reference, current, best])
    print(f"embedding time, batch 8 (ms/img above, same run): reference {ms[0]:.1f} ms/img, current {ms[1]:.1f} "
          f"ms/img, best {ms[2]:.1f} ms/img")
    print(f"best: {best.label()}")


def main(argv: list[str] | None = None) -> int:
    cfg = load_config()
    parser = argparse.ArgumentParser(prog="python -m app.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("search", help="top-K gallery matches for images or folders of images")
    s.add_argument("queries", nargs="*", help="pictures or folders of pictures (none with --text alone)")
    s.add_argument("--top-k", type=int, default=5)
    s.add_argument("--text", help="words describing the picture (CLIP): alone, or added to each picture")
    s.add_argument("--space", choices=("dinov2", "clip"), default="dinov2",
                   help="compare pictures by look (dinov2, default) or by meaning (clip)")
    fmt = s.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--jsonl", action="store_true")
    s.add_argument("--grid", help="write a picture of queries and results to this PNG")
    x = sub.add_parser("explain", help="why a gallery picture matches a query: its matched parts, drawn side by side")
    x.add_argument("query", help="the query picture's file")
    x.add_argument("gallery_path", help="the result, as its path in the gallery (or the file inside the gallery folder)")
    x.add_argument("--out", help="write the two pictures with lines between matched parts to this PNG")
    x.add_argument("--pairs", type=int, default=30, help="how many of the strongest pairs to draw (default 30)")
    x.add_argument("--json", action="store_true", help="print the answer POST /api/explain gives")
    e = sub.add_parser("evaluate", help="P@1, P@5, mAP, recall@10 on a labelled folder or path,label CSV")
    e.add_argument("source")
    n = sub.add_parser("near-dup-benchmark", help="evaluate on near-duplicates made from the demo photos")
    n.add_argument("--originals", type=int, help="use only the first N originals")
    n.add_argument("--out", help="where to write the edited images")
    t = sub.add_parser("tune-descriptor", help="score candidate descriptors on the near-duplicate benchmark, the "
                                               "scene set, the Caltech-101 split and labelled sets; --write stores "
                                               "the best in the weights")
    t.add_argument("sources", nargs="*", help="labelled folders (one sub-folder per label) or path,label CSVs")
    t.add_argument("--write", action="store_true", help="store the best descriptor in the weights file")
    t.add_argument("--weights", help="the weights file (default: the configured WEIGHTS)")
    t.add_argument("--originals", type=int, help="use only the first N near-duplicate originals")
    t.add_argument("--no-scenes", action="store_true", help="leave out the built-in scene set")
    t.add_argument("--no-caltech", action="store_true", help="leave out the Caltech-101 tuning split")
    t.add_argument("--sizes", type=int, nargs="+", help="input sides in pixels to search, multiples of the patch "
                                                        "(default: SIZES in indexer/descriptor_tuning.py; 224 is "
                                                        "always among them)")
    args = parser.parse_args(argv)
    if args.command == "search" and not 1 <= args.top_k <= 1000:
        parser.error("--top-k must be between 1 and 1000")
    if args.command == "search" and not args.queries and not (args.text or "").strip():
        parser.error("give pictures to search with, or --text")
    if args.command == "explain" and args.pairs < 1:
        parser.error("--pairs must be at least 1")
    from dinov2_numpy import WeightsError

    from .services.errors import ServiceError
    commands = {"search": cmd_search, "explain": cmd_explain, "evaluate": cmd_evaluate, "near-dup-benchmark": cmd_near_dup,
                "tune-descriptor": cmd_tune_descriptor}
    try:
        return commands[args.command](args, cfg)
    except (ServiceError, WeightsError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
