"""POST /api/explain: why a result matched (app.services.explain)."""
from __future__ import annotations

from flask import jsonify

from ..extensions import engine, limits, throttle
from ..services.errors import InvalidInput
from ..services.explain import run_explain
from ..services.search import Query
from . import bp
from .fields import body_fields, image_query, int_arg
from .links import with_links
from .search import client_key, release_database

MAX_ID = 2**53 - 1


@bp.post("/explain")
@throttle("SEARCH_LIMIT", key_func=client_key)
def explain():
    """The corresponding parts of a query (as /api/search takes it; a gallery picture as ``query_gallery_id``)
    and the result ``gallery_id``: matched pairs in both pictures' pixels, and a heat map of each."""
    with engine().queue.admit():  # refused under overload before the body is read, as a search is
        release_database()
        fields, files = body_fields()
        if fields.get("gallery_id") in (None, ""):
            raise InvalidInput("Send the result's 'gallery_id' to explain.", "missing_field")
        result_id = int_arg(fields["gallery_id"], "gallery_id", 0, 1, MAX_ID)
        if fields.get("query_gallery_id") not in (None, "") and not files:
            query = Query("gallery", gallery_id=int_arg(fields["query_gallery_id"], "query_gallery_id", 0, 1, MAX_ID))
        else:
            query = image_query(fields, files)
        answer = run_explain(engine(), query, result_id, limits())
        answer["result"] = with_links(answer["result"])
        if answer["query"]["path"] is not None:
            answer["query"] = with_links(answer["query"])
        return jsonify(answer)
