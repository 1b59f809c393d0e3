"""POST /api/search and POST /api/segment."""
from __future__ import annotations

from flask import current_app, jsonify, request
from flask_login import current_user

from ..extensions import db, engine, limits, throttle
from ..services.errors import InvalidInput
from ..services.row_filters import PhotoRows
from ..services.search import Query, run_search, run_segment
from ..storage.history import record_search
from ..web.bearer import current_key
from . import bp
from .fields import (
    body_fields,
    colour_weight,
    has_picture,
    image_query,
    int_arg,
    photo_filter,
    query_text,
    search_space,
    threshold,
)
from .links import with_links


def client_key() -> str:
    """Searches are throttled per API key for a script, per account when signed in, else per address."""
    key = current_key()
    if key is not None:
        return f"key:{key.id}"
    return f"user:{current_user.id}" if current_user.is_authenticated else f"addr:{request.remote_addr}"


@bp.post("/search")
@throttle("SEARCH_LIMIT", key_func=client_key)
def search():
    """Search with an uploaded, pasted, drawn, fetched or gallery picture; signed-in users' searches go to
    their history."""
    with engine().queue.admit():  # before the body is read: under overload, refuse before spending anything
        release_database()
        return _search()


def release_database() -> None:
    """Give the database connection back while this request waits for the model: the pool is far smaller than
    the number of request threads, and a search holds it for seconds under load. The signed-in user is
    loaded first and stays usable; recording the search takes a connection again."""
    current_user.is_authenticated  # noqa: B018  (loads the user now)
    db.session.close()


def _search():
    fields, files = body_fields()
    top_k = int_arg(fields.get("top_k"), "top_k", 10, 1, 100)
    cut = threshold(fields.get("threshold"))
    wanted = photo_filter(fields)
    allowed = PhotoRows(wanted) if wanted.active else None
    text, space = query_text(fields.get("text")), search_space(fields.get("space"))
    if fields.get("gallery_id") is not None and not files:
        query = Query("gallery", gallery_id=int_arg(fields["gallery_id"], "gallery_id", 0, 1, 2**53 - 1))
    elif text is not None and not has_picture(fields, files):
        query = Query("text")
    else:
        query = image_query(fields, files)
    query.text, query.space = text, space
    result = run_search(engine(), query, limits(), top_k, cut, allowed, colour_weight(fields.get("color_weight")))
    if wanted.active:
        result["query"]["filter"] = {**wanted.json(), "matching": allowed.matching}
    if current_user.is_authenticated:
        result["query"]["search_id"] = record_search(current_user.id, current_app.config["UPLOAD_DIR"], query.data,
                                                     result, top_k, query.original_name or query.url or text)
    result["results"] = [with_links(r) for r in result["results"]]
    return jsonify(result)


@bp.post("/segment")
def segment_object():
    """The object under ``point`` in the image: a mask (PNG data URL) and its bounding box."""
    with engine().queue.admit():
        release_database()
        fields, files = body_fields()
        query = image_query(fields, files)
        if query.point is None:
            raise InvalidInput("Send the clicked 'point' as {\"x\": ..., \"y\": ...} in image pixels.",
                               "missing_field")
        return jsonify(run_segment(engine(), query, limits()))
