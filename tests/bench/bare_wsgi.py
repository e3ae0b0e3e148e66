"""The smallest WSGI app that answers like a click: a fixed 302, nothing else.

bench_redirector.py runs it under the same gunicorn settings as the redirector, as the
ceiling a Python WSGI app under gunicorn can reach on the machine.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable

HEADERS = [("Location", "https://example.com/p1?utm_source=bench&x=1"),
           ("Cache-Control", "no-store"), ("X-Robots-Tag", "noindex"),
           ("Content-Type", "text/html; charset=utf-8"), ("Content-Length", "0")]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("302 FOUND", HEADERS)
    return [b""]
