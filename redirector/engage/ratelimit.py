"""Per-client rate limit for the redirector: a fixed-window counter per IP in Redis.

One round trip per request (INCR + EXPIRE pipelined), shared by every worker and every
redirector host on the same Redis. Fails open: when Redis is unreachable nobody is
limited, because the click could not be resolved anyway and pixels must be served.
"""
from __future__ import annotations

import logging
import time

import redis

log = logging.getLogger(__name__)


class RateLimiter:
    """``allow(ip)`` is False once ``limit`` requests came from ``ip`` in the current window."""

    def __init__(self, client: redis.Redis[bytes], prefix: str, limit: int, window: int) -> None:
        self.client = client
        self.prefix = prefix
        self.limit = limit  # 0: no limit
        self.window = window

    def key(self, ip: str, now: float) -> str:
        return f"{self.prefix}rl:{ip}:{int(now // self.window)}"

    def allow(self, ip: str, now: float | None = None) -> bool:
        if not self.limit:
            return True
        key = self.key(ip, time.time() if now is None else now)
        pipe = self.client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, self.window + 1)
        try:
            count, _ = pipe.execute()
        except redis.RedisError as exc:
            log.warning("rate limit not applied, redis failed: %s", exc)
            return True
        return int(count) <= self.limit
