"""Who a request acts for, before anything else looks: ``Authorization: Bearer <API key>`` makes it the key's
account for this request only (no session, no cookie written); other requests keep the session cookie and
its CSRF check.

A bearer request needs no CSRF token: what CSRF guards against is a browser sending a site's cookies with a
request another site made, and no other site can make a browser add an ``Authorization`` header here
(that needs a CORS preflight, which this app never grants). A wrong, expired or revoked key is a 401, never a
fall-back to the cookies or to anonymous access. Other schemes (``Basic`` from a proxy in front) are ignored.
"""
from __future__ import annotations

from flask import Flask, current_app, g, request

from ..errors import ApiError
from ..extensions import csrf
from ..storage.api_keys import user_for_key
from ..storage.models import ApiKey


def bearer_token() -> str | None:
    """The key a request carries, or None when it sends no ``Bearer`` authorisation."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def current_key() -> ApiKey | None:
    """The API key this request authenticated with, or None (a session cookie, or nobody)."""
    return g.get("api_key")


def _authenticate():
    token = bearer_token()
    if token is None:
        return
    found = user_for_key(token)
    if found is None:
        raise ApiError(401, "invalid_api_key", "The API key is not valid: unknown, revoked, expired, or its account "
                                               "is disabled. Make a new one on your account page.")
    user, g.api_key = found
    # Flask-Login keeps the request's user in g._login_user and loads it from the session only when that is
    # unset: set here, the key's account is current_user whatever cookies came along, and no session is made.
    g._login_user = user


def _check_csrf():
    if current_key() is None and current_app.config["WTF_CSRF_ENABLED"]:
        csrf.protect(apply_exemptions=True)


def init_app(app: Flask) -> None:
    """Authenticate API keys before every other hook, and check CSRF tokens after the others (a stranger to a
    private gallery is told to sign in, not that a token is missing); Flask-WTF's own check, which cannot tell
    a key from a cookie, is turned off. Call after the other hooks are installed."""
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.before_request_funcs.setdefault(None, []).insert(0, _authenticate)
    app.before_request(_check_csrf)
