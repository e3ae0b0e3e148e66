"""SparkPost's metrics API: ``GET /api/v1/metrics/deliverability[/<group>]``
(engage.metrics.api), one route per group of engage.metrics.api.GROUPS, API key needed.

``metrics_answer`` is the answer itself, shared with the dashboard's copy of the routes.
"""
from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request

from engage.metrics.api import GROUPS, parse_metrics_query
from engage.metrics.api import run as metrics_run
from engage.web.auth import api_key_required
from engage.web.extension import engage

METRICS_ROUTE = "/api/v1/metrics/deliverability"
GROUP = "<any({}):group>".format(",".join(f'"{name}"' for name in GROUPS if name))

metrics = Blueprint("metrics", __name__)


def metrics_answer(group: str) -> Response:
    services = engage()
    settings = services.settings
    now = time.time()
    query = parse_metrics_query(group, {name: request.args[name] for name in request.args}, now)
    return jsonify(results=metrics_run(services.client, settings.key_prefix, query, now,
                                       settings.metrics_retention_days))


@metrics.route(METRICS_ROUTE, defaults={"group": ""})
@metrics.route(f"{METRICS_ROUTE}/{GROUP}")
@api_key_required
def deliverability(group: str) -> Response:
    return metrics_answer(group)
