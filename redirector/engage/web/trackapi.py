"""The /v1/track API family's pure parts: ``?url=`` signatures and the message status object.

A broadcast-mode ``?url=`` on ``/v1/track/click/<id>`` is honoured only with ``sig`` =
base64url (no padding) of HMAC-SHA256(``[web] url_signing_key``, ``<id>`` + LF + the
exact URL, as UTF-8): a signature is valid for one (id, URL) pair, so it cannot record
clicks for another message. The URL-only form that engage documented before (HMAC of the
URL alone) is ``LEGACY``, accepted while ``[web] legacy_url_signatures`` is on. No key
configured means no signature is ever valid. ``message_status`` is what
``GET /api/v1/messages/<email_id>`` returns: the stored records plus the status hash
engage.store.events keeps.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any

from engage.store.links import Resolved
from engage.store.tokens import open_token
from engage.store.trackevent import iso_time

COUNTS = ("open_count", "initial_open_count", "click_count", "repeat_opens")


ID_CHARS = re.compile(r"[A-Za-z0-9_-]+")  # email and tracking ids
BOUND = "bound"
LEGACY = "legacy"


def _mac(key: str, text: str) -> str:
    digest = hmac.new(key.encode(), text.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(key: str, url: str, message_id: str) -> str:
    """The ``sig`` of ``url`` on /v1/track/click/``message_id`` (ids are ID_CHARS, no LF,
    so the pair is unambiguous)."""
    return _mac(key, f"{message_id}\n{url}")


def sign_url(key: str, url: str) -> str:
    """The legacy, URL-only ``sig``: valid with any message id."""
    return _mac(key, url)


def signature_kind(key: str, url: str, signature: str, message_id: str,
                   legacy: bool) -> str | None:
    """BOUND when ``signature`` is ours for (``message_id``, ``url``), LEGACY when it is the
    URL-only form and ``legacy`` allows it, else None (constant-time compares; None
    without a key)."""
    given = signature.strip().rstrip("=").encode()
    if not key or not given or not ID_CHARS.fullmatch(message_id):
        return None
    if hmac.compare_digest(sign(key, url, message_id).encode(), given):
        return BOUND
    if legacy and hmac.compare_digest(sign_url(key, url).encode(), given):
        return LEGACY
    return None


def recipient_text(rcpt_to: tuple[str, ...]) -> str:
    """One string for apps that expect one recipient: the address, or several joined."""
    return ", ".join(rcpt_to)


def message_status(resolved: Resolved, status: dict[str, str]) -> dict[str, Any]:
    template, record = resolved.template, resolved.record
    view: dict[str, Any] = {
        "email_id": open_token(resolved.message_key, record.template_id),
        "message_id": record.message_id, "transmission_id": resolved.message_key,
        "campaign_id": template.campaign_id, "metadata": record.metadata,
        "tags": list(template.tags), "recipient": recipient_text(record.rcpt_to),
        "recipients": list(record.rcpt_to), "from": template.friendly_from,
        "subject": record.subject, "sent_at": iso_time(record.injection_time),
        "opened_at": status.get("opened_at"), "clicked_at": status.get("clicked_at"),
    }
    view.update({name: int(status.get(name, 0)) for name in COUNTS})
    return view
