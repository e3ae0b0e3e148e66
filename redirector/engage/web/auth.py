"""Who may call what: ``api_key_required`` for the JSON APIs, ``login_required`` for the
dashboard's own routes.

An API key is the whole ``Authorization`` header value (SparkPost's way), compared with
every configured key in constant time (hmac.compare_digest, no early exit). With the
dashboard on, its users' HTTP Basic credentials open the APIs too (the page calls them).
A 401 from the dashboard's routes or, with the dashboard on, an API asks the browser for
the Basic login (``challenge``).
"""
from __future__ import annotations

import hmac
from functools import wraps
from typing import Any, Callable, TypeVar

from flask import Response, abort, request

from engage.dashboard.login import CHALLENGE
from engage.web.errors import ApiError
from engage.web.extension import engage

View = TypeVar("View", bound=Callable[..., Any])
NO_KEY = "a valid API key is required in the Authorization header"


def key_matches(keys: tuple[str, ...], given: str) -> bool:
    """Whether ``given`` is one of ``keys``: every key compared, in constant time."""
    candidate = given.strip().encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key.encode())
    return matched


def dashboard_user(authorization: str) -> str | None:
    """The dashboard user whose Basic credentials these are (None: dashboard off or no)."""
    login = engage().login
    return login.check(authorization, request.remote_addr or "") if login else None


def api_key_required(view: View) -> View:
    """The view runs only for a request with a configured API key (else a JSON 401)."""
    @wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        given = request.headers.get("Authorization", "")
        if not key_matches(engage().settings.api_keys, given) and dashboard_user(given) is None:
            raise ApiError(401, NO_KEY)
        return view(*args, **kwargs)
    return checked  # type: ignore[return-value]  # same signature as view


def login_required(view: View) -> View:
    """The view runs only for a dashboard user's Basic login (else 401)."""
    @wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if dashboard_user(request.headers.get("Authorization", "")) is None:
            abort(401)
        return view(*args, **kwargs)
    return checked  # type: ignore[return-value]  # same signature as view


def challenge(response: Response) -> Response:
    """With the dashboard on, a 401 asks the browser for the Basic login."""
    if response.status_code == 401 and engage().login is not None:
        response.headers.setdefault("WWW-Authenticate", CHALLENGE)
    return response
