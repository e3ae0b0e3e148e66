"""The smallest WSGI apps that answer like a click: a fixed 302, nothing else (``app``),
and the same after one Redis round trip (``one_trip``: a GET of the token's key).

bench_redirector.py runs them under the same gunicorn settings as the redirector: the
ceiling a Python WSGI app under gunicorn can reach on the machine, and the ceiling of
one that waits on Redis once per click, as the redirector's click now does.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Callable

import redis

HEADERS = [("Location", "https://example.com/p1?utm_source=bench&x=1"),
           ("Cache-Control", "no-store"), ("X-Robots-Tag", "noindex"),
           ("Content-Type", "text/html; charset=utf-8"), ("Content-Length", "0")]
# One client per worker process (gunicorn imports the app in each worker).
CLIENT = redis.Redis.from_url(os.environ.get("ENGAGE_REDIS_URL", "redis://127.0.0.1:6379/0"))


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("302 FOUND", HEADERS)
    return [b""]


def one_trip(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """One round trip (GET of ``bare:<path>``, a key that is not there), then the 302."""
    CLIENT.get("bare:" + environ.get("PATH_INFO", ""))
    start_response("302 FOUND", HEADERS)
    return [b""]
