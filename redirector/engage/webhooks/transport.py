"""One HTTP POST with a hard timeout, as a value: status code (0 = no answer), latency.

stdlib urllib: no new dependency, https and the environment's proxy settings work.
Redirects are not followed: urllib would turn a redirected POST into a GET without the
body and report success; SparkPost wants a 200 from the target itself.
"""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

USER_AGENT = "engage-webhooks/0.1"
READ_LIMIT = 64 * 1024  # of a response body; more is not needed to judge it


@dataclass(frozen=True)
class Answer:
    status: int  # HTTP status; 0 when the target never answered (timeout, refused ...)
    latency_ms: int
    body: bytes = b""
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("User-Agent", USER_AGENT)
    for name, value in headers.items():
        request.add_header(name, value)
    started = time.monotonic()
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return Answer(response.status, _elapsed(started), response.read(READ_LIMIT))
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(exc.code, _elapsed(started), exc.read(READ_LIMIT), f"HTTP {exc.code}")
    except (OSError, ValueError) as exc:  # URLError, timeouts, resets, bad URL
        reason = getattr(exc, "reason", exc)
        return Answer(0, _elapsed(started), error=f"{type(exc).__name__}: {reason}")


def _elapsed(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
