"""SparkPost API routes that SparkPost clients call besides the events search and metrics.

``GET /api/v1/events/message/documentation`` and ``/samples`` (engage.web.eventdocs),
the Metrics API root ``/api/v1/metrics/`` and its list routes (``/api/v1/metrics/
campaigns``, ``/domains``, ``/sending-domains`` ..., engage.metrics.api.list_values), in
SparkPost's shapes. Every answer is JSON, errors too: ``{"errors": [{"message", "code",
"description"[, "param"]}]}``. Each route wants an API key in ``Authorization``, as the
key itself or SparkPost's Basic form (the key as user name, no password).
"""
from __future__ import annotations

import base64
import binascii
import hmac
import logging
import time
from collections.abc import Iterable
from typing import Any, Callable

import redis
from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from engage.metrics.api import LISTS, list_values, parse_list_query
from engage.query import BadParameter, error_object, parse_delimiter, parse_list
from engage.store.events import EventError
from engage.web import eventdocs
from engage.web.clickpath import Services
from engage.web.eventsapi import SPARKPOST_TYPES

log = logging.getLogger("engage.web.app")
METRICS = "/api/v1/metrics"


def register(app: Flask, services: Services, prefixes: Iterable[str]) -> None:
    """Add the routes under every tracking URL path, as the tracking routes are."""
    blueprint = make_blueprint(services)
    for number, prefix in enumerate(prefixes):
        app.register_blueprint(blueprint, url_prefix=prefix, name=f"compat{number}")


def make_blueprint(services: Services) -> Blueprint:
    blueprint = Blueprint("compat", __name__)
    routes: dict[str, Callable[[], Any]] = {
        "/api/v1/events/message/documentation": _documentation,
        "/api/v1/events/message/samples": _samples,
        f"{METRICS}/": _metrics_root,
    }
    for name in LISTS:
        routes[f"{METRICS}/{name}"] = _metrics_list(services, name)
    for path, view in routes.items():
        blueprint.add_url_rule(path, path.rsplit("/", 2)[-1] or "metrics_root",
                               _guarded(services, view))
    blueprint.register_error_handler(Exception, _error)
    return blueprint


def _guarded(services: Services, view: Callable[[], Any]) -> Callable[[], Any]:
    def guarded() -> Any:
        if not authorized(services.settings.api_keys, request.headers.get("Authorization", "")):
            return error(401, "Unauthorized.", "a valid API key is required in the "
                         "Authorization header")
        return view()
    guarded.__name__ = view.__name__
    return guarded


def authorized(keys: Iterable[str], given: str) -> bool:
    """The key itself or ``Basic base64(key:)``; every key compared in constant time."""
    candidate = given.strip()
    if candidate[:6].lower() == "basic ":
        try:
            candidate = base64.b64decode(candidate[6:], validate=True).decode().rpartition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return False
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate.encode(), key.encode())
    return matched


def error(status: int, message: str, description: str,
          param: str | None = None, code: str | None = None) -> tuple[Response, int]:
    return jsonify(errors=[error_object(message, description, code or status, param)]), status


def _documentation() -> Any:
    return jsonify(results=eventdocs.documentation())


def _samples() -> Any:
    """``?events=`` lists types; those engage never produces (bounce ...) have no sample."""
    args = {name: request.args[name] for name in request.args}
    for name in args:
        if name not in ("events", "delimiter"):
            raise BadParameter(name, "unsupported parameter")
    kinds = (parse_list(args["events"], "events", parse_delimiter(args))
             if "events" in args else SPARKPOST_TYPES)
    unknown = set(kinds) - SPARKPOST_TYPES
    if unknown:
        raise BadParameter("events", f"unknown event type {sorted(unknown)[0]!r}")
    return jsonify(results=eventdocs.samples(kinds))


def _metrics_root() -> Any:
    names = ["", "deliverability", *LISTS]
    return jsonify(results={}, links=[{"href": f"{METRICS}/{name}", "rel": name, "method": "GET"}
                                      for name in sorted(names)])


def _metrics_list(services: Services, name: str) -> Callable[[], Any]:
    def metrics_list() -> Any:
        settings, now = services.settings, time.time()
        query = parse_list_query(name, {key: request.args[key] for key in request.args}, now,
                                 settings.metrics_retention_days)
        values = list_values(services.client, settings.key_prefix, query, now,
                             settings.metrics_retention_days)
        return jsonify(results={name: values})
    metrics_list.__name__ = f"metrics_list_{name.replace('-', '_')}"
    return metrics_list


def _error(exc: Exception) -> Any:
    """This blueprint's failures as SparkPost's JSON errors (never an HTML page)."""
    if isinstance(exc, BadParameter):
        return error(400, "invalid parameter", exc.description, exc.param, exc.code)
    if isinstance(exc, HTTPException):
        return error(exc.code or 500, exc.name, exc.description or "")
    if isinstance(exc, (EventError, redis.RedisError)):
        log.error("%s %s: redis unavailable: %s", request.method, request.path, exc)
        return error(503, "unavailable", "the event store is unreachable, try again")
    log.exception("%s %s failed", request.method, request.path)
    return error(500, "error", "internal error")
