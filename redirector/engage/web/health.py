"""``/healthz``: 200 ``{"status": "ok", "redis": "ok"}`` when Redis answers a PING, else
503 ``{"status": "unavailable", "redis": "unreachable"}`` (nginx and systemd checks)."""
from __future__ import annotations

import logging

import redis
from flask import Blueprint, Response, jsonify

from engage.web.extension import engage

log = logging.getLogger("engage.web.app")

health = Blueprint("health", __name__)


@health.route("/healthz")
def healthz() -> tuple[Response, int]:
    try:
        engage().client.ping()
    except redis.RedisError as exc:
        log.warning("healthz: redis unreachable: %s", exc)
        return jsonify(status="unavailable", redis="unreachable"), 503
    return jsonify(status="ok", redis="ok"), 200
