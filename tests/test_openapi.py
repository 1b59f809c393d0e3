"""The OpenAPI contract (app/api/openapi.yaml) cannot drift from the code: it is valid OpenAPI 3.1, it names
exactly the app's /api routes, each numeric range it states is the one the API enforces, and (tests/contract.py,
installed by tests/conftest.py) every /api answer of the whole suite matches it."""
import json
import re

import pytest
from openapi_spec_validator import validate

from app.api.contract import document
from tests.contract import ContractMismatch, check
from tests.helpers import csrf_headers, sign_up

METHODS = {"get", "post", "put", "patch", "delete"}


def _template(rule: str) -> str:
    """A Werkzeug rule as an OpenAPI path: /api/groups/<int:n> is /api/groups/{n}."""
    return re.sub(r"<(?:[a-z]+(?:\([^)]*\))?:)?(\w+)>", r"{\1}", rule)


def test_the_document_is_valid_openapi_3_1():
    spec = document()
    assert spec["openapi"].startswith("3.1")
    validate(spec)
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "session"}


def test_the_document_names_exactly_the_api_routes(app):
    routes = {(_template(r.rule), m.lower()) for r in app.url_map.iter_rules() if r.rule.startswith("/api")
              for m in r.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, m) for path, item in document()["paths"].items() for m in item if m in METHODS}
    assert routes - documented == set(), "routes missing from app/api/openapi.yaml"
    assert documented - routes == set(), "operations in app/api/openapi.yaml that no route serves"
    assert len(routes) >= 30


def test_every_operation_documents_its_errors():
    """The error statuses every caller can meet: 401 everywhere (private mode, or a bad API key); 400 and 413
    wherever a body is sent (CSRF, fields; its size)."""
    for path, item in document()["paths"].items():
        for method, op in ((m, o) for m, o in item.items() if m in METHODS):
            statuses = set(op["responses"])
            assert "401" in statuses, (method, path)
            if method != "get":
                assert "400" in statuses, (method, path)
            if "requestBody" in op:
                assert "413" in statuses, (method, path)


def test_openapi_json_serves_the_document(client):
    r = client.get("/api/openapi.json")
    assert r.status_code == 200 and r.get_json() == json.loads(json.dumps(document()))


def test_the_contract_check_refuses_answers_the_document_does_not_describe(client):
    """The suite-wide check can fail: a changed body, an undocumented status, an unrouted success."""
    good = client.get("/api/gallery?per_page=2")
    check(client.application, good)
    body = good.get_json()
    del body["items"][0]["meta"]
    good.set_data(json.dumps(body))
    with pytest.raises(ContractMismatch, match="meta"):
        check(client.application, good)
    teapot = client.get("/api/gallery/cameras")
    teapot.status_code = 418
    with pytest.raises(ContractMismatch, match="418"):
        check(client.application, teapot)
    unknown = client.get("/api/nothing")
    check(client.application, unknown)  # an error in the documented shape
    unknown.status_code = 200
    with pytest.raises(ContractMismatch, match="no operation"):
        check(client.application, unknown)


# --- every stated range is the enforced one ------------------------------------------------------------------

def _resolve(node):
    spec = document()
    while isinstance(node, dict) and "$ref" in node:
        for part in node["$ref"].lstrip("#/").split("/"):
            spec = spec[part]
        node, spec = spec, document()
    return node


def _properties(schema) -> dict:
    """The properties of a schema, through $ref and allOf."""
    schema = _resolve(schema)
    found = dict(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        found.update(_properties(part))
    return {name: _resolve(s) for name, s in found.items()}


def _bounds(schema):
    """(value just inside, value just outside) for each stated bound of a numeric schema."""
    step = 1 if "integer" in (schema.get("type") if isinstance(schema.get("type"), list) else [schema.get("type")]) else 0.01
    if "minimum" in schema:
        yield schema["minimum"], schema["minimum"] - step
    if "maximum" in schema:
        yield schema["maximum"], schema["maximum"] + step


# What the probed operations need besides the probed field (a search needs a picture: a gallery one).
BASE_BODIES = {"search": lambda ids: {"gallery_id": ids[0]}, "createKey": lambda ids: {"name": "probe"},
               "explain": lambda ids: {"gallery_id": ids[0], "query_gallery_id": ids[1]},
               "createInvitation": lambda ids: {}}


def _probes():
    """(method, path, operationId, 'query' or 'body', name, schema) of every bounded number the document states."""
    for path, item in document()["paths"].items():
        if "{" in path:
            continue  # path numbers out of range match no route (404), as for any unknown path
        for method, op in ((m, o) for m, o in item.items() if m in METHODS):
            for p in map(_resolve, op.get("parameters", [])):
                if p["in"] == "query" and set(_bounds(_resolve(p["schema"]))):
                    yield method, path, op["operationId"], "query", p["name"], _resolve(p["schema"])
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            for name, schema in (_properties(body["schema"]) if body else {}).items():
                if set(_bounds(schema)):
                    yield method, path, op["operationId"], "body", name, schema


def test_each_stated_range_is_the_one_enforced(client):
    sign_up(client)  # the first account: an administrator, so that every route answers
    ids = [i["id"] for i in client.get("/api/gallery").get_json()["items"]]
    probed = []
    for method, path, operation, where, name, schema in _probes():
        for inside, outside in _bounds(schema):
            answers = []
            for value in (inside, outside):
                if where == "query":
                    r = client.open(path, method=method.upper(), query_string={name: value})
                else:
                    assert operation in BASE_BODIES, f"say in BASE_BODIES what {operation} needs besides {name}"
                    r = client.open(path, method=method.upper(), json={**BASE_BODIES[operation](ids), name: value},
                                    headers=csrf_headers(client))
                error = (r.get_json(silent=True) or {}).get("error")
                answers.append((r.status_code, error.get("code") if isinstance(error, dict) else None))
            assert answers[0][0] != 400, (operation, name, inside, answers[0])
            assert answers[1] == (400, "invalid_field"), (operation, name, outside, answers[1])
            probed.append((operation, name))
    assert {("search", "top_k"), ("search", "threshold"), ("listGallery", "per_page"), ("groups", "k"),
            ("duplicates", "threshold"), ("createKey", "days")} <= set(probed)
