"""The /v1/track API family's pure parts: ``?url=`` signatures and the message status object.

A broadcast-mode ``?url=`` is honoured only with ``sig`` = base64url (no padding) of
HMAC-SHA256(``[web] url_signing_key``, the exact URL as UTF-8); no key configured means
no signature is ever valid. ``message_status`` is what ``GET /api/v1/messages/<email_id>``
returns: the stored records plus the status hash engage.store.events keeps.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from engage.store.events import iso_time
from engage.store.links import Resolved, open_token

COUNTS = ("open_count", "initial_open_count", "click_count", "repeat_opens")


def sign(key: str, url: str) -> str:
    digest = hmac.new(key.encode(), url.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def signed(key: str, url: str, signature: str) -> bool:
    """Whether ``signature`` is ours for ``url`` (constant-time; False without a key)."""
    if not key or not signature:
        return False
    return hmac.compare_digest(sign(key, url).encode(), signature.strip().rstrip("=").encode())


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
