"""Many messages' records and templates of one shard, queued on a pipeline that may carry
other shards' reads too: what the events read back in a page or a webhook batch refer to
(engage.store.eventforms)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Optional

from engage.store import keys
from engage.store.links import parsed_base, parsed_template
from engage.store.records import MessageRecord, Template
from engage.store.tokens import is_bucketed, record_field

Found = tuple[dict[str, Optional[MessageRecord]], dict[str, Optional[Template]]]


class Reads:
    """The records and templates (message key, template id) pairs of ``shard`` refer to:
    ``queue`` on a pipeline, ``parse`` its replies in order. A record of a key made before
    buckets is looked for under its layout-2 name, then layout 1's (read until migrated),
    as a click does; so is a template."""

    def __init__(self, prefix: str, shard: int, refs: Iterable[tuple[str, str]]) -> None:
        wanted = set(refs)
        self.prefix, self.shard = prefix, shard
        self.messages = sorted({message_key for message_key, _ in wanted})
        self.templates = sorted({template_id for _, template_id in wanted})

    def queue(self, pipe: Any) -> None:
        for message_key in self.messages:
            if is_bucketed(message_key):
                pipe.hmget(keys.message_bucket(self.prefix, message_key),
                           record_field(message_key), "")
            else:
                pipe.get(keys.message(self.prefix, message_key, self.shard))
                pipe.get(keys.message(self.prefix, message_key, keys.LAYOUT1))
        for template_id in self.templates:
            pipe.get(keys.template(self.prefix, template_id, self.shard))
            pipe.get(keys.template(self.prefix, template_id, keys.LAYOUT1))

    def parse(self, replies: Iterator[Any]) -> Found:
        """(record by message key, template by id; None for what is gone)."""
        records: dict[str, Optional[MessageRecord]] = {}
        for message_key in self.messages:
            if is_bucketed(message_key):
                text, base = next(replies)
            else:
                text, old, base = next(replies), next(replies), None
                text = text if text is not None else old
            records[message_key] = (None if text is None
                                    else MessageRecord.from_text(text, parsed_base(base)))
        templates: dict[str, Optional[Template]] = {}
        for template_id in self.templates:
            text, old = next(replies), next(replies)
            text = text if text is not None else old
            templates[template_id] = None if text is None else parsed_template(text)
        return records, templates
