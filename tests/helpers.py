"""Helpers the tests share: building an app on a test gallery, signing up, CSRF headers, posting a search,
waiting on a condition, a local HTTP server."""
from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import re
import threading
import time


def database_urls() -> list[str]:
    """SQLite always; PostgreSQL and MariaDB as well where TEST_DATABASE_URL and TEST_MARIADB_URL name them
    (CI starts real servers)."""
    return ["sqlite"] + [os.environ[k] for k in ("TEST_DATABASE_URL", "TEST_MARIADB_URL") if os.environ.get(k)]


def database_id(url: str) -> str:
    """A short test id for a database URL."""
    return "sqlite" if url == "sqlite" else url.split(":", 1)[0].split("+", 1)[0].replace("mysql", "mariadb")


def make_app(root, tmp_path, weights, database="sqlite", **overrides):
    """An app on the gallery and index below ``root``, its database migrated, and the start-up step run, as
    ``make run`` does (``flask db upgrade``, then ``wsgi.py``)."""
    from flask_migrate import upgrade

    from app import create_app
    from app.startup import prepare
    url = f"sqlite:///{tmp_path / 'app.db'}" if database == "sqlite" else database
    # Public, open and unthrottled unless a test says otherwise: most tests are about something else;
    # tests/test_access.py checks the private defaults.
    config = {"INSTANCE_DIR": str(tmp_path / "instance"), "MEDIA_DIR": str(tmp_path / "media"),
              "GALLERY_DIR": str(root / "gallery"), "INDEX_DIR": str(root / "index"), "WEIGHTS": weights,
              "SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "test-only-secret", "ACCESS": "public", "SIGNUP": "open",
              "THROTTLE": False, **overrides}
    app = create_app(config)
    with app.app_context():
        if database != "sqlite":
            reset_database()
        upgrade()
    prepare(app)
    return app


def reset_database() -> None:
    """Drop every table of the current app's database server, Alembic's own included (SQLite files are new)."""
    from app.extensions import db
    db.drop_all()
    db.session.execute(db.text("DROP TABLE IF EXISTS alembic_version"))
    db.session.commit()


def csrf_headers(client) -> dict:
    """The header an AJAX call sends: the token from /api/csrf-token for this client's session."""
    token = client.get("/api/csrf-token").get_json()["csrf_token"]
    return {"X-CSRFToken": token}


def post_search(client, image: bytes, name: str = "query.jpg", headers: dict | None = None, **fields):
    """``POST /api/search`` with ``image`` uploaded as the file ``name`` and ``fields`` beside it in the form
    (dicts and lists as JSON, as the page sends a region or a point). ``headers`` default to this client's
    CSRF header; ``{}`` sends none."""
    form = {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in fields.items()}
    return client.post("/api/search", data={"image": (io.BytesIO(image), name), **form},
                       headers=csrf_headers(client) if headers is None else headers,
                       content_type="multipart/form-data")


def wait_until(check, what: str, timeout: float = 30.0, interval: float = 0.01):
    """Poll ``check()`` until it returns something true, and return that; fail naming ``what`` after
    ``timeout`` seconds (instead of sleeping a guessed time, or spinning forever)."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def form_token(page: str, prefix: str = "") -> str:
    """The CSRF token of the form whose fields carry ``prefix`` in an HTML page."""
    return re.search(rf'name="{re.escape(prefix)}csrf_token" type="hidden" value="([^"]+)"', page).group(1)


def sign_up(client, email="ada@example.com", password="correct horse battery"):
    token = form_token(client.get("/auth/signup").get_data(as_text=True))
    return client.post("/auth/signup", data={"email": email, "password": password, "confirm": password,
                                             "csrf_token": token}, follow_redirects=True)


def sign_in(client, email, password="correct horse battery", remember=False, **environ):
    """Send the sign-in form; ``environ`` sets WSGI variables (a proxy's X-Forwarded-For, say)."""
    token = form_token(client.get("/auth/login").get_data(as_text=True))
    data = {"email": email, "password": password, "csrf_token": token}
    if remember:
        data["remember"] = "y"
    return client.post("/auth/login", data=data, **({"environ_base": environ} if environ else {}))


@contextlib.contextmanager
def live_server(app):
    """Serve ``app`` on 127.0.0.1 in threads (what a browser or a raw socket talks to); yields its base URL."""
    from werkzeug.serving import make_server
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()


def image_handler(body: bytes, content_type: str, hosts: list | None = None):
    """A request handler answering every GET with ``body`` as ``content_type``; each request's Host header is
    appended to ``hosts`` when given."""
    class OneImage(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if hosts is not None:
                hosts.append(self.headers["Host"])
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return OneImage


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # clients that give up mid-reply (timeouts, size caps) are what these tests provoke


@contextlib.contextmanager
def local_http_server(handler):
    """Serve ``handler`` on 127.0.0.1 in a thread; yields the base URL (the one outside thing we stand in for)."""
    server = _QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
