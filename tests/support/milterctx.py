"""Driving engage_milter's TrackingMilter in-process the way libmilter does (Milter.testctx),
shared by the adapter's tests (tests/milter/test_filter.py) and the trap link's end to end
test (tests/e2e/test_trap_e2e.py)."""
from __future__ import annotations

import io

import Milter
import Milter.test  # noqa: F401  (makes @noreply callbacks return CONTINUE under TestCtx)
from Milter import testctx

from engage.settings import Settings
from engage.store.links import LinkStore
from engage_milter import filter as milter_filter

MESSAGE = (
    b"From: Shop <news@shop.example>\r\n"
    b"To: Ann <ann@example.net>\r\n"
    b"Subject: Sale\r\n"
    b"Message-ID: <m1@shop.example>\r\n"
    b'X-MSYS-API: {"campaign_id": "spring", "metadata": {"uid": 7},\r\n'
    b'  "tags": ["sale"]}\r\n'
    b"x-msys-api: {\"campaign_id\": \"ignored\"}\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b'<html><body><a href="https://shop.example/p?a=1&amp;b=2">Buy</a></body></html>\r\n'
)


class RecordingCtx(testctx.TestCtx):
    """TestCtx that records chgheader's index too (TestCtx itself ignores it)."""

    def __init__(self) -> None:
        super().__init__()
        self.header_changes: list[tuple[str, int, str]] = []
        self.fail_replacebody = False

    def chgheader(self, field, idx, value):
        self.header_changes.append((field, idx, value))

    def replacebody(self, chunk):
        if self.fail_replacebody:
            raise Milter.error("cannot replace body")
        super().replacebody(chunk)


def feed(settings: Settings, store: LinkStore, raw: bytes, ctx: RecordingCtx | None = None):
    """Drive the callbacks the way libmilter does, with the body exactly as given."""
    ctx = ctx or RecordingCtx()
    Milter.factory = lambda: milter_filter.TrackingMilter(settings, store)
    ctx._setsymval("i", "4QID1")
    assert ctx._connect() == Milter.CONTINUE
    head, body = raw.split(b"\r\n\r\n", 1)
    ctx._envfrom("<bounce@shop.example>")
    ctx._envrcpt("<ann@example.net>")
    for line in head.decode().replace("\r\n ", "\n ").replace("\r\n\t", "\n\t").split("\r\n"):
        name, value = line.split(":", 1)
        ctx._header(name, value.lstrip())
    ctx._eoh()
    ctx._feed_body(io.BytesIO(body))
    verdict = ctx._eom()
    new_body = ctx._body.getvalue() if ctx._bodyreplaced else None
    return verdict, ctx, new_body
