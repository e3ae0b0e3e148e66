"""The dashboard's routes (``[dashboard] enabled``; engage.dashboard holds the logic):
the page at ``<prefix>/dashboard`` (its relative URLs need exactly that), its files below
it, each behind the dashboard users' HTTP Basic login."""
from __future__ import annotations

from flask import Blueprint, Response, abort, g

from engage.dashboard import assets
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
