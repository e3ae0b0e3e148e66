"""A minimal Django site running django-anymail's tracking webhook views on a real HTTP
server (wsgiref, one thread per request), as an application that used SparkPost or
Resend through anymail runs them. Not a test module: tests/webhooks/test_anymail.py
starts it.

Routes (each an anymail view, configured per view as anymail's settings would):
  /sparkpost/           SparkPostTrackingWebhookView, basic auth BASIC_AUTH
  /sparkpost-initial/   the same with SPARKPOST_TRACK_INITIAL_OPEN_AS_OPENED = True
  /resend/              ResendTrackingWebhookView with RESEND_SIGNING_SECRET (svix verifies)
Every request (path, lower-cased headers, raw body, status) is kept in ``Site.requests``;
every event anymail's ``tracking`` signal sends in ``Site.events`` as (view, event).
"""
from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any, Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from engage.webhooks.signature import new_secret

BASIC_AUTH = "anymail:s3cret"
RESEND_SECRET = new_secret()
urlpatterns: list[Any] = []


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0


@dataclass
class Site:
    base: str
    requests: list[Received] = field(default_factory=list)
    events: list[tuple[str, Any]] = field(default_factory=list)

    def url(self, route: str) -> str:
        return f"{self.base}/{route}/"

    def reset(self) -> None:
        self.requests.clear()
        self.events.clear()

    def events_of(self, view: str) -> list[Any]:
        return [event for name, event in list(self.events) if name == view]

    def wait_events(self, view: str, count: int, timeout: float = 20) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.events_of(view)) >= count:
                time.sleep(0.3)  # anything more (a duplicate) would show up now
                return self.events_of(view)
            time.sleep(0.05)
        raise AssertionError(f"{view}: {len(self.events_of(view))} of {count} events in "
                             f"{timeout} s; statuses {[r.status for r in self.requests]}")


def _configure() -> None:
    import django
    from django.conf import settings

    if settings.configured:
        return
    settings.configure(
        DEBUG=False, SECRET_KEY="engage-tests", ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF=__name__, INSTALLED_APPS=["anymail"], MIDDLEWARE=[], USE_TZ=True,
        ANYMAIL={}, LOGGING_CONFIG=None)
    django.setup()
    from anymail.webhooks.resend import ResendTrackingWebhookView
    from anymail.webhooks.sparkpost import SparkPostTrackingWebhookView
    from django.urls import path

    class SparkPostView(SparkPostTrackingWebhookView):
        webhook_secret = None  # so that as_view() takes anymail's settings per view
        track_initial_open_as_opened = None

    class SparkPostInitialOpenView(SparkPostView):
        pass

    urlpatterns.extend([
        path("sparkpost/", SparkPostView.as_view(webhook_secret=BASIC_AUTH)),
        path("sparkpost-initial/", SparkPostInitialOpenView.as_view(
            webhook_secret=BASIC_AUTH, track_initial_open_as_opened=True)),
        path("resend/", ResendTrackingWebhookView.as_view(signing_secret=RESEND_SECRET)),
    ])


VIEW_NAMES = {"SparkPostView": "sparkpost", "SparkPostInitialOpenView": "sparkpost-initial",
              "ResendTrackingWebhookView": "resend"}


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def _recording(site: Site, app: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        headers = {key[5:].lower().replace("_", "-"): value
                   for key, value in environ.items() if key.startswith("HTTP_")}
        received = Received(environ["PATH_INFO"].strip("/"), headers, body)

        def start(status: str, response_headers: Any, *rest: Any) -> Any:
            received.status = int(status.split()[0])
            site.requests.append(received)
            return start_response(status, response_headers, *rest)
        return app(environ, start)
    return wrapper


def start() -> tuple[Site, Callable[[], None]]:
    """The site on a free port; (site, stop)."""
    _configure()
    from anymail.signals import tracking
    from django.core.wsgi import get_wsgi_application

    server = make_server("127.0.0.1", 0, lambda e, s: app(e, s), server_class=_Server,
                         handler_class=_Quiet)
    site = Site(f"http://127.0.0.1:{server.server_address[1]}")
    app = _recording(site, get_wsgi_application())

    def collect(sender: Any, event: Any, esp_name: str, **_: Any) -> None:
        site.events.append((VIEW_NAMES[sender.__name__], event))

    tracking.connect(collect, weak=False, dispatch_uid="engage-tests")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def stop() -> None:
        tracking.disconnect(dispatch_uid="engage-tests")
        server.shutdown()
        server.server_close()
    return site, stop
