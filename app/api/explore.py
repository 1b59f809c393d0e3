"""GET /api/duplicates, /api/groups, /api/groups/<n> and /api/map: the whole gallery at once. Each is computed
once per index generation in the background; until it is ready the answer is 202 with the progress. Throttled
like searches: each new question starts work over the whole gallery."""
from __future__ import annotations

import math

import numpy as np
from flask import jsonify, request

from ..errors import json_error
from ..extensions import exploration, throttle
from ..services.errors import NotFound
from ..services.exploration import FLOOR, MAX_K, MIN_K
from . import bp
from .search import client_key
from .fields import fraction, int_arg
from .links import with_links

MAP_POINTS = 20_000  # the most points one map answer carries (a deterministic sample beyond)


def _computing(status: dict):
    """202 with the progress while computing; 500 with the reason when the computation failed (the next
    request starts it again)."""
    if status["state"] == "failed":
        return json_error(500, "computation_failed", f"This could not be computed: {status['error']}.")
    return jsonify(status), 202, {"Retry-After": "2"}


def _paging(per_page_default: int) -> tuple[int, int]:
    """``(page, per_page)`` of the request, read before any work so that a wrong one is a 400 at once."""
    return (int_arg(request.args.get("page"), "page", 1, 1, 10**6),
            int_arg(request.args.get("per_page"), "per_page", per_page_default, 1, 200))


def _page(items: list, paging: tuple[int, int]):
    page, per_page = paging
    return items[(page - 1) * per_page: page * per_page], {
        "page": page, "per_page": per_page, "total": len(items), "pages": max(1, math.ceil(len(items) / per_page))}


@bp.get("/duplicates")
@throttle("SEARCH_LIMIT", key_func=client_key)
def duplicates():
    """Groups of near-identical pictures at ``threshold`` (0.8 to 1, default 0.95), best-quality first."""
    threshold = fraction(request.args.get("threshold"), "threshold", 0.95)
    asked = _paging(10)
    status, groups = exploration().duplicates(threshold)
    if groups is None:
        return _computing(status)
    chunk, paging = _page(groups, asked)
    return jsonify({**status, **paging, "threshold": threshold, "floor": FLOOR,
                    "pictures": sum(len(g) for g in groups),
                    "groups": [{"size": len(g), "items": [with_links(i) for i in g]} for g in chunk]})


def _k():
    value = request.args.get("k")
    return None if value in (None, "") else int_arg(value, "k", 0, MIN_K, MAX_K)


@bp.get("/groups")
@throttle("SEARCH_LIMIT", key_func=client_key)
def groups():
    """The gallery in ``k`` groups (default: chosen from its size), each with the pictures nearest its centre."""
    explore = exploration()
    status, found, index = explore.clusters(_k())
    if found is None:
        return _computing(status)
    cards = [{"n": n, "size": len(rows), "preview": [with_links(explore.item(index, r)) for r in rows[:8]]}
             for n, rows in enumerate(found["order"]) if rows]
    cards.sort(key=lambda c: -c["size"])
    return jsonify({**status, "k": found["k"], "groups": cards, "pictures": len(index)})


@bp.get("/groups/<int:n>")
@throttle("SEARCH_LIMIT", key_func=client_key)
def group(n: int):
    """The pictures of group ``n``, nearest its centre first."""
    explore = exploration()
    asked = _paging(48)
    status, found, index = explore.clusters(_k())
    if found is None:
        return _computing(status)
    if n >= len(found["order"]):
        raise NotFound(f"There are {len(found['order'])} groups; group {n} does not exist.")
    chunk, paging = _page(found["order"][n], asked)
    return jsonify({**status, **paging, "n": n, "k": found["k"],
                    "items": [with_links(explore.item(index, r)) for r in chunk]})


@bp.get("/map")
@throttle("SEARCH_LIMIT", key_func=client_key)
def gallery_map():
    """Every picture's place in 2-D (at most 20,000: a fixed sample beyond), with its group when known."""
    explore = exploration()
    status, points, index = explore.map()
    clusters_status, found, grouped = explore.clusters(None)
    if points is None:
        return _computing(status)
    if grouped.location != index.location:  # the index changed between the two answers
        clusters_status, found = {"state": "computing"}, None
    rows = np.arange(len(index))
    if len(rows) > MAP_POINTS:
        rows = np.sort(np.random.default_rng(0).choice(len(rows), MAP_POINTS, replace=False))
    labels = found["labels"] if found is not None else None
    paths = index.paths
    return jsonify({**status, "total": len(index), "sampled": len(rows) < len(index),
                    "groups": found["k"] if found is not None else None, "groups_state": clusters_status["state"],
                    "points": [{"id": int(index.ids[r]), "path": paths[r], "x": round(float(points[r, 0]), 5),
                                "y": round(float(points[r, 1]), 5),
                                "group": int(labels[r]) if labels is not None else -1} for r in rows.tolist()]})
