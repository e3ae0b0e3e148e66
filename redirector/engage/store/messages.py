"""Many messages' records and templates of one shard in one round trip: what the events
read back in a page or a webhook batch refer to (engage.store.eventforms)."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Optional

from engage.store import keys
from engage.store.links import parsed_base, parsed_template
from engage.store.records import MessageRecord, Template
from engage.store.tokens import is_bucketed, record_field


def read(client: Any, prefix: str, shard: int, refs: Iterable[tuple[str, str]]
         ) -> tuple[dict[str, Optional[MessageRecord]], dict[str, Optional[Template]]]:
    """(record by message key, template by id) for (message key, template id) pairs of
    ``shard``; None for what is gone. A record of a key made before buckets is looked for
    under its layout-2 name, then layout 1's (read until migrated), as a click does."""
    wanted = set(refs)
    messages = sorted({message_key for message_key, _ in wanted})
    templates = sorted({template_id for _, template_id in wanted})
    pipe = client.pipeline(transaction=False)
    for message_key in messages:
        if is_bucketed(message_key):
            pipe.hmget(keys.message_bucket(prefix, message_key), record_field(message_key), "")
        else:
            pipe.get(keys.message(prefix, message_key, shard))
            pipe.get(keys.message(prefix, message_key, keys.LAYOUT1))
    for template_id in templates:
        pipe.get(keys.template(prefix, template_id, shard))
        pipe.get(keys.template(prefix, template_id, keys.LAYOUT1))
    replies = iter(pipe.execute())
    records: dict[str, Optional[MessageRecord]] = {}
    for message_key in messages:
        if is_bucketed(message_key):
            text, base = next(replies)
        else:
            text, old, base = next(replies), next(replies), None
            text = text if text is not None else old
        records[message_key] = (None if text is None
                                else MessageRecord.from_text(text, parsed_base(base)))
    found: dict[str, Optional[Template]] = {}
    for template_id in templates:
        text, old = next(replies), next(replies)
        text = text if text is not None else old
        found[template_id] = None if text is None else parsed_template(text)
    return records, found
