"""The answers every part of the redirector gives: the pixel GIF and the exact redirect."""
from __future__ import annotations

from typing import Any

from flask import Response

from engage.web.clickpath import REDIRECT_HEADERS

# The classic 1x1 transparent GIF89a, 43 bytes.
GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c"
                    "00000000010001000002024401003b")
NO_CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate, max-age=0",
            "Pragma": "no-cache", "Expires": "0"}


def gif() -> Response:
    return Response(GIF, mimetype="image/gif", headers=NO_CACHE)


class ExactRedirect(Response):
    """A 302 whose Location is sent as stored: Werkzeug would run it through iri_to_uri,
    which lowercases the scheme and host and re-quotes; browsers must get the milter's bytes."""

    def __init__(self, location: str) -> None:
        super().__init__(status=302, headers={"Location": location, **REDIRECT_HEADERS})

    def get_wsgi_headers(self, environ: Any) -> Any:
        headers = super().get_wsgi_headers(environ)
        headers["Location"] = self.headers["Location"]
        return headers
