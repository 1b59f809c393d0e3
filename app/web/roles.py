"""Who may do what: the administrator role on pages and API routes."""
from __future__ import annotations

import functools

from flask import abort, current_app
from flask_login import current_user

from ..errors import ApiError


def require_sign_in(message: str) -> None:
    """On an API route: 401 unless someone is signed in (by a cookie or an API key); ``message`` says why."""
    if not current_user.is_authenticated:
        raise ApiError(401, "unauthorized", message)


def admin_required(api: bool):
    """Only administrators: anonymous users are sent to sign in (401 on the API), others get 403."""
    def wrap(view):
        @functools.wraps(view)
        def inner(*args, **kwargs):
            if not current_user.is_authenticated:
                if api:
                    raise ApiError(401, "unauthorized", "Sign in as an administrator.")
                return current_app.login_manager.unauthorized()
            if not current_user.is_admin:
                if api:
                    raise ApiError(403, "forbidden", "Only administrators can change the gallery.")
                abort(403)
            return view(*args, **kwargs)
        return inner
    return wrap
