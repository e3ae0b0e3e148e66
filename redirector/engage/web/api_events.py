"""SparkPost's events API (``GET /api/v1/events/message``, engage.web.eventsapi) and the
message status of the /v1/track family (``GET /api/v1/messages/<email_id>``).

Both need an API key. ``events_page`` is the answer itself, shared with the
dashboard's copy of the route.
"""
from __future__ import annotations

import json
import time

from flask import Blueprint, Response, jsonify, request

from engage.web.auth import api_key_required
from engage.web.errors import ApiError
from engage.web.eventsapi import next_link, parse_query, search
from engage.web.extension import engage
from engage.web.trackapi import message_status

events = Blueprint("events", __name__)


def events_page() -> Response:
    """One page of events for the request's query."""
    services = engage()
    args = {name: request.args[name] for name in request.args}
    page = search(services.events, parse_query(args, time.time()), services.settings.api_max_scan)
    # The stored events are JSON already: splice them in rather than parse and re-dump.
    links = json.dumps(next_link(request.path, args, page.cursor), allow_nan=False).encode()
    body = b'{"results":[%s],"total_count":%d,"links":%s}' % (
        page.results, page.total_count, links)
    return Response(body, mimetype="application/json")


@events.route("/api/v1/events/message")
@api_key_required
def events_message() -> Response:
    return events_page()


@events.route("/api/v1/messages/<email_id>")
@api_key_required
def message_status_view(email_id: str) -> Response:
    services = engage()
    resolved = services.links.resolve(email_id)
    if resolved is None or resolved.link is not None:
        raise ApiError(404, "no message has this email_id", "Not found.")
    return jsonify(results=message_status(resolved, services.links.status(resolved.message_key)))
