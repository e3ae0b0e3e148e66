"""What the views share, built once by ``create_app``: ``app.extensions["engage"]``.

One typed value instead of closures: the click path's Services (settings, Redis client,
link store, event log, rate limiter, GeoIP lookup, judge) plus what only the Flask side
needs (the dashboard's login and files, the URL prefixes the routes live under).
Views read it with ``engage()``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import current_app

from engage.web.clickpath import Services

if TYPE_CHECKING:
    from engage.dashboard.assets import Asset
    from engage.dashboard.login import Login

EXTENSION = "engage"


@dataclass(frozen=True)
class Engage(Services):
    prefixes: tuple[str, ...] = ("",)  # the tracking URLs' paths ('' = root), longest first
    login: Login | None = None  # the dashboard's, when [dashboard] enabled
    files: dict[str, Asset] = field(default_factory=dict)  # the dashboard's

    def route_of(self, path: str) -> str:
        """``path`` without the tracking prefix it lives under (``/t/api/x`` -> ``/api/x``)."""
        for prefix in self.prefixes:
            if prefix and (path == prefix or path.startswith(prefix + "/")):
                return path[len(prefix):]
        return path


def engage() -> Engage:
    """The current app's services."""
    found: Engage = current_app.extensions[EXTENSION]
    return found
