"""Authorization for a target: none, basic, or an OAuth2 client-credentials token.

Tokens are fetched from ``auth_request_details.url`` (form POST of grant_type=
client_credentials plus the ``body`` fields, e.g. client_id and client_secret), cached per
webhook in the worker, refreshed shortly before ``expires_in`` runs out, and dropped when
the target answers 400 or 401 (SparkPost's rule), so the next try fetches a new one.
"""
from __future__ import annotations

import base64
import json
import logging
import threading
import time
from typing import Any
from urllib.parse import urlencode

from engage.webhooks import transport
from engage.webhooks.config import Webhook

log = logging.getLogger("engage.webhooks")
DEFAULT_EXPIRES = 3600
REFRESH_MARGIN = 30  # seconds before expiry that a token is renewed


class AuthError(Exception):
    """No token could be had; the batch counts as a failed attempt."""


def basic(username: str, password: str) -> str:
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class Tokens:
    """OAuth2 access tokens by webhook id (thread-safe, per process)."""

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[str, float, str]] = {}
        self._lock = threading.Lock()

    def get(self, hook: Webhook, timeout: float, allow_private: bool = False) -> str:
        key = json.dumps(dict(hook.auth_request_details), sort_keys=True, allow_nan=False)
        with self._lock:
            cached = self._tokens.get(hook.id)
        if cached and cached[2] == key and cached[1] > time.time():
            return cached[0]
        token, expires_in = fetch_token(hook.auth_request_details, timeout, allow_private)
        expires_at = time.time() + max(expires_in - REFRESH_MARGIN, expires_in / 2)
        with self._lock:
            self._tokens[hook.id] = (token, expires_at, key)
        return token

    def drop(self, hook_id: str) -> None:
        with self._lock:
            self._tokens.pop(hook_id, None)


def fetch_token(details: Any, timeout: float, allow_private: bool = False
                ) -> tuple[str, float]:
    """(access_token, expires_in seconds) from the token endpoint; AuthError otherwise.
    ``allow_private``: engage.webhooks.transport.post's."""
    fields = {"grant_type": "client_credentials", **dict(details.get("body", {}))}
    answer = transport.post(str(details["url"]), urlencode(fields).encode(),
                            {"Content-Type": "application/x-www-form-urlencoded",
                             "Accept": "application/json"}, timeout, allow_private)
    if not answer.ok:
        raise AuthError(f"token endpoint answered {answer.status or answer.error}")
    try:
        reply = json.loads(answer.body)
        token = str(reply["access_token"])
        expires_in = float(reply.get("expires_in") or DEFAULT_EXPIRES)
    except (ValueError, KeyError, TypeError) as exc:
        raise AuthError(f"token endpoint reply unusable: {type(exc).__name__}") from None
    log.info("oauth2 token fetched from %s (expires in %ss)", details["url"], int(expires_in))
    return token, expires_in


def authorization(hook: Webhook, tokens: Tokens, timeout: float,
                  allow_private: bool = False) -> str | None:
    """The Authorization header value for ``hook``, or None."""
    if hook.auth_type == "basic":
        creds = hook.auth_credentials
        return basic(creds["username"], creds.get("password", ""))
    if hook.auth_type == "oauth2":
        return "Bearer " + tokens.get(hook, timeout, allow_private)
    return None
