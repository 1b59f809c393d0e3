"""WSGI entry point: ``gunicorn wsgi:app``. Runs the start-up step (``app.startup.prepare``) once per process."""
from app import create_app
from app.startup import prepare

app = create_app()
prepare(app)
