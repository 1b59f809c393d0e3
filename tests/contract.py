"""Every answer the test suite gets from /api, checked against the OpenAPI document (app/api/openapi.yaml).

``ContractClient`` is the Flask test client of every app the tests make (tests/conftest.py installs it): each
response to an /api request is validated with openapi-core against the operation its path and method name,
successes and errors alike, and a mismatch fails the test that made the request. A request that names no
operation (an unknown path, a method the route does not have) must still be answered with the document's
``Error`` shape and an error status."""
from __future__ import annotations

import threading

from flask.testing import FlaskClient
from jsonschema_path import SchemaPath
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_schema_validator import OAS31Validator
from werkzeug.exceptions import HTTPException

from app.api.contract import document

_lock = threading.Lock()
_openapi: OpenAPI | None = None


def _api() -> OpenAPI:
    global _openapi
    if _openapi is None:
        _openapi = OpenAPI(SchemaPath.from_dict(document()))
    return _openapi


class _AnsweredRequest(WerkzeugOpenAPIRequest):
    """The request a response answers; its body was read by the app already, and checking an answer needs
    only the method and the path."""

    @property
    def body(self) -> bytes:
        return b""


class ContractMismatch(AssertionError):
    """An answer of the API that the OpenAPI document does not describe."""


def check(app, response) -> None:
    """Raise ContractMismatch unless ``response`` (of ``app``'s test client, to an /api request) fits the
    document."""
    request = response.request
    if not request.path.startswith("/api/") or request.method in ("HEAD", "OPTIONS"):
        return
    try:
        app.url_map.bind_to_environ(request.environ).match(method=request.method)
    except HTTPException:  # no route: 404, 405
        _check_unrouted(response)
        return
    with _lock:
        result = _api().unmarshal_response(_AnsweredRequest(request), WerkzeugOpenAPIResponse(response))
        if result.errors:
            detail = "; ".join(_describe(e) for e in result.errors)
            raise ContractMismatch(f"{request.method} {request.path} answered {response.status_code}, which "
                                   f"app/api/openapi.yaml does not describe: {detail}\nbody: {response.data[:500]!r}")


def _check_unrouted(response) -> None:
    body = response.get_json(silent=True)
    errors = list(OAS31Validator(document()["components"]["schemas"]["Error"]).iter_errors(body))
    if response.status_code < 400 or errors:
        raise ContractMismatch(f"{response.request.method} {response.request.path} is no operation of "
                               f"app/api/openapi.yaml, yet was answered {response.status_code} "
                               f"{response.data[:300]!r}" + (f": {errors[0].message}" if errors else ""))


def _describe(error: BaseException) -> str:
    """What is wrong, down to the schema's own complaints (openapi-core wraps them in its exceptions)."""
    while error is not None:
        if getattr(error, "schema_errors", None):
            return "; ".join(f"{'/'.join(map(str, e.absolute_path)) or 'body'}: {e.message}" for e in error.schema_errors)
        if error.__cause__ is None:
            return str(error)
        error = error.__cause__
    return ""


class ContractClient(FlaskClient):
    """The Flask test client, with every /api answer checked against the contract."""

    def open(self, *args, **kwargs):
        response = super().open(*args, **kwargs)
        check(self.application, response)
        return response
