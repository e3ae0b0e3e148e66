"""Layout-1 data as engage wrote it before issue 19 (one slot, key names without a shard
tag), written key by key with the registry's LAYOUT1 names; and ``snapshot``, a whole
database as comparable values, to tell two states apart.

``write_layout1`` is deterministic for a seed: message keys, templates, status hashes
(counts, first times, flags), hourly aggregates (sent, engagement, links, domains), a
few TTLs, plus a layout-1 events stream and index that the migration must leave alone.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from engage.store import aggregates, keys
from engage.store.records import Link, MessageRecord, Template

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
HOURS = ("2026-11-30T08", "2026-12-01T13", "2026-12-07T10")
TTL = 90 * 86400  # seconds, on every fourth record (link_retention_days)


@dataclass
class Layout1:
    prefix: str
    messages: dict[str, str] = field(default_factory=dict)  # message key -> template id
    templates: dict[str, Template] = field(default_factory=dict)
    statuses: dict[str, dict[str, str]] = field(default_factory=dict)
    counters: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)  # (kind, hour)
    domains: dict[str, set[str]] = field(default_factory=dict)  # hour -> domains
    expiring: set[str] = field(default_factory=set)  # message keys with a TTL

    def shards_of(self, template_id: str) -> set[int]:
        return {keys.shard_of(k) for k, tid in self.messages.items() if tid == template_id}


def template(n: int) -> Template:
    return Template(links=(Link(f"https://shop.example/{n}/a", "cta"), Link(f"https://shop.example/{n}/b")),
                    campaign_id=f"camp{n}", sending_domain="shop.example")


def message_key(rng: random.Random) -> str:
    return "".join(rng.choice(B64) for _ in range(16))


def write_layout1(client: Any, prefix: str, messages: int = 60, templates: int = 3,
                  seed: int = 7) -> Layout1:
    rng = random.Random(seed)
    data = Layout1(prefix)
    pipe = client.pipeline(transaction=False)
    for n in range(templates):
        made = template(n)
        data.templates[made.template_id] = made
        pipe.set(keys.template(prefix, made.template_id, keys.LAYOUT1), made.to_json())
    ids = list(data.templates)
    for n in range(messages):
        key, tid = message_key(rng), ids[n % len(ids)]
        data.messages[key] = tid
        record = MessageRecord(rcpt_to=(f"r{n}@d{n % 4}.example",), mail_from="b@shop.example",
                               subject=f"Hi {n}", message_id=f"<{n}@shop>", queue_id=f"Q{n}",
                               injection_time=1796000000 + n, template_id=tid)
        ttl = TTL if n % 4 == 0 else None
        if ttl:
            data.expiring.add(key)
        pipe.set(keys.message(prefix, key, keys.LAYOUT1), record.to_text(), ex=ttl)
        if n % 3 == 0:
            status = {"opened_at": f"2026-12-0{1 + n % 5}T10:00:00.000Z", "open_count": str(1 + n % 3),
                      "hr": str(1796000000000000 + n)}
            if n % 2 == 0:
                status.update({"clicked_at": "2026-12-03T11:00:00.000Z", "click_count": "2",
                               "k" + aggregates.link_id("cta"): str(1796000000500000 + n)})
            data.statuses[key] = status
            pipe.hset(keys.status(prefix, key, keys.LAYOUT1), mapping=status)
    _aggregates(pipe, prefix, data, rng)
    stream = keys.events(prefix, keys.LAYOUT1)
    for n in range(5):
        pipe.xadd(stream, {"e": '{"type":"click","n":%d}' % n}, id=f"{1796000000000 + seed * 10 + n}-0")
        pipe.zadd(keys.event_index(prefix, keys.LAYOUT1, "click"), {f"{1796000000000 + n}-0": n})
    pipe.execute()
    return data


def _aggregates(pipe: Any, prefix: str, data: Layout1, rng: random.Random) -> None:
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for hour in HOURS:
        for campaign in ("camp0", "camp1"):
            dims = aggregates.dims(campaign, "shop.example")
            counts[("s", hour)]["s" + dims] = rng.randint(1, 500)
            for code in ("r", "c", "ur", "uc", "nc"):
                counts[("e", hour)][code + dims] = rng.randint(1, 90)
            counts[("l", hour)][f"c{dims}|cta"] = rng.randint(1, 40)
        data.domains[hour] = {f"d{n}.example" for n in range(rng.randint(1, 4))}
        expiry = aggregates.expires_at(hour, 400)
        pipe.sadd(keys.aggregate(prefix, keys.LAYOUT1, "d", hour), *data.domains[hour])
        pipe.expireat(keys.aggregate(prefix, keys.LAYOUT1, "d", hour), expiry)
    for (kind, hour), fields in counts.items():
        name = keys.aggregate(prefix, keys.LAYOUT1, kind, hour)
        pipe.hset(name, mapping=fields)
        pipe.expireat(name, aggregates.expires_at(hour, 400))
    data.counters = dict(counts)


def _value(client: Any, name: bytes, kind: str) -> Any:
    if kind == "string":
        return client.get(name)
    if kind == "hash":
        return client.hgetall(name)
    if kind == "set":
        return frozenset(client.smembers(name))
    if kind == "zset":
        return tuple(client.zrange(name, 0, -1, withscores=True))
    if kind == "stream":
        return tuple(client.xrange(name))
    raise AssertionError(f"{name!r}: a {kind}")


def snapshot(client: Any) -> dict[bytes, tuple[str, Any, bool]]:
    """key -> (type, value, has a TTL) for every key of the database (or cluster)."""
    found = {}
    nodes = ([client.get_redis_connection(n) for n in client.get_primaries()]
             if hasattr(client, "get_primaries") else [client])
    for node in nodes:
        for name in node.scan_iter(count=1000):
            kind = node.type(name).decode()
            found[name] = (kind, _value(node, name, kind), node.pttl(name) > 0)
    return found
