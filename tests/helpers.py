"""Helpers the tests share: building an app on a test gallery, signing up, CSRF headers, a local HTTP server."""
from __future__ import annotations

import contextlib
import http.server
import os
import re
import threading


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
    from app.extensions import db
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
            db.drop_all()
            db.session.execute(db.text("DROP TABLE IF EXISTS alembic_version"))
            db.session.commit()
        upgrade()
    prepare(app)
    return app


def csrf_headers(client) -> dict:
    """The header an AJAX call sends: the token from /api/csrf-token for this client's session."""
    token = client.get("/api/csrf-token").get_json()["csrf_token"]
    return {"X-CSRFToken": token}


def sign_up(client, email="ada@example.com", password="correct horse battery"):
    page = client.get("/auth/signup").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    return client.post("/auth/signup", data={"email": email, "password": password, "confirm": password,
                                             "csrf_token": token}, follow_redirects=True)


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
