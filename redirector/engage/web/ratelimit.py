"""Per-client rate limit for the redirector: a fixed-window counter per IP in Redis.

One round trip per request (INCR + EXPIRE pipelined), shared by every worker and every
redirector host on the same Redis; a click counts inside its token lookup's script instead
(``counter``, ``allows``; engage.web.clickpath). Fails open: when Redis is unreachable nobody is
limited, because the click could not be resolved anyway and pixels must be served.
Unless ``[privacy] ip_addresses = full`` the counter is per /24 (IPv6 /48) network, so no
client address is written to Redis; with ``none`` the network is a keyed digest
(engage.erasure.privacy.limiter_ip).
"""
from __future__ import annotations

import logging
import time
from typing import Any

import redis

from engage.erasure.privacy import limiter_ip
from engage.store import keys

log = logging.getLogger(__name__)


class RateLimiter:
    """``allow(ip)`` is False once ``limit`` requests came from ``ip`` in the current window."""

    def __init__(self, client: redis.Redis, prefix: str, limit: int, window: int,
                 ip_mode: str = "full", secret: bytes = b"") -> None:
        self.client = client
        self.prefix = prefix
        self.limit = limit  # 0: no limit
        self.window = window
        self.ip_mode = ip_mode
        self.secret = secret

    def key(self, ip: str, now: float) -> str:
        return keys.rate_limit(self.prefix, limiter_ip(ip, self.ip_mode, self.secret),
                               int(now // self.window))

    def counter(self, ip: str, now: float) -> tuple[str, int]:
        """The counter this request adds to (INCR) and the TTL it gets (EXPIRE)."""
        return self.key(ip, now), self.window + 1

    def allows(self, count: Any) -> bool:
        """Whether the count the counter's INCR answered is within the limit."""
        return not self.limit or int(count) <= self.limit

    def allow(self, ip: str, now: float | None = None) -> bool:
        if not self.limit:
            return True
        key, ttl = self.counter(ip, time.time() if now is None else now)
        pipe = self.client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, ttl)
        try:
            count, _ = pipe.execute()
        except redis.RedisError as exc:
            log.warning("rate limit not applied, redis failed: %s", exc)
            return True
        return self.allows(count)
