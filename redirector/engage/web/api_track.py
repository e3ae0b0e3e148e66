"""The /v1/track family (``[tracking] link_style = v1``), answered from the same store.

``/v1/track/open/<email_id>`` is ``/o``; ``/v1/track/click/<tracking_id>`` is ``/c``
except that a ``?url=`` (broadcast mode) is followed only with a ``sig`` valid for this
id and URL (engage.web.trackapi; else 400, never a redirect), and the click is recorded
against the message the tracking id (or email id) names.
"""
from __future__ import annotations

from dataclasses import replace

from flask import Blueprint, Response, abort, g, request

from engage.store.records import Link
from engage.web.clickpath import safe_location
from engage.web.extension import engage
from engage.web.responses import ExactRedirect
from engage.web.trackapi import LEGACY, signature_kind
from engage.web.tracking import now, pixel, record_event, stored_redirect

track = Blueprint("track", __name__)


@track.route("/v1/track/click/<tracking_id>", methods=["GET", "HEAD"])
def v1_click(tracking_id: str) -> Response:
    if "url" not in request.args:
        return stored_redirect(tracking_id)
    services = engage()
    ip = request.remote_addr or ""
    if not services.limiter.allow(ip):
        abort(403)
    url, settings = request.args["url"], services.settings
    kind = signature_kind(settings.url_signing_key, url, request.args.get("sig", ""),
                          tracking_id, settings.legacy_url_signatures)
    if kind is None:
        g.event = "bad-signature"
        abort(400)
    location = safe_location(url)
    if location is None:
        abort(400)
    resolved = services.links.resolve(tracking_id,
                                      also=services.judge.click_state(now(), ip, url))
    if resolved is None:
        g.event = "unknown"
    else:
        record_event(services, "click", replace(resolved, link=Link(url)))
    if kind == LEGACY:  # the access log tells whether URL-only signatures are still in use
        g.event = f"{g.event}-legacy-sig"
    return ExactRedirect(location)


@track.route("/v1/track/open/<token>")
def v1_open(token: str) -> Response:
    return pixel(token, "open")
