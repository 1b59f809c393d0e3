"""The API's contract: ``openapi.yaml`` beside this file, written by hand and held to the code by the tests
(tests/test_openapi.py: valid OpenAPI 3.1, exactly the app's /api routes, and every API answer of the test
suite checked against it). Served as JSON, and as a page rendered by Swagger UI."""
from __future__ import annotations

import functools
import os

import yaml
from flask import jsonify, render_template

from . import bp

CONTRACT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.yaml")


@functools.cache
def document() -> dict:
    """The OpenAPI document, read once per process."""
    with open(CONTRACT, encoding="utf-8") as f:
        return yaml.safe_load(f)


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI 3.1 document of this API, for client generators and the reference page."""
    return jsonify(document())


@bp.get("/docs")
def docs():
    """The API reference, rendered in the browser from /api/openapi.json."""
    return render_template("api_docs.html")
