"""GET /api/health and GET /api/csrf-token."""
from __future__ import annotations

from flask import current_app, jsonify
from flask_login import current_user
from flask_wtf.csrf import generate_csrf

from dinov2_numpy.weights.hub import weights_title
from indexer.generations import IndexFilesError

from ..extensions import engine
from ..startup import STARTING_RETRY_AFTER
from ..services.errors import NotReady
from ..web.security import is_private
from . import bp


@bp.get("/csrf-token")
def csrf_token():
    """For API clients: a token to send back in the X-CSRFToken header, tied to this session cookie."""
    return jsonify({"csrf_token": generate_csrf()})


def _text_search(eng) -> dict:
    """Search with words: on (CLIP_WEIGHTS set) or off; the CLIP model; whether the index holds its vectors."""
    if not eng.clip_enabled:
        return {"enabled": False, "model": None, "indexed": False}
    out = {"enabled": True, "model": None, "indexed": False, "last_text_ms": eng.last_text_ms}
    try:
        out.update(model=eng.clip.name, dim=eng.clip.dim)
        index = eng.latest_index()
        if index is not None:
            eng.check_clip(index)
            out["indexed"] = True
    except NotReady as e:
        out["problem"] = e.message
    except IndexFilesError:
        out["problem"] = "The gallery index is unreadable."
    return out


@bp.get("/health")
def health():
    """Model and index readiness; 503 until both are ready (and while the process starts, with Retry-After)."""
    ready = current_app.extensions.get("ready")  # set by app.startup.prepare; tools run without it
    if ready is not None and not ready.is_set():
        response = jsonify({"status": "not_ready", "problem": "The app is starting."})
        response.headers["Retry-After"] = str(STARTING_RETRY_AFTER)
        return response, 503
    eng = engine()
    body = {"status": "ok", "model_loaded": False, "model": None, "gallery_size": 0, "index_age_seconds": None}
    try:
        described = eng.descriptor
        body.update(model_loaded=True, model=eng.model.name, weights=weights_title(eng.model.name, eng.model.dim, eng.model.config.patch_size),
                    dim=described.width(eng.model), descriptor=described.label())
    except NotReady as e:
        body.update(status="not_ready", problem=e.message)
    try:
        body.update(gallery_size=len(eng.index()), index_age_seconds=round(eng.index_age_seconds() or 0, 1))
        problem = body["model_loaded"] and eng.descriptor_problem()
        if problem:
            body.update(status="not_ready", problem=problem)
    except NotReady as e:
        body.update(status="not_ready", problem=body.get("problem") or e.message)
    body["queue"] = eng.queue.stats()
    body["text_search"] = _text_search(eng)
    status = 200 if body["status"] == "ok" else 503
    if is_private() and not current_user.is_authenticated:  # a private gallery tells strangers nothing more
        body = {"status": body["status"]}
    return jsonify(body), status
