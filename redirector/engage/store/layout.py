"""The tracked-URL layout: the paths the milter writes into mail and the redirector answers.

One place, because a link sent today must still resolve in years: changing a path here
changes both sides at once, and a test pins the spelling. Tokens themselves (what follows
the path) are built and split by engage.store.tokens.
"""
from __future__ import annotations

CLICK = "/c/"
TOP_PIXEL = "/i/"  # initial_open, right after <body>
BOTTOM_PIXEL = "/o/"  # open, before </body>
V1_CLICK = "/v1/track/click/"
V1_OPEN = "/v1/track/open/"

# (click, top pixel, bottom pixel) per [tracking] link_style. The v1 family has no
# initial-open pixel, so the top pixel stays /i/ in both.
LINK_PATHS = {"short": (CLICK, TOP_PIXEL, BOTTOM_PIXEL), "v1": (V1_CLICK, TOP_PIXEL, V1_OPEN)}
# A body holding a URL with one of these paths passed a tracking milter already.
TRACKED_PATHS = (TOP_PIXEL, CLICK, "/v1/track/")


def route(path: str, variable: str) -> str:
    """A Flask rule for one family: ``route(CLICK, "token")`` is ``/c/<token>``."""
    return f"{path}<{variable}>"
