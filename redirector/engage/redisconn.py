"""One way to connect to Redis for every engage process: short timeouts, one quick retry.

A milter that waits long for a dead Redis holds the SMTP client; failing fast lets the
failure policy (421 or deliver untracked) answer within a second or two.
"""
from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry


def connect(url: str, timeout: float = 5.0) -> "redis.Redis[bytes]":
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=min(timeout, 2.0),
        health_check_interval=30, retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )
