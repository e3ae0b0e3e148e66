"""Signed broadcast links through the sandbox nginx and the real redirector (gunicorn):
a ``sig`` is valid for one (message id, URL) pair; moved to another message's id it is a
400 that records nothing; with ``legacy_url_signatures = no`` the older URL-only form is
a 400 too."""
from __future__ import annotations

from urllib.parse import quote

from engage.web.trackapi import sign, sign_url
from support import stored
from support.messages import register_message
from support.procs import http_get

KEY = "a-url-signing-key-of-32-characters"
URL = "https://shop.example.com/sale?a=1&b=%C3%A4"


def test_through_nginx_a_signature_moved_to_another_id_is_a_400(start_redirector, redis_client):
    redirector = start_redirector({"ENGAGE_URL_SIGNING_KEY": KEY,
                                   "ENGAGE_LEGACY_URL_SIGNATURES": "no"}, nginx=True)
    base = redirector.public_url
    alice = register_message(redis_client, "test:", "alice@example.org", "broadcast")
    bob = register_message(redis_client, "test:", "bob@example.org", "broadcast")

    def click(email_id: str, sig: str) -> tuple[int, str | None]:
        status, headers, _ = http_get(
            f"{base}/v1/track/click/{email_id}?url={quote(URL, safe='')}&sig={sig}")
        return status, headers.get("Location")

    assert click(alice, sign(KEY, URL, alice)) == (302, URL)
    assert click(bob, sign(KEY, URL, alice)) == (400, None)  # alice's link, bob's id
    assert click(bob, sign_url(KEY, URL)) == (400, None)  # the URL-only form, turned off
    assert click(bob, sign(KEY, URL, bob)) == (302, URL)

    events = stored.events(redis_client, "test:")
    assert [(e["type"], e["rcpt_to"], e["target_link_url"]) for e in events] == [
        ("click", "alice@example.org", URL), ("click", "bob@example.org", URL)]
    assert redirector.log_text().count("event=bad-signature") == 2
