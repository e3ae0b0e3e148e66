"""``/healthz`` for nginx, systemd and load balancers: 200 whenever Redis answers (links
still redirect), with ``"status": "degraded"`` and the memory reading, refused writes and
dropped events when Redis is above the events high-water mark (engage.web.drops); 503
``{"status": "unavailable", "redis": "unreachable"}`` when it does not answer."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify

from engage.web import drops
from engage.web.extension import engage

health = Blueprint("health", __name__)


@health.route("/healthz")
def healthz() -> tuple[Response, int]:
    services = engage()
    body, status = drops.report(services.client, services.settings.key_prefix,
                                services.gauge, services.drops)
    return jsonify(body), status
