"""The dashboard's routes (``[dashboard] enabled``; engage.dashboard holds the logic):
the page at ``<prefix>/dashboard`` (its relative URLs need exactly that), its files below
it, and the read-only copies of the events and metrics APIs it reads
(``<prefix>/dashboard/api/v1/...``, same parameters and answers), each behind the
dashboard users' HTTP Basic login. The JSON APIs under ``/api/`` take API keys only, so
the page's login never opens them, and none of these routes changes anything."""
from __future__ import annotations

from flask import Blueprint, Response, abort, g

from engage.dashboard import assets
from engage.web.api_events import events_page
from engage.web.api_metrics import GROUP, METRICS_ROUTE, metrics_answer
from engage.web.auth import login_required
from engage.web.extension import engage
from engage.web.responses import ExactRedirect

dashboard = Blueprint("dashboard", __name__)


@dashboard.route("/dashboard/")
def dashboard_slash() -> Response:
    return ExactRedirect("../dashboard")


def serve(name: str) -> Response:
    found = engage().files.get(name)
    if found is None:
        abort(404)
    g.event = "dashboard"
    return Response(found.body, content_type=found.content_type, headers=assets.HEADERS)


@dashboard.route("/dashboard")
@login_required
def page() -> Response:
    return serve(assets.PAGE)


@dashboard.route("/dashboard/<name>")
@login_required
def dashboard_file(name: str) -> Response:
    if name == assets.PAGE:  # the page has one URL
        abort(404)
    return serve(name)


@dashboard.route("/dashboard/api/v1/events/message")
@login_required
def events_message() -> Response:
    return events_page()


@dashboard.route(f"/dashboard{METRICS_ROUTE}", defaults={"group": ""})
@dashboard.route(f"/dashboard{METRICS_ROUTE}/{GROUP}")
@login_required
def deliverability(group: str) -> Response:
    return metrics_answer(group)
