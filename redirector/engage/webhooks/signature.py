"""Request signatures: Standard Webhooks (the default) and our older X-Engage-Signature.

Standard Webhooks, as Svix and Resend send them and their verifiers (``svix``,
``standardwebhooks``, ``resend.Webhooks.verify``, anymail's Resend view) check:
``webhook-id`` (the batch id: the same on every retry), ``webhook-timestamp`` (unix
seconds of this attempt) and ``webhook-signature: v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">`` keyed by the base64-decoded part of a ``whsec_...`` secret;
the same three again as ``svix-id``, ``svix-timestamp``, ``svix-signature``. Without a
secret only the id and timestamp are sent (a receiver may still deduplicate on the id).

X-Engage-Signature (a per-webhook option, ``signature_scheme = engage``):
``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``. Both put the time
inside the MAC, so a captured request cannot be replayed later than the receiver's
tolerance; the ``verify`` functions are what a consumer runs (constant-time compare).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

HEADER = "X-Engage-Signature"
TOLERANCE = 300
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # Standard Webhooks asks for 24 to 64
ID, TIMESTAMP, SIGNATURE = "webhook-id", "webhook-timestamp", "webhook-signature"
ALIASES = {ID: "svix-id", TIMESTAMP: "svix-timestamp", SIGNATURE: "svix-signature"}
STANDARD_HEADERS = frozenset((*ALIASES, *ALIASES.values()))
MAX_HEADER = 4096  # a longer value is not ours


def mac(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, now: float | None = None) -> str:
    """The X-Engage-Signature value for ``body`` at ``now``."""
    timestamp = int(time.time() if now is None else now)
    return f"t={timestamp},v1={mac(secret, timestamp, body)}"


def verify(secret: str, header: object, body: bytes, tolerance: float = TOLERANCE,
           now: float | None = None) -> bool:
    """True when ``header`` signs exactly ``body`` with ``secret`` within ``tolerance`` s
    (any of its ``v1`` values, so a receiver can rotate secrets). Whatever the header
    holds (not a string, non-ASCII, no or several ``t``, a huge number), the answer is
    False, never an exception: the header comes from whoever sent the request."""
    if not isinstance(header, str) or not header.isascii() or len(header) > MAX_HEADER:
        return False
    fields = [item.strip().partition("=") for item in header.split(",")]
    stamps = [value for name, _, value in fields if name == "t"]
    macs = [value for name, _, value in fields if name == "v1" and value]
    if len(stamps) != 1 or not stamps[0].isdigit() or len(stamps[0]) > 12 or not macs:
        return False
    timestamp = int(stamps[0])
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = mac(secret, timestamp, body).encode()
    return any(hmac.compare_digest(expected, value.encode()) for value in macs)


# --------------------------------------------------------------------- Standard Webhooks

def new_secret() -> str:
    """A fresh ``whsec_`` secret, as Svix and Resend issue them."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; ValueError when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"must be {SECRET_PREFIX} followed by base64") from None
    if not 16 <= len(key) <= 128:
        raise ValueError("the key must be 16 to 128 bytes (24 to 64 recommended)")
    return key


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body,
                      hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def standard_headers(secret: str, msg_id: str, body: bytes,
                     now: float | None = None) -> dict[str, str]:
    """webhook-id/-timestamp(/-signature with a secret), and their svix- aliases."""
    timestamp = int(time.time() if now is None else now)
    headers = {ID: msg_id, TIMESTAMP: str(timestamp)}
    if secret:
        headers[SIGNATURE] = standard_signature(secret, msg_id, timestamp, body)
    headers.update({ALIASES[name]: value for name, value in list(headers.items())})
    return headers


def verify_standard(secret: str, headers: Mapping[str, str], body: bytes,
                    tolerance: float = TOLERANCE, now: float | None = None) -> bool:
    """What a Standard Webhooks receiver checks (header names in lower case)."""
    try:
        msg_id, stamp = headers[ID], headers[TIMESTAMP]
        if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12 or len(msg_id) > 256:
            return False
        timestamp = int(stamp)
        expected = standard_signature(secret, msg_id, timestamp, body).partition(",")[2]
    except (KeyError, ValueError, TypeError, AttributeError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    return any(version == "v1" and hmac.compare_digest(expected.encode(), value.encode("utf-8", "replace"))
               for version, _, value in (item.partition(",")
                                         for item in headers.get(SIGNATURE, "").split()))
