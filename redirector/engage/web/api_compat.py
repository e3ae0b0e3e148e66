"""SparkPost API routes that SparkPost clients call besides the events search and metrics.

``GET /api/v1/events/message/documentation`` and ``/samples`` (engage.web.eventdocs),
the Metrics API root ``/api/v1/metrics/`` and its list routes (``/api/v1/metrics/
campaigns``, ``/domains``, ``/sending-domains`` ..., engage.metrics.lists.list_values), in
SparkPost's shapes. Every answer is JSON, errors too: ``{"errors": [{"message", "code",
"description"[, "param"]}]}`` (engage.web.errors). Each route wants an API key in
``Authorization`` (engage.web.auth).
"""
from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request

from engage.metrics.lists import LISTS, list_values, parse_list_query
from engage.query import BadParameter, parse_delimiter, parse_list
from engage.web import eventdocs
from engage.web.auth import api_key_required
from engage.web.eventsapi import SPARKPOST_TYPES
from engage.web.extension import engage

EVENTS = "/api/v1/events/message"
METRICS = "/api/v1/metrics"
LIST_NAMES = ",".join(f'"{name}"' for name in LISTS)

compat = Blueprint("compat", __name__)


@compat.route(f"{EVENTS}/documentation")
@api_key_required
def documentation() -> Response:
    return jsonify(results=eventdocs.documentation())


@compat.route(f"{EVENTS}/samples")
@api_key_required
def samples() -> Response:
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


@compat.route(f"{METRICS}/")
@api_key_required
def metrics_root() -> Response:
    names = ["", "deliverability", *LISTS]
    return jsonify(results={}, links=[{"href": f"{METRICS}/{name}", "rel": name, "method": "GET"}
                                      for name in sorted(names)])


@compat.route(f"{METRICS}/<any({LIST_NAMES}):name>")
@api_key_required
def metrics_list(name: str) -> Response:
    services = engage()
    settings, now = services.settings, time.time()
    query = parse_list_query(name, {key: request.args[key] for key in request.args}, now,
                             settings.metrics_retention_days)
    values = list_values(services.client, settings.key_prefix, query, now,
                         settings.metrics_retention_days)
    return jsonify(results={name: values})
