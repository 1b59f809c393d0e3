"""WSGI entry point: ``gunicorn wsgi:app``. Runs the start-up step (``app.startup.prepare``) once per process, in
the background: the process answers at once (503 with Retry-After until it is ready)."""
from app import create_app
from app.startup import prepare

app = create_app()
prepare(app, wait=False)
