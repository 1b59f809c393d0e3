"""Downloading the images a CSV lists (a ``url`` column, optionally ``filename``) into the images folder."""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd
from PIL import Image

from .atomic import atomic_write
from .fetch import FetchError, fetch_image
from .formats import extension_of, is_image_name

LOG_NAME = ".download-log.jsonl"


@dataclass
class DownloadResult:
    outcomes: Counter = field(default_factory=Counter)
    log_path: str = ""

    def summary(self) -> str:
        parts = ", ".join(f"{n} {k}" for k, n in sorted(self.outcomes.items()))
        return f"downloads: {parts or 'nothing to do'} (details in {self.log_path})"


def target_name(url: str, filename: str | None = None) -> str:
    """A safe, stable file name: a short hash of the URL (so equal names from different URLs cannot clash)
    and the CSV's or the URL's base name reduced to safe characters."""
    base = filename or os.path.basename(urllib.parse.urlparse(url).path) or "image"
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(base)).strip("._") or "image"
    return f"{hashlib.sha1(url.encode()).hexdigest()[:10]}-{base[:80]}"


def image_extension(data: bytes) -> str:
    """The extension of an accepted image format for ``data``; FetchError if it is not a valid image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            ext = extension_of(im.format)
            im.verify()
    except Exception:  # PIL raises many types for broken data
        raise FetchError("the data is not a valid image") from None
    if ext is None:
        raise FetchError("the image format is not accepted")
    return "." + ext

def download_csv(csv_path: str, images_dir: str, *, timeout: float = 10.0, max_bytes: int = 20 * 1024 * 1024,
                 retries: int = 3, backoff: float = 0.5, progress: bool = True) -> DownloadResult:
    """Download every URL of ``csv_path`` not downloaded yet; each outcome is appended to a JSONL log."""
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as e:
        raise RuntimeError(f"cannot read {csv_path}: {e}") from None
    if "url" not in table.columns:
        raise RuntimeError(f"{csv_path} has no 'url' column (columns: {', '.join(table.columns)})")
    os.makedirs(images_dir, exist_ok=True)
    result = DownloadResult(log_path=os.path.join(images_dir, LOG_NAME))
    existing = set(os.listdir(images_dir))
    from tqdm import tqdm
    with open(result.log_path, "a") as log:
        for row in tqdm(table.to_dict("records"), unit="url", desc="downloading", disable=not progress):
            url = row["url"].strip()
            if not url:
                continue
            stem = target_name(url, row.get("filename") or None)
            done = [n for n in existing if n == stem or os.path.splitext(n)[0] == os.path.splitext(stem)[0]]
            entry = {"url": url, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            if done:
                entry.update(status="skipped", file=done[0], reason="already downloaded")
            else:
                entry.update(_download_one(url, stem, images_dir, timeout, max_bytes, retries, backoff))
                if entry["status"] == "ok":
                    existing.add(entry["file"])
            result.outcomes[entry["status"]] += 1
            log.write(json.dumps(entry) + "\n")
            log.flush()
    return result


def _download_one(url: str, stem: str, images_dir: str, timeout: float, max_bytes: int, retries: int,
                  backoff: float) -> dict:
    for attempt in range(1, retries + 1):
        try:
            data = fetch_image(url, max_bytes=max_bytes, total_seconds=timeout, guard=False).data
            ext = image_extension(data)
        except FetchError as e:
            if not e.retry or attempt == retries:
                return {"status": "failed", "error": str(e), "attempts": attempt}
            time.sleep(backoff * 2 ** (attempt - 1))
            continue
        name = stem if is_image_name(stem) else stem + ext
        atomic_write(os.path.join(images_dir, name), data, durable=False)
        return {"status": "ok", "file": name, "bytes": len(data), "attempts": attempt}
    return {"status": "failed", "error": "no attempt made", "attempts": 0}
