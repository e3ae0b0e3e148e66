"""What the redirector makes of a caller's address, for ``engage doctor``'s proxy check.

``GET <tracking path>/api/v1/doctor/client-address`` (API key required) answers with the
client address the redirector derived (what rate limits and events use), the address of
the peer that connected to gunicorn, the X-Forwarded-For header as it arrived and
``[web] proxy_hops``. The caller learns only about its own request and the proxies it went
through; the header is cut at MAX_HEADER characters.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ROUTE = "/api/v1/doctor/client-address"
MAX_HEADER = 1000


def describe(environ: Mapping[str, Any], client: str, proxy_hops: int) -> dict[str, Any]:
    original = environ.get("werkzeug.proxy_fix.orig") or {}
    return {"client_address": client,
            "peer_address": original.get("REMOTE_ADDR", environ.get("REMOTE_ADDR", "")),
            "x_forwarded_for": str(environ.get("HTTP_X_FORWARDED_FOR", ""))[:MAX_HEADER],
            "proxy_hops": proxy_hops}
