"""The redirector: a Flask app factory for gunicorn (``gunicorn 'engage.web:create_app()'``).

The only module that imports Flask. Promises: ``/c/<token>`` answers 302 only to a URL
the link store holds for that token (http/https, byte for byte), anything else is a 404
page; ``/o`` and ``/i`` always answer the 43-byte GIF, recorded or not. The /v1/track
family answers from the same store: ``/v1/track/open/<email_id>`` as ``/o``,
``/v1/track/click/<tracking_id>`` as ``/c`` except that a ``?url=`` is followed only with
a valid ``sig`` (else 400, never a redirect); the client IP
comes from X-Forwarded-For only through ``proxy_hops`` trusted proxies; one access-log
line per request, tokens shortened. Routes live under the path of every tracking URL.
With ``[dashboard] enabled`` the dashboard page (engage.dashboard) answers ``/dashboard``
to its users' HTTP Basic login, and those credentials open the JSON APIs too.
"""
from __future__ import annotations

import hmac
import json
import logging
import sys
import time
from dataclasses import replace
from functools import partial
from typing import Any, Callable
from urllib.parse import urlsplit

import redis

from engage import extras, machines
from engage import settings as config
from engage.clickpath import (
    REDIRECT_HEADERS,
    ClickPath,
    Services,
    access_line,
    log_path,
    lookup_click,
    page,
    record,
    safe_location,
)
from engage.dashboard import assets
from engage.dashboard.login import ATTEMPT_WINDOW, ATTEMPTS, CHALLENGE, Login
from engage.events import EventError, EventLog, RequestFacts
from engage.eventsapi import BadParameter, next_link, parse_query, search
from engage.forget import Forgetter, address_from_json
from engage.geoip import open_lookup
from engage.judge import Judge, thresholds
from engage.links import Link, LinkStore, StoreError
from engage.metricsapi import GROUPS, parse_metrics_query
from engage.metricsapi import run as metrics_run
from engage.ratelimit import RateLimiter
from engage.redisconn import connect
from engage.trackapi import message_status, signed

try:
    from flask import Blueprint, Flask, Response, abort, current_app, g, jsonify, request
    from werkzeug.exceptions import HTTPException
    from werkzeug.middleware.proxy_fix import ProxyFix
except ModuleNotFoundError as exc:  # a pip install without the web extra
    raise extras.missing("engage redirector", exc) from None

log = logging.getLogger(__name__)
access_log = logging.getLogger("engage.access")

# The classic 1x1 transparent GIF89a, 43 bytes.
GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c"
                    "00000000010001000002024401003b")
NO_CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate, max-age=0",
            "Pragma": "no-cache", "Expires": "0"}
METRICS_ROUTE = "/api/v1/metrics/deliverability"
JSON_ENDPOINTS = ("events_message", "message_status", "forget_recipient", "healthz",
                  *(f"metrics_{tail or 'summary'}" for tail in GROUPS))
PIXEL_ENDPOINTS = ("open", "initial_open", "v1_open")
DASHBOARD = "engage.dashboard"  # app.extensions key of the dashboard's Login


def create_app(settings: config.Settings | None = None,
               client: redis.Redis[bytes] | None = None) -> Flask:
    """Build the app; with no settings, read the settings file and ENGAGE_* variables."""
    if settings is None:
        settings = config.load_or_exit("engage redirector")
    _configure_logging(settings.log_level)
    rules = machines.load_or_exit("engage redirector", settings.verdict_rules,
                                  settings.verdict_extra_rules)
    if client is None:
        client = connect(settings.redis_url, timeout=2.0)
    services = Services(
        settings, client,
        LinkStore(client, settings.key_prefix, settings.link_retention_days,
                  settings.metrics_retention_days),
        EventLog(client, settings.key_prefix, settings.events_retention_days,
                 settings.link_retention_days, settings.metrics_retention_days),
        RateLimiter(client, settings.key_prefix, settings.rate_limit, settings.rate_limit_window,
                    settings.ip_addresses),
        open_lookup(settings.geoip_db),
        Judge(client, settings.key_prefix, rules, thresholds(settings), settings.trap_window))
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if settings.dashboard_enabled:
        app.extensions[DASHBOARD] = Login(dict(settings.dashboard_users), RateLimiter(
            client, f"{settings.key_prefix}dashboard:", ATTEMPTS, ATTEMPT_WINDOW))
    app.wsgi_app = ClickPath(  # type: ignore[method-assign]
        app.wsgi_app, services, route_prefixes(settings))
    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops)
    blueprint = _blueprint(services)
    for number, prefix in enumerate(route_prefixes(settings)):
        app.register_blueprint(blueprint, url_prefix=prefix, name=f"tracking{number}")
    if "" not in route_prefixes(settings):
        app.add_url_rule("/healthz", "healthz", _healthz(services))
    app.register_error_handler(Exception, _error_handler)
    app.before_request(_start_clock)
    app.after_request(_challenge)
    app.after_request(partial(_access_line, settings))
    return app


def _configure_logging(level: str) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def route_prefixes(settings: config.Settings) -> list[str]:
    """The distinct URL paths of the tracking URL and every tracking domain ('' = root)."""
    urls = [settings.tracking_url, *settings.tracking_domains.values()]
    return sorted({urlsplit(url).path.rstrip("/") for url in urls})


def _blueprint(services: Services) -> Blueprint:
    blueprint = Blueprint("tracking", __name__)
    blueprint.add_url_rule("/c/<token>", "click", _click(services), methods=["GET", "HEAD"])
    blueprint.add_url_rule("/o/<token>", "open", _pixel(services, "open"))
    blueprint.add_url_rule("/i/<token>", "initial_open", _pixel(services, "initial_open"))
    blueprint.add_url_rule("/v1/track/click/<tracking_id>", "v1_click", _v1_click(services),
                           methods=["GET", "HEAD"])
    blueprint.add_url_rule("/v1/track/open/<token>", "v1_open", _pixel(services, "open"))
    blueprint.add_url_rule("/api/v1/events/message", "events_message", _events_api(services))
    blueprint.add_url_rule("/api/v1/messages/<email_id>", "message_status",
                           _message_api(services))
    blueprint.add_url_rule("/api/v1/recipients/forget", "forget_recipient",
                           _forget_api(services), methods=["POST"])
    for tail in GROUPS:
        blueprint.add_url_rule(f"{METRICS_ROUTE}/{tail}".rstrip("/"),
                               f"metrics_{tail or 'summary'}", _metrics_api(services, tail))
    blueprint.add_url_rule("/healthz", "healthz", _healthz(services))
    if services.settings.dashboard_enabled:
        view = _dashboard(assets.load())
        blueprint.add_url_rule("/dashboard", "dashboard", view)
        blueprint.add_url_rule("/dashboard/", "dashboard_slash", view, defaults={"name": ""})
        blueprint.add_url_rule("/dashboard/<name>", "dashboard_file", view)
    return blueprint


class ExactRedirect(Response):
    """A 302 whose Location is sent as stored: Werkzeug would run it through iri_to_uri,
    which lowercases the scheme and host and re-quotes; browsers must get the milter's bytes."""

    def __init__(self, location: str) -> None:
        super().__init__(status=302, headers={"Location": location, **REDIRECT_HEADERS})

    def get_wsgi_headers(self, environ: Any) -> Any:
        headers = super().get_wsgi_headers(environ)
        headers["Location"] = self.headers["Location"]
        return headers


def _client_facts(services: Services) -> RequestFacts:
    ip = request.remote_addr or ""
    return RequestFacts(ip, request.headers.get("User-Agent", ""),
                        request.headers.get("Accept-Language", ""),
                        services.geo(ip) if services.geo and ip else None,
                        request.headers.get("Referer", ""))


def _record(services: Services, kind: str, resolved: Any) -> None:
    """engage.clickpath.record for this request; the event word for the access log."""
    g.event = kind
    g.event = record(services, kind, resolved, request.method, _client_facts(services),
                     g.get("now") or time.time())


def _click(services: Services) -> Callable[[str], Response]:
    """Only what engage.clickpath hands on (tokens with characters no token has): 404."""
    def click(token: str) -> Response:
        return _stored_redirect(services, token)
    return click


def _click_state(services: Services, url: str | None = None) -> Any:
    return services.judge.click_state(g.get("now") or time.time(), request.remote_addr or "", url)


def _stored_redirect(services: Services, token: str) -> Response:
    """Over the rate limit a 403 whatever the token; else the stored link or a 404."""
    allowed, resolved = lookup_click(services, token, request.remote_addr or "",
                                     g.get("now") or time.time())
    if not allowed:
        abort(403)
    location = safe_location(resolved.link.url) if resolved and resolved.link else None
    if location is None:
        abort(404)
    _record(services, "click", resolved)
    return ExactRedirect(location)


def _v1_click(services: Services) -> Callable[[str], Response]:
    """The stored link, or in broadcast mode the ``url`` argument when ``sig`` is ours for
    it; the click is recorded against the message the tracking id (or email id) names."""
    def v1_click(tracking_id: str) -> Response:
        if "url" not in request.args:
            return _stored_redirect(services, tracking_id)
        if not services.limiter.allow(request.remote_addr or ""):
            abort(403)
        url = request.args["url"]
        if not signed(services.settings.url_signing_key, url, request.args.get("sig", "")):
            g.event = "bad-signature"
            abort(400)
        location = safe_location(url)
        if location is None:
            abort(400)
        resolved = services.links.resolve(tracking_id, also=_click_state(services, url))
        if resolved is None:
            g.event = "unknown"
        else:
            _record(services, "click", replace(resolved, link=Link(url)))
        return ExactRedirect(location)
    return v1_click


def gif() -> Response:
    return Response(GIF, mimetype="image/gif", headers=NO_CACHE)


def _pixel(services: Services, kind: str) -> Callable[[str], Response]:
    def pixel(token: str) -> Response:
        resolved = services.links.resolve(token)
        if resolved is not None and resolved.link is None:
            _record(services, kind, resolved)
        else:
            g.event = "unknown"
        return gif()
    return pixel


def _authorized(keys: tuple[str, ...], given: str) -> bool:
    """Compare against every key in constant time (no early exit on a match); with the
    dashboard on, its users' Basic credentials count too (the page calls the APIs)."""
    candidate = given.strip().encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key.encode())
    return matched or _dashboard_user(given) is not None


def _dashboard_user(authorization: str) -> str | None:
    login = current_app.extensions.get(DASHBOARD)
    return login.check(authorization, request.remote_addr or "") if login else None


def _dashboard(files: dict[str, assets.Asset]) -> Callable[..., Response]:
    """The page at .../dashboard (its relative URLs need exactly that), its files below."""
    def dashboard(name: str | None = None) -> Response:
        if name == "":
            return ExactRedirect("../dashboard")
        if _dashboard_user(request.headers.get("Authorization", "")) is None:
            abort(401)
        found = files.get(assets.PAGE if name is None else name)
        if found is None or name == assets.PAGE:
            abort(404)
        g.event = "dashboard"
        return Response(found.body, content_type=found.content_type, headers=assets.HEADERS)
    return dashboard


def _challenge(response: Response) -> Response:
    """With the dashboard on, a 401 (page or API) asks the browser for the Basic login."""
    if response.status_code == 401 and DASHBOARD in current_app.extensions:
        response.headers.setdefault("WWW-Authenticate", CHALLENGE)
    return response


def _events_api(services: Services) -> Callable[[], Any]:
    def events_message() -> Any:
        if not _authorized(services.settings.api_keys, request.headers.get("Authorization", "")):
            return _json_error(401, "Unauthorized.", "a valid API key is required "
                               "in the Authorization header")
        args = {name: request.args[name] for name in request.args}
        page = search(services.events, parse_query(args, time.time()),
                      services.settings.api_max_scan)
        # The stored events are JSON already: splice them in rather than parse and re-dump.
        links = json.dumps(next_link(request.path, args, page.cursor)).encode()
        body = b'{"results":[%s],"total_count":%d,"links":%s}' % (
            page.results, page.total_count, links)
        return Response(body, mimetype="application/json")
    return events_message


def _metrics_api(services: Services, group: str) -> Callable[[], Any]:
    def metrics() -> Any:
        if not _authorized(services.settings.api_keys, request.headers.get("Authorization", "")):
            return _json_error(401, "Unauthorized.", "a valid API key is required "
                               "in the Authorization header")
        now = time.time()
        query = parse_metrics_query(group, {name: request.args[name] for name in request.args},
                                    now)
        return jsonify(results=metrics_run(services.client, services.settings.key_prefix, query,
                                           now, services.settings.metrics_retention_days))
    return metrics


def _message_api(services: Services) -> Callable[[str], Any]:
    def message_status_view(email_id: str) -> Any:
        if not _authorized(services.settings.api_keys, request.headers.get("Authorization", "")):
            return _json_error(401, "Unauthorized.", "a valid API key is required "
                               "in the Authorization header")
        resolved = services.links.resolve(email_id)
        if resolved is None or resolved.link is not None:
            return _json_error(404, "Not found.", "no message has this email_id")
        return jsonify(results=message_status(resolved, services.links.status(resolved.message_key)))
    return message_status_view


def _forget_api(services: Services) -> Callable[[], Any]:
    """POST {"recipient": "<address>"}: erase it (engage.forget); a JSON summary."""
    forgetter = Forgetter(services.client, services.settings.key_prefix)

    def forget_recipient() -> Any:
        if not _authorized(services.settings.api_keys, request.headers.get("Authorization", "")):
            return _json_error(401, "Unauthorized.", "a valid API key is required "
                               "in the Authorization header")
        try:
            address = address_from_json(request.get_data())
        except ValueError as exc:
            return _json_error(400, "invalid parameter", str(exc), "recipient")
        return jsonify(results=forgetter.forget(address).as_dict())
    return forget_recipient


def _healthz(services: Services) -> Callable[[], Any]:
    def healthz() -> Any:
        try:
            services.client.ping()
        except redis.RedisError as exc:
            log.warning("healthz: redis unreachable: %s", exc)
            return jsonify(status="unavailable", redis="unreachable"), 503
        return jsonify(status="ok", redis="ok")
    return healthz


def _json_error(status: int, message: str, description: str,
                param: str | None = None) -> tuple[Response, int]:
    error = {"message": message, "description": description}
    if param:
        error["param"] = param
    return jsonify(errors=[error]), status


def _error_handler(exc: Exception) -> Any:
    """The one place where failures become answers: JSON for the API, pages elsewhere."""
    endpoint = (request.endpoint or "").rpartition(".")[2]
    if endpoint in PIXEL_ENDPOINTS:  # the pixel is always served
        g.event = "lost"
        log.error("open not recorded: %s", exc)
        return gif()
    if isinstance(exc, BadParameter):
        return _json_error(400, "invalid parameter", exc.description, exc.param)
    if isinstance(exc, HTTPException):
        status, detail = exc.code or 500, exc.description or ""
    elif isinstance(exc, (StoreError, EventError, redis.RedisError)):
        log.error("%s %s: redis unavailable: %s", request.method, _log_path(), exc)
        status, detail = 503, "the event store is unreachable, try again"
    else:
        log.exception("%s %s failed", request.method, _log_path())
        status, detail = 500, "internal error"
    if endpoint in JSON_ENDPOINTS:
        return _json_error(status, "unavailable" if status == 503 else "error", detail)
    return Response(page(status), status=status, mimetype="text/html")


def _start_clock() -> None:
    g.started = time.perf_counter()
    g.now = time.time()


def _log_path() -> str:
    """The request path without its query (recipients are personal) and with tokens cut."""
    return log_path(request.path)


def _access_line(settings: config.Settings, response: Response) -> Response:
    """engage.clickpath.access_line for a request Flask answered."""
    access_line(settings, request.remote_addr or "", request.method, request.path,
                response.status_code, g.get("started", time.perf_counter()), g.get("event", "-"),
                request.headers.get("User-Agent", ""))
    return response
