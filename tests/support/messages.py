"""A message registered in Redis exactly as the milter registers it, for tests that need
one without sending mail through Postfix."""
from __future__ import annotations

import time
from typing import Any

from engage.store.links import Link, LinkStore, MessageRecord, Template, new_message_key, open_token


def register_message(client: Any, prefix: str, rcpt: str, campaign: str = "test",
                     url: str = "https://shop.example.com/") -> str:
    """Its email_id (the open token)."""
    template = Template(links=(Link(url),), campaign_id=campaign)
    key = new_message_key()
    LinkStore(client, prefix).register(key, template, MessageRecord(
        rcpt_to=(rcpt,), mail_from="news@shop.example.com", subject="Offer",
        message_id=f"<{key}@shop.example.com>", queue_id="Q1", injection_time=int(time.time()),
        metadata={}, template_id=template.template_id))
    return open_token(key, template.template_id)
