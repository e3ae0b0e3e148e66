"""The redirector: a Flask app factory for gunicorn (``gunicorn 'engage.web.app:create_app()'``).

``create_app`` builds the services once (``app.extensions["engage"]``,
engage.web.extension), registers the blueprints under the path of every tracking URL,
the one error handler (engage.web.errors) and the access log (one line per request,
tokens shortened, IP and User-Agent as ``[privacy]`` allows). Clicks on ``/c/`` are
answered in front of Flask (engage.web.clickpath); the client IP comes from
X-Forwarded-For only through ``proxy_hops`` trusted proxies.
"""
from __future__ import annotations

import hashlib
import os
import time
from urllib.parse import urlsplit

import redis

from engage import extras
from engage import settings as config

try:
    from flask import Blueprint, Flask, Response, g, request
    from werkzeug.middleware.proxy_fix import ProxyFix
except ModuleNotFoundError as exc:  # a pip install without the web extra
    raise extras.missing("engage redirector", exc) from None
from engage.dashboard import assets
from engage.dashboard.gate import HashGate
from engage.dashboard.login import ATTEMPT_WINDOW, ATTEMPTS, HASHING_SLOTS, Login
from engage.erasure.privacy import limiter_secret
from engage.geoip import open_lookup
from engage.logsetup import configure_logging
from engage.pendingclicks import click_parts
from engage.store import keys
from engage.store.redisconn import connect
from engage.web import errors
from engage.web.api_compat import compat
from engage.web.api_doctor import doctor
from engage.web.api_events import events
from engage.web.api_metrics import metrics
from engage.web.api_recipients import recipients
from engage.web.api_track import track
from engage.web.clickpath import ClickPath, access_line
from engage.web.dashboard import dashboard
from engage.web.extension import EXTENSION, Engage, engage
from engage.web.health import health
from engage.web.ratelimit import RateLimiter
from engage.web.responses import GIF as GIF  # re-exported: tools and tests import it here
from engage.web.tracking import tracking

BLUEPRINTS = (tracking, track, events, compat, metrics, recipients, doctor, health)
MAX_BODY = 16 * 1024  # as nginx's client_max_body_size: the forget API's body is tiny


def create_app(settings: config.Settings | None = None,
               client: redis.Redis | None = None) -> Flask:
    """Build the app; with no settings, read the settings file and ENGAGE_* variables."""
    if settings is None:
        settings = config.load_or_exit("engage redirector")
    configure_logging(settings.log_level)
    services = build_services(settings, client)
    app = Flask(__name__, static_folder=None)  # the dashboard serves its own files
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider's, Flask's default
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY  # a larger body: 413, never read
    app.extensions[EXTENSION] = services
    app.wsgi_app = ClickPath(  # type: ignore[method-assign]  # WSGI middleware, as Flask's docs wrap it
        app.wsgi_app, services, services.prefixes)
    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]  # WSGI middleware, as Flask's docs wrap it
            app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops)
    blueprints = BLUEPRINTS + ((dashboard,) if services.login else ())
    for number, prefix in enumerate(route_prefixes(settings)):
        for blueprint in blueprints:
            _register(app, blueprint, prefix, number)
    if "" not in services.prefixes:
        _register(app, health, "", "root")
    app.register_error_handler(Exception, errors.handle)
    app.before_request(_start_clock)
    app.after_request(_access_line)
    return app


def build_services(settings: config.Settings, client: redis.Redis | None) -> Engage:
    """Everything the views use, connected once (``client``: a given connection)."""
    if client is None:
        client = connect(settings.redis_url, timeout=2.0)
    judge, link_store, event_log = click_parts(client, settings, "engage redirector")
    secret = limiter_secret(*settings.api_keys, settings.url_signing_key,
                            *(stored for _, stored in settings.dashboard_users)) or os.urandom(32)
    login = None
    if settings.dashboard_enabled:
        # One hashing gate per installation (its Redis and prefix) on this host.
        name = hashlib.sha256(f"{settings.redis_url}\0{settings.key_prefix}".encode())
        login = Login(dict(settings.dashboard_users), RateLimiter(
            client, keys.login_limit_prefix(settings.key_prefix), ATTEMPTS, ATTEMPT_WINDOW),
            HashGate(f"hash-{name.hexdigest()[:12]}", HASHING_SLOTS),
            ip_mode=settings.ip_addresses, secret=secret)
    return Engage(
        settings, client, link_store, event_log,
        RateLimiter(client, settings.key_prefix, settings.rate_limit, settings.rate_limit_window,
                    settings.ip_addresses, secret),
        open_lookup(settings.geoip_db), judge,
        prefixes=tuple(sorted(route_prefixes(settings), key=len, reverse=True)),
        login=login, files=assets.load() if login else {})


def route_prefixes(settings: config.Settings) -> list[str]:
    """The distinct URL paths of the tracking URL and every tracking domain ('' = root)."""
    urls = [settings.tracking_url, *settings.tracking_domains.values()]
    return sorted({urlsplit(url).path.rstrip("/") for url in urls})


def _register(app: Flask, blueprint: Blueprint, prefix: str, number: int | str) -> None:
    """The blueprint under ``prefix``; the first copy keeps the blueprint's own name."""
    name = blueprint.name if number == 0 else f"{blueprint.name}_{number}"
    app.register_blueprint(blueprint, url_prefix=prefix, name=name)


def _start_clock() -> None:
    g.started = time.perf_counter()
    g.now = time.time()


def _access_line(response: Response) -> Response:
    """engage.web.clickpath.access_line for a request Flask answered."""
    access_line(engage().settings, request.remote_addr or "", request.method, request.path,
                response.status_code, g.get("started", time.perf_counter()), g.get("event", "-"),
                request.headers.get("User-Agent", ""))
    return response
