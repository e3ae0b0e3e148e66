"""One HTTP POST with a hard timeout, as a value: status code (0 = no answer), latency.

stdlib urllib: no new dependency, https and the environment's proxy settings work.
Redirects are not followed: urllib would turn a redirected POST into a GET without the
body and report success; SparkPost wants a 200 from the target itself. Unless
``allow_private``, connections go only to public addresses (engage.webhooks.targets,
checked at connect time against the address reached).
"""
from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engage.webhooks import targets

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


class _PublicHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = targets.connect


class _PublicHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = targets.connect


class _PublicHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: Any) -> Any:
        return self.do_open(_PublicHTTPConnection, req)


class _PublicHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: Any) -> Any:
        return self.do_open(_PublicHTTPSConnection, req, context=self._context)  # type: ignore[attr-defined]  # HTTPSHandler keeps its context there


_OPENER = urllib.request.build_opener(_NoRedirect())
_PUBLIC_OPENER = urllib.request.build_opener(_NoRedirect(), _PublicHTTPHandler(),
                                             _PublicHTTPSHandler())


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float,
         allow_private: bool = False) -> Answer:
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("User-Agent", USER_AGENT)
    for name, value in headers.items():
        request.add_header(name, value)
    opener = _OPENER if allow_private else _PUBLIC_OPENER
    started = time.monotonic()
    try:
        if not allow_private and _proxied(request):
            targets.check_target(url, allow_private)  # the proxy connects: resolve here
        with opener.open(request, timeout=timeout) as response:
            return Answer(response.status, _elapsed(started), response.read(READ_LIMIT))
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(exc.code, _elapsed(started), exc.read(READ_LIMIT), f"HTTP {exc.code}")
    except (OSError, ValueError) as exc:  # URLError, timeouts, resets, bad URL, refused target
        reason = getattr(exc, "reason", exc)
        kind = type(reason if isinstance(reason, targets.TargetRefused) else exc).__name__
        return Answer(0, _elapsed(started), error=f"{kind}: {reason}")


def _proxied(request: urllib.request.Request) -> bool:
    proxies = urllib.request.getproxies()
    host = request.host.rpartition("@")[2]
    return request.type in proxies and not urllib.request.proxy_bypass(host)


def _elapsed(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
