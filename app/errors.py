"""The one place errors become HTTP: JSON ``{"error": {"code", "message"}}`` under /api, friendly HTML pages
elsewhere, never a trace. Domain errors (``services.errors``, the fetcher's) map to statuses by their class."""
from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from indexer.fetch import (
    FetchBadURL,
    FetchError,
    FetchFailed,
    FetchNotImage,
    FetchRefused,
    FetchTooLarge,
)

from .services.errors import (
    Busy,
    InvalidInput,
    NotFound,
    NotReady,
    Overloaded,
    ServiceError,
    TextSearchOff,
    Unprocessable,
    UnsupportedMedia,
)
from .web.uploads import body_limit

STATUS = {InvalidInput: 400, NotFound: 404, Busy: 409, TextSearchOff: 409, UnsupportedMedia: 415,
          Unprocessable: 422, NotReady: 503}
# A fetched URL's failure: (status, code).
FETCH_STATUS = {FetchBadURL: (400, "invalid_field"), FetchRefused: (400, "url_not_allowed"),
                FetchTooLarge: (413, "request_entity_too_large"), FetchNotImage: (415, "unsupported_media_type"),
                FetchFailed: (422, "url_fetch_failed")}


class ApiError(Exception):
    """An error of the HTTP edge itself (sign-in, roles), with its status and machine-readable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def json_error(status: int, code: str, message: str):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def _respond(status: int, code: str, message: str):
    if _wants_json():
        return json_error(status, code, message)
    return render_template("error.html", status=status, message=message), status


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def register(app: Flask) -> None:
    """Install the handlers on ``app``."""

    @app.errorhandler(ApiError)
    def api_error(e: ApiError):
        return json_error(e.status, e.code, e.message)

    @app.errorhandler(Overloaded)
    def overloaded(e: Overloaded):
        # Read what the client is still sending, so that it gets this answer rather than a reset connection.
        while request.stream.read(1 << 16):
            pass
        response = _respond(503, e.code, e.message)
        response = app.make_response(response)
        response.headers["Retry-After"] = str(e.retry_after)
        return response

    @app.errorhandler(ServiceError)
    def service_error(e: ServiceError):
        status = next((s for cls, s in STATUS.items() if isinstance(e, cls)), 400)
        return _respond(status, e.code, e.message)

    @app.errorhandler(FetchError)
    def fetch_error(e: FetchError):
        status, code = next((v for cls, v in FETCH_STATUS.items() if isinstance(e, cls)), (422, "url_fetch_failed"))
        return _respond(status, code, "The URL could not be used: " + _sentence(str(e)))

    @app.errorhandler(CSRFError)
    def csrf_error(e: CSRFError):
        message = f"CSRF check failed: {e.description} Send the token from GET /api/csrf-token in the X-CSRFToken header."
        return _respond(400, "csrf_failed", message)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        status = e.code or 500
        if status == 413:
            message = f"The upload is larger than the {body_limit() // (1024 * 1024)} MB limit."
        elif status == 429:  # the Retry-After header (added by Flask-Limiter) says how long
            message = "Too many attempts in a short time. Wait a little, then try again."
        else:
            message = e.description or e.name
        return _respond(status, e.name.lower().replace(" ", "_"), message)

    @app.errorhandler(Exception)
    def unexpected(e: Exception):
        app.logger.exception("unhandled error")
        if _wants_json():
            return json_error(500, "internal_error", "Something went wrong on our side; it has been logged.")
        return render_template("error.html", status=500, message=InternalServerError.description), 500
