"""Who may see what, and the headers every response carries.

Private mode: everything needs a signed-in account except the sign-in and sign-up pages, static files and
``/api/health`` (which then says only whether the service is up). Every response gets a strict
Content-Security-Policy (scripts, styles and everything else only from this server; no inline code), no
framing, no MIME sniffing and a same-origin referrer; cookies are marked Secure when the request came over
HTTPS (directly, or through a trusted proxy that says so).

Caching: JSON answers, users' own query pictures and, in private mode, pages are never stored by a browser or
a proxy (``no-store``);
in private mode gallery pictures and thumbnails may be kept by the browser only (``private``), never by a
shared cache.
"""
from __future__ import annotations

from flask import Flask, current_app, redirect, request, url_for
from flask_login import current_user
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.middleware.proxy_fix import ProxyFix

from ..errors import ApiError

PUBLIC_ENDPOINTS = frozenset({"static", "auth.login", "auth.signup", "api.health", "api.csrf_token"})
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; font-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
           "Referrer-Policy": "same-origin"}
GALLERY_FILES = frozenset({"files.gallery_file", "files.thumbnail"})
PAGES_UNDER_API = frozenset({"api.docs"})  # HTML: strangers are sent to sign in, not answered in JSON


def is_private() -> bool:
    return current_app.config["ACCESS"] != "public"


def _require_sign_in():
    if not is_private() or current_user.is_authenticated or request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if request.path.startswith("/api/") and request.endpoint not in PAGES_UNDER_API:
        raise ApiError(401, "unauthorized", "Sign in first: this gallery is private.")
    return redirect(url_for("auth.login", next=request.full_path if request.query_string else request.path))


def _harden(response):
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    personal_page = is_private() and response.mimetype == "text/html"  # addresses, CSRF tokens, history
    if request.path.startswith("/api/") or request.endpoint == "files.upload_file" or personal_page:
        response.headers["Cache-Control"] = "no-store"
    elif request.endpoint in GALLERY_FILES and is_private():
        response.cache_control.public = False
        response.cache_control.private = True
    return response


class _SecureCookies:
    """WSGI middleware: every cookie of an HTTPS request is marked Secure. At this depth it also reaches the
    session and remember-me cookies, which Flask and Flask-Login set after the app's own response hooks."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        if environ.get("wsgi.url_scheme") != "https":
            return self.app(environ, start_response)

        def start(status, headers, exc_info=None):
            headers = [(k, v + "; Secure" if k.lower() == "set-cookie" and "; secure" not in v.lower() else v)
                       for k, v in headers]
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


def _template_flags() -> dict:
    from .auth import signup_allowed
    try:
        can_sign_up = not current_user.is_authenticated and signup_allowed(None)
    except SQLAlchemyError:  # an error page while the database is down still renders
        can_sign_up = False
    return {"public_mode": not is_private(), "can_sign_up": can_sign_up}


def init_app(app: Flask) -> None:
    """Install the access check, the response headers and the pages' access flags on ``app``; behind
    ``TRUSTED_PROXIES`` proxies, take the client's address and scheme from their X-Forwarded headers."""
    app.wsgi_app = _SecureCookies(app.wsgi_app)
    if app.config["TRUSTED_PROXIES"]:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    app.before_request(_require_sign_in)
    app.after_request(_harden)
    app.context_processor(_template_flags)
