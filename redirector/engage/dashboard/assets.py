"""The dashboard's files (``static/``, package data) and the headers they are served with.

Loaded once at start-up. The page runs no inline script or style and loads nothing from
another origin: the Content-Security-Policy says exactly that, so data that slipped
into the DOM as markup still could not run.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
           "Cache-Control": "no-store", "X-Robots-Tag": "noindex"}
PAGE = "index.html"


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str


def load() -> dict[str, Asset]:
    """Every file of static/ by name (the page itself as ``index.html``)."""
    folder = resources.files("engage.dashboard") / "static"
    found = {}
    for entry in folder.iterdir():
        kind = TYPES.get("." + entry.name.rpartition(".")[2])
        if kind and entry.is_file():
            found[entry.name] = Asset(entry.read_bytes(), kind)
    if PAGE not in found:
        raise RuntimeError(f"engage.dashboard: static/{PAGE} is missing from the installation")
    return found
