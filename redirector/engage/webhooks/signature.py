"""Our optional HMAC-SHA256 signature header (SparkPost signs nothing).

``X-Engage-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``.
The timestamp is inside the MAC so a captured batch cannot be replayed later than the
receiver's tolerance; ``verify`` is what a consumer runs (constant-time compare).
"""
from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Engage-Signature"
TOLERANCE = 300
MAX_HEADER = 4096  # a longer value is not ours


def mac(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, now: float | None = None) -> str:
    """The header value for ``body`` at ``now``."""
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
