"""Events read back whole: stored forms expanded from what they refer to (engage.store.
eventforms), recomputed verdicts (engage.store.overrides) in place of the stored ones.
Every shard of a page or batch in one round trip: the records and templates the events
refer to and the shards' overrides, all on one pipeline."""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from engage.store import eventforms, overrides
from engage.store.eventids import score_in
from engage.store.messages import Reads


def whole(client: Any, prefix: str, groups: Mapping[int, Sequence[bytes]],
          recomputed: bool = True) -> dict[int, list[bytes]]:
    """Each shard's events, as read back (``{"event_id":"N",...}``), whole and, with
    ``recomputed``, with their overrides. Raises redis.RedisError."""
    forms = {shard: {n: eventforms.with_time(json.loads(b"{" + item[item.index(b",") + 1:]),
                                             score_in(item))
                     for n, item in enumerate(items) if eventforms.is_stored_form(item)}
             for shard, items in groups.items() if items}
    reads = {shard: Reads(prefix, shard, map(eventforms.reference, found.values()))
             for shard, found in forms.items() if found}
    pipe = client.pipeline(transaction=False)
    for read in reads.values():
        read.queue(pipe)
    for shard in forms if recomputed else ():
        pipe.hmget(overrides.key(prefix, shard),
                   [overrides.event_id_of(item) for item in groups[shard]])
    replies = iter(pipe.execute() if forms else ())
    found = {shard: read.parse(replies) for shard, read in reads.items()}
    out: dict[int, list[bytes]] = {shard: [] for shard in groups}
    built: dict[tuple[Any, ...], dict[str, Any]] = {}  # shared by a message's events
    for shard in forms:
        items = list(groups[shard])
        records, templates = found.get(shard, ({}, {}))
        for n, form in forms[shard].items():
            message_key, template_id = eventforms.reference(form)
            event = eventforms.expand(form, records[message_key], templates[template_id], built)
            items[n] = items[n][:items[n].index(b",") + 1] + _dumps(event)[1:]
        found_overrides = next(replies) if recomputed else [None] * len(items)
        out[shard] = [item if override is None else overrides.spliced(item, override)
                      for item, override in zip(items, found_overrides)]
    return out


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()
