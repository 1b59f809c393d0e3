"""Errors: JSON ``{"error": {"code", "message"}}`` under /api, friendly HTML pages elsewhere, never a trace."""
from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from .engine import NotReady


class ApiError(Exception):
    """An error the API reports with a machine-readable code and a status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def json_error(status: int, code: str, message: str):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(e: ApiError):
        return json_error(e.status, e.code, e.message)

    @app.errorhandler(NotReady)
    def not_ready(e: NotReady):
        if _wants_json():
            return json_error(503, "not_ready", str(e))
        return render_template("error.html", status=503, message=str(e)), 503

    @app.errorhandler(CSRFError)
    def csrf_error(e: CSRFError):
        message = f"CSRF check failed: {e.description} Send the token from GET /api/csrf-token in the X-CSRFToken header."
        if _wants_json():
            return json_error(400, "csrf_failed", message)
        return render_template("error.html", status=400, message=message), 400

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        status = e.code or 500
        if status == 413:
            limit = app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)
            message = f"The upload is larger than the {limit} MB limit."
        else:
            message = e.description or e.name
        if _wants_json():
            return json_error(status, e.name.lower().replace(" ", "_"), message)
        return render_template("error.html", status=status, message=message), status

    @app.errorhandler(Exception)
    def unexpected(e: Exception):
        app.logger.exception("unhandled error")
        if _wants_json():
            return json_error(500, "internal_error", "Something went wrong on our side; it has been logged.")
        return render_template("error.html", status=500, message=InternalServerError.description), 500
