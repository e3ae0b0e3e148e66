"""Who may call what: ``api_key_required`` for the JSON APIs, ``login_required`` for the
dashboard's own routes. Nothing else authenticates.

An API key is the whole ``Authorization`` header value (SparkPost's way), compared with
every configured key in constant time (hmac.compare_digest, no early exit); browser
credentials (Basic) never open an API, so a page on another site cannot use a dashboard
login the browser holds. Only the dashboard's routes check the dashboard users'
password hashes (engage.dashboard.login: per-network limit, host-wide hashing cap), and
only their 401s ask the browser for the Basic login.
"""
from __future__ import annotations

import hmac
from functools import wraps
from typing import Any, Callable, TypeVar

from flask import request

from engage.dashboard.login import ATTEMPT_WINDOW, CHALLENGE, Busy, TooManyAttempts
from engage.web.errors import ApiError
from engage.web.extension import engage

View = TypeVar("View", bound=Callable[..., Any])
NO_KEY = "a valid API key is required in the Authorization header"
NO_LOGIN = "a dashboard login is required"


def key_matches(keys: tuple[str, ...], given: str) -> bool:
    """Whether ``given`` is one of ``keys``: every key compared, in constant time."""
    candidate = given.strip().encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key.encode())
    return matched


def api_key_required(view: View) -> View:
    """The view runs only for a request with a configured API key (else a JSON 401)."""
    @wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if not key_matches(engage().settings.api_keys, request.headers.get("Authorization", "")):
            raise ApiError(401, NO_KEY)
        return view(*args, **kwargs)
    return checked  # type: ignore[return-value]  # same signature as view


def login_required(view: View) -> View:
    """The view runs only for a dashboard user's Basic login: else 401 with the Basic
    challenge, 429 past the network's attempts, 503 while every hashing slot is taken."""
    @wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        login = engage().login
        try:
            user = login.check(request.headers.get("Authorization", ""),
                               request.remote_addr or "") if login else None
        except TooManyAttempts:
            raise ApiError(429, "too many login attempts from your network, try again later",
                           headers={"Retry-After": str(ATTEMPT_WINDOW)}) from None
        except Busy:
            raise ApiError(503, "the login service is busy, try again in a moment",
                           headers={"Retry-After": "1"}) from None
        if user is None:
            raise ApiError(401, NO_LOGIN, headers={"WWW-Authenticate": CHALLENGE})
        return view(*args, **kwargs)
    return checked  # type: ignore[return-value]  # same signature as view
