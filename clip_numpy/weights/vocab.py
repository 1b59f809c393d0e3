"""The tokenizer's BPE merges: read from the hub's ``merges.txt`` (checked against ``vocab.json``) or from
OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` (as the ``open_clip_torch`` wheel ships it), stored in the weights."""
from __future__ import annotations

import gzip
import json
import os
from typing import Any, Mapping

from dinov2_numpy.config import WeightsError

from ..tokenizer import vocabulary

METADATA_KEY = "bpe_merges"  # the merges in the weights' metadata, one "left right" pair a line
_SPECIAL = 2 + 2 * 256  # start and end tokens, and the byte symbols with and without the end of a word


def read_merges(path: str | os.PathLike, vocab_size: int) -> list[tuple[str, str]]:
    """The first ``vocab_size - 514`` merges of a merges file (plain or gzip; a ``#version`` first line is
    skipped), which is how many a vocabulary of that size holds."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
        text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise WeightsError(f"cannot read the BPE merges in {path} ({e})") from None
    lines = text.split("\n")
    if lines and "#version" in lines[0]:
        lines = lines[1:]
    wanted = vocab_size - _SPECIAL
    merges = [tuple(line.split()) for line in lines[:wanted]]
    if wanted < 1 or len(merges) < wanted or any(len(m) != 2 for m in merges):
        raise WeightsError(f"{path} does not hold the {wanted} merges a vocabulary of {vocab_size} tokens needs")
    return merges  # type: ignore[return-value]


def check_vocab_json(path: str | os.PathLike, merges: list[tuple[str, str]]) -> None:
    """Refuse a ``vocab.json`` whose ids are not the ones the merges make (another tokenizer's vocabulary)."""
    try:
        with open(path, encoding="utf-8") as f:
            given = json.load(f)
    except (OSError, ValueError) as e:
        raise WeightsError(f"cannot read {path} ({e})") from None
    expected = {token: i for i, token in enumerate(vocabulary(merges))}
    if given != expected:
        wrong = next((t for t in expected if given.get(t) != expected[t]), None)
        raise WeightsError(f"{path} does not match the merges (token {wrong!r} has another id)")


def merges_to_metadata(merges: list[tuple[str, str]]) -> str:
    return "\n".join(f"{a} {b}" for a, b in merges)


def merges_from_metadata(metadata: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The merges stored with the weights; a file without them cannot tokenize."""
    text = metadata.get(METADATA_KEY)
    if not text:
        raise WeightsError("the weights carry no tokenizer vocabulary (convert them again with --vocab)")
    return [tuple(line.split(" ")) for line in text.split("\n")]  # type: ignore[misc]
