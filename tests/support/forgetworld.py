"""A Redis filled as engage fills it, for the erasure tests: messages registered as the
milter does, events appended as the redirector does (each in its message's shard), and
the same written under layout 1's names (an installation not yet migrated)."""
from __future__ import annotations

import json
from typing import Any

from engage.store import keys
from engage.store.events import EventLog, RequestFacts, build_event, index_values
from engage.store.links import Link, LinkStore, MessageRecord, Resolved, Template, new_message_key
from engage.store.tokens import click_token, open_token
from support.stored import key_in_shard, old_key

P = "test:"
FACTS = RequestFacts("198.51.100.7", "Mozilla/5.0", "en", None, "")


def layout1_score(entry_id: str) -> int:
    ms, _, seq = entry_id.partition("-")
    return int(ms) * 1000 + min(int(seq), 999)


class World:
    """Messages by name: their key, template and tokens (open first, then each link)."""

    def __init__(self, client: Any, retention_days: int = 0, prefix: str = P) -> None:
        self.client, self.prefix = client, prefix
        self.links = LinkStore(client, prefix, retention_days)
        self.events = EventLog(client, prefix)
        self.tokens: dict[str, list[str]] = {}
        self.keys: dict[str, str] = {}
        self.old: dict[str, tuple[Template, MessageRecord]] = {}  # layout 1's

    def message(self, name: str, rcpts: tuple[str, ...], urls: tuple[str, ...],
                subject: str = "Spring", metadata: dict[str, Any] | None = None,
                shard: int | None = None, old: bool = False) -> tuple[str, Template, MessageRecord]:
        template = Template(links=tuple(Link(url) for url in urls), campaign_id="spring",
                            friendly_from="news@shop.example", sending_domain="shop.example")
        key = (old_key() if old else new_message_key() if shard is None
               else key_in_shard(shard))
        record = MessageRecord(rcpt_to=rcpts, mail_from="bounces@shop.example", subject=subject,
                               message_id=f"<{name}@shop.example>", queue_id=name.upper(),
                               injection_time=1700000000, metadata=metadata or {"n": name},
                               template_id=template.template_id)
        self.keys[name] = key
        self.tokens[name] = [open_token(key, template.template_id)] + [
            click_token(key, template.template_id, i) for i in range(len(urls))]
        return key, template, record

    def send(self, name: str, rcpts: tuple[str, ...], urls: tuple[str, ...], **kw: Any) -> str:
        """Registered as the milter does (layout 2): the message key."""
        key, template, record = self.message(name, rcpts, urls, **kw)
        self.links.register(key, template, record)
        return key

    def engage(self, name: str) -> list[str]:
        """Open once, click every link: the stream ids (in the message's shard)."""
        ids = []
        for i, token in enumerate(self.tokens[name]):
            resolved = self.links.resolve(token)
            ids.append(self.events.append(build_event("click" if i else "open", resolved, FACTS,
                                                      1700000100.0 + i)))
        return ids

    # ------------------------------------------------------------ layout 1
    def send_layout1(self, name: str, rcpts: tuple[str, ...], urls: tuple[str, ...],
                     **kw: Any) -> str:
        """Written under layout 1's names, as before the shards."""
        key, template, record = self.message(name, rcpts, urls, old=True, **kw)
        self.client.set(keys.template(self.prefix, template.template_id, keys.LAYOUT1),
                        template.to_json())
        self.client.set(keys.message(self.prefix, key, keys.LAYOUT1), record.to_text())
        self.old[name] = (template, record)
        return key

    def engage_layout1(self, name: str) -> list[str]:
        """Events in layout 1's stream, with their indexes, as layout 1 appended them."""
        template, record = self.old[name]
        ids = []
        for i in range(len(self.tokens[name])):
            link = template.links[i - 1] if i else None
            resolved = Resolved(self.keys[name], template, record, link)
            event = build_event("click" if i else "open", resolved, FACTS, 1700000100.0 + i)
            ids.append(self.append_layout1(event))
        return ids

    def append_layout1(self, event: dict[str, Any]) -> str:
        entry = self.client.xadd(keys.events(self.prefix, keys.LAYOUT1),
                                 {"e": json.dumps(event, separators=(",", ":"))}).decode()
        score = layout1_score(entry)
        kind = event["type"]
        names = [keys.event_index(self.prefix, keys.LAYOUT1, kind)] + [
            keys.event_index(self.prefix, keys.LAYOUT1, kind, dim, value)
            for dim, value in index_values(event)]
        for name in names:
            self.client.zadd(name, {entry: score})
        return entry


def stream_ids(client: Any, prefix: str = P) -> dict[int, list[str]]:
    """Every shard's (and layout 1's) stream ids, for the shards that have any."""
    found = {}
    for shard in keys.shard_ids(layout1=True):
        ids = [i.decode() for i, _ in client.xrange(keys.events(prefix, shard))]
        if ids:
            found[shard] = ids
    return found
