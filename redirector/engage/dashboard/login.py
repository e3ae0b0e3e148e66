"""HTTP Basic login for the dashboard's users (RFC 7617).

``Login.check(authorization, client)`` names the user whose ``Basic`` credentials these
are, or None. A password hash costs ~0.1-0.3 s of CPU by design, and the page calls the
APIs every few seconds, so a credential that verified once is remembered (as an HMAC
under a per-process random key, never the password) for the life of the process.
Every credential not remembered yet counts against its client address: past ``ATTEMPTS``
in ``ATTEMPT_WINDOW`` seconds nothing is hashed until the window ends (guessing is slow
and cannot be used to burn the CPU). An unknown user costs a hash too, so timing does
not tell which users exist.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Mapping
from typing import Protocol

from engage.dashboard.passwords import Hash, parse_hash, verify

log = logging.getLogger(__name__)

REALM = "engage dashboard"
CHALLENGE = f'Basic realm="{REALM}", charset="UTF-8"'
ATTEMPTS = 30
ATTEMPT_WINDOW = 300
REMEMBERED = 256  # verified credentials kept per process


class Limiter(Protocol):
    def allow(self, ip: str) -> bool: ...


def basic_credentials(authorization: str) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic ...`` value, None for anything else."""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


class Login:
    """The configured users; thread-safe (gunicorn's gthread workers share one)."""

    def __init__(self, users: Mapping[str, str], attempts: Limiter) -> None:
        self.users: dict[str, Hash] = {name: parse_hash(text) for name, text in users.items()}
        self.attempts = attempts
        # An unknown user is checked against a real user's hash (same cost), then refused.
        self._decoy = next(iter(self.users.values()), None)
        self._key = secrets.token_bytes(32)
        self._verified: dict[bytes, str] = {}
        self._lock = threading.Lock()

    def check(self, authorization: str, client: str) -> str | None:
        credentials = basic_credentials(authorization)
        if credentials is None:
            return None
        user, password = credentials
        token = hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        with self._lock:
            if token in self._verified:
                return self._verified[token]
        if not self.attempts.allow(client):
            log.warning("dashboard: too many login attempts from %s, not checked", client)
            return None
        stored = self.users.get(user)
        against = stored or self._decoy
        if against is None or not verify(against, password) or stored is None:
            log.info("dashboard: failed login from %s", client)
            return None
        with self._lock:
            if len(self._verified) >= REMEMBERED:
                self._verified.clear()
            self._verified[token] = user
        return user
