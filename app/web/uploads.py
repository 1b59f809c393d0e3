"""How large a request may be, and how many uploaded bytes the process holds in memory at once.

A camera's RAW file is 20 to 120 MB, so a multipart upload (a search's or an administrator's file) may be up
to ``MAX_FILE_UPLOAD_BYTES``; every other body (JSON with a base64 picture, a form) keeps the smaller
``MAX_UPLOAD_BYTES``, because Flask reads those into memory as they arrive, whereas the multipart parser
spools a file to disk. A file is read into memory only when a view asks for its bytes (``read_upload``), and
those bytes are reserved against ``UPLOAD_BUDGET`` until the request ends: beyond it a request waits a moment,
then gets a 503 with Retry-After, so that a burst of large uploads cannot exhaust the worker's memory.
"""
from __future__ import annotations

import contextlib
import os

from flask import Flask, current_app, g, request


def init_app(app: Flask) -> None:
    """Raise the body limit for multipart uploads and release each request's reserved bytes when it ends."""
    # First of all hooks: the CSRF check reads the form, and the body's limit is fixed once it is read.
    app.before_request_funcs.setdefault(None, []).insert(0, _file_upload_limit)
    app.teardown_request(_release)


def body_limit() -> int | None:
    """The largest body this request may send, in bytes (what a 413 names)."""
    return request.max_content_length


def read_upload(file) -> bytes:
    """An uploaded file's bytes, reserved against the upload budget until the request ends (``Overloaded``
    when other uploads hold it for longer than the budget's wait)."""
    size = file.seek(0, os.SEEK_END)
    file.seek(0)
    holds = g.get("upload_holds")
    if holds is None:
        holds = g.upload_holds = contextlib.ExitStack()
    holds.enter_context(current_app.extensions["upload_budget"].hold(size))
    return file.read()


def _file_upload_limit() -> None:
    if request.mimetype == "multipart/form-data":
        request.max_content_length = current_app.config["MAX_FILE_UPLOAD_BYTES"]


def _release(_error: BaseException | None) -> None:
    holds = g.pop("upload_holds", None)
    if holds is not None:
        holds.close()
