"""HTTP Basic login for the dashboard's users (RFC 7617), on the dashboard's routes only.

``Login.check(authorization, client)`` names the user whose ``Basic`` credentials these
are, or None. A password hash costs ~0.1-0.3 s of CPU by design, and the page calls its
data routes every few seconds, so a credential that verified once is remembered (as an
HMAC under a per-process random key, never the password) for the life of the process.
Every credential not remembered yet costs a hash, which is bounded twice:

- per network (IPv4 /24, IPv6 /64: one attacker rarely holds more): past ``ATTEMPTS``
  in ``ATTEMPT_WINDOW`` seconds nothing is hashed (``TooManyAttempts``, a 429);
- per host: at most ``HASHING_SLOTS`` hashes at once (half the cores; engage.dashboard.gate);
  when they are taken nothing waits (``Busy``, a 503), so logins can never queue CPU work
  ahead of clicks. Requests with a credential that is being checked right now (a page
  loads its files and data in parallel) wait for that check instead of hashing again.

An unknown user costs a hash too, so timing does not tell which users exist. The
limiter's key and the log lines hold the client's network only as ``[privacy]
ip_addresses`` allows (engage.erasure.privacy).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from engage.dashboard.gate import HashGate, Leave
from engage.dashboard.passwords import Hash, parse_hash, verify
from engage.erasure.privacy import login_network, mask_ip

log = logging.getLogger(__name__)

REALM = "engage dashboard"
CHALLENGE = f'Basic realm="{REALM}", charset="UTF-8"'
ATTEMPTS = 30
ATTEMPT_WINDOW = 300
HASHING_SLOTS = max(1, (os.cpu_count() or 2) // 2)  # per host: the other cores answer clicks
REMEMBERED = 256  # verified credentials kept per process
FLIGHT_WAIT = 5.0  # seconds a request waits for the check of the same credential


class TooManyAttempts(Exception):
    """The client's network used its attempts: nothing was hashed."""


class Busy(Exception):
    """Every hashing slot was taken: nothing was hashed, try again in a moment."""


@dataclass
class Flight:
    """A check under way; requests with the same credential wait for its outcome."""

    done: threading.Event = field(default_factory=threading.Event)
    outcome: str | None | Exception = None


class Limiter(Protocol):
    def allow(self, ip: str) -> bool: ...


class Gate(Protocol):
    def enter(self) -> Leave | None: ...


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
    """The configured users; thread-safe (gunicorn's gthread workers share one).

    ``attempts`` counts per network (the key ``login_network`` gives); ``gate`` caps
    concurrent hashes (default: a host-wide HashGate); ``ip_mode`` and ``secret``:
    ``[privacy] ip_addresses`` and the pseudonym key (engage.erasure.privacy)."""

    def __init__(self, users: Mapping[str, str], attempts: Limiter, gate: Gate | None = None,
                 ip_mode: str = "full", secret: bytes = b"") -> None:
        self.users: dict[str, Hash] = {name: parse_hash(text) for name, text in users.items()}
        self.attempts = attempts
        self.gate = gate or HashGate("dashboard-hash", HASHING_SLOTS)
        self.ip_mode, self.secret = ip_mode, secret
        # An unknown user is checked against a real user's hash (same cost), then refused.
        self._decoy = next(iter(self.users.values()), None)
        self._key = secrets.token_bytes(32)
        self._verified: dict[bytes, str] = {}
        self._flights: dict[bytes, Flight] = {}
        self._lock = threading.Lock()

    def check(self, authorization: str, client: str) -> str | None:
        """The user, None for wrong or no credentials; TooManyAttempts, Busy."""
        credentials = basic_credentials(authorization)
        if credentials is None:
            return None
        user, password = credentials
        token = hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        with self._lock:
            if token in self._verified:
                return self._verified[token]
            flight = self._flights.get(token)
            if flight is None:
                mine = self._flights[token] = Flight()
        if flight is not None:
            return self._await(flight)
        try:
            mine.outcome = self._check(user, password, token, client)
        except (TooManyAttempts, Busy) as exc:
            mine.outcome = exc
            raise
        finally:
            with self._lock:
                del self._flights[token]
            mine.done.set()
        return mine.outcome

    @staticmethod
    def _await(flight: Flight) -> str | None:
        if not flight.done.wait(FLIGHT_WAIT):
            raise Busy()
        if isinstance(flight.outcome, Exception):
            raise type(flight.outcome)()  # a fresh one: this thread's own traceback
        return flight.outcome

    def _check(self, user: str, password: str, token: bytes, client: str) -> str | None:
        if not self.attempts.allow(login_network(client, self.ip_mode, self.secret)):
            log.warning("dashboard: too many login attempts%s, not checked", self._from(client))
            raise TooManyAttempts()
        if not self._verify(user, password, client):
            log.info("dashboard: failed login%s", self._from(client))
            return None
        with self._lock:
            if len(self._verified) >= REMEMBERED:
                self._verified.clear()
            self._verified[token] = user
        return user

    def _verify(self, user: str, password: str, client: str) -> bool:
        stored = self.users.get(user)
        against = stored or self._decoy
        if against is None:
            return False
        leave = self.gate.enter()
        if leave is None:
            log.warning("dashboard: every password hashing slot is taken, login%s not checked",
                        self._from(client))
            raise Busy()
        try:
            return verify(against, password) and stored is not None
        finally:
            leave()

    def _from(self, client: str) -> str:
        """`` from <address>`` as [privacy] allows it in a log line ('' in none mode)."""
        shown = mask_ip(client, self.ip_mode)
        return f" from {shown}" if shown else ""
