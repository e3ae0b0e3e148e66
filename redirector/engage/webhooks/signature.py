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


def mac(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, now: float | None = None) -> str:
    """The header value for ``body`` at ``now``."""
    timestamp = int(time.time() if now is None else now)
    return f"t={timestamp},v1={mac(secret, timestamp, body)}"


def verify(secret: str, header: str, body: bytes, tolerance: float = TOLERANCE,
           now: float | None = None) -> bool:
    """True when ``header`` signs exactly ``body`` with ``secret`` within ``tolerance`` s."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    return hmac.compare_digest(mac(secret, timestamp, body), parts.get("v1", ""))
