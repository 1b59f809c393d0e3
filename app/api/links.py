"""Where the browser finds a gallery picture and its thumbnail."""
from __future__ import annotations

from flask import url_for


def with_links(item: dict) -> dict:
    """``item`` (with a gallery ``path``) plus its ``url`` and ``thumbnail_url``."""
    return dict(item, url=url_for("files.gallery_file", path=item["path"]),
                thumbnail_url=url_for("files.thumbnail", path=item["path"]))
