"""The link store: what a tracking token resolves to, shared by the milter and the redirector.

Layout (all keys under the configured prefix, string values):
  ``{p}t:<template id>``  what every recipient of the same content shares: the list of
                          destination URLs with link names, campaign, tags, From, options.
                          The id is a hash of that content, so a campaign to a million
                          recipients stores its 150 links once.
  ``{p}m:<message id>``   one per message: recipients, envelope sender, subject,
                          Message-ID, queue id, injection time, metadata, template id
                          (separated fields, see ``MessageRecord.to_text``).
  ``{p}ms:<message id>``  the message's mutable status, a hash written by engage.store.events
                          with each event: opened_at, clicked_at (first, ISO 8601),
                          open_count, initial_open_count, click_count.
Tokens (engage.store.tokens): open ``<mid><tid>``, click ``<mid><tid><index base36>``;
a token whose template id differs from the record's is treated as unknown. The stored
forms of templates and records are engage.store.records'. Registering a message is one
round trip; resolving a token is one.
No TTL unless ``link_retention_days`` is set. Registering also counts the message sent
(one per set of links) in its injection hour's ``{p}agg:s:`` bucket and adds its
recipients' domains to that hour's ``{p}agg:d:`` set, in the same round trip, only when
its record was new (SET NX): redis-py's resend after a timeout counts nothing twice.
With ``durable``, the round trip ends with WAITAOF where Redis has it
(engage.store.durable): register returns only once the links are on disk.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Optional

import redis

# Link, MessageRecord, Template and the token functions were defined here before
# engage.store.records and engage.store.tokens: tests and tools import them from here.
from engage.store import aggregates, keys
from engage.store.durable import AofWait
from engage.store.records import Link as Link
from engage.store.records import MessageRecord as MessageRecord
from engage.store.records import Template as Template
from engage.store.redisconn import is_cluster, reply_text
from engage.store.scripts.links import REGISTER_LUA
from engage.store.tokens import click_token as click_token
from engage.store.tokens import new_message_key as new_message_key
from engage.store.tokens import open_token as open_token
from engage.store.tokens import split_token as split_token

TRAP_LINK_NAME = "engage-trap"  # target_link_name of the hidden link the milter adds


class StoreError(Exception):
    """The link store cannot be reached or answered wrongly."""


@dataclass(frozen=True)
class Resolved:
    """A token looked up: the link (None for open tokens) and the records it belongs to."""

    message_key: str
    template: Template
    record: MessageRecord
    link: Optional[Link]
    extra: tuple[Any, ...] = ()  # replies to the commands ``resolve(also=...)`` added


def status_key(prefix: str, message_key: str) -> str:
    return keys.status(prefix, message_key)


class LinkStore:
    """Registers and resolves tracked messages in Redis; the connection is passed in."""

    def __init__(self, client: "redis.Redis", prefix: str = "engage:",
                 retention_days: int = 0,
                 metrics_retention_days: int = aggregates.DEFAULT_RETENTION_DAYS,
                 durable: bool = False) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = retention_days * 86400 or None
        self.metrics_days = metrics_retention_days  # 0: no sent counts
        self._register = client.register_script(REGISTER_LUA)
        self.aof = AofWait(client, durable)

    def template_key(self, template_id: str) -> str:
        return keys.template(self.prefix, template_id)

    def message_key(self, message_key: str) -> str:
        return keys.message(self.prefix, message_key)

    def status(self, message_key: str) -> dict[str, str]:
        """The message's status hash (empty before the first open or click)."""
        try:
            raw = self.client.hgetall(status_key(self.prefix, message_key))
        except redis.RedisError as exc:
            raise StoreError(str(exc)) from exc
        return {reply_text(name): reply_text(value) for name, value in raw.items()}

    def register(self, message_key: str, template: Template, record: MessageRecord) -> None:
        """Store the message record, and its template unless Redis has it already: one
        round trip when the template is known (every message of a mailing but the first),
        two when it is new, so a 150-link list is sent once rather than per recipient.
        The first round trip also counts the message sent. Raises StoreError when Redis
        fails or does not confirm the AOF fsync (``durable``)."""
        template_key = self.template_key(record.template_id)
        keys = [template_key, self.message_key(message_key)]
        args: list[Any] = [record.to_text(), self.ttl or 0]
        if self.metrics_days:
            hour = aggregates.hour_of(record.injection_time)
            keys += [aggregates.bucket_key(self.prefix, "s", hour),
                     aggregates.bucket_key(self.prefix, "d", hour)]
            args += [aggregates.sent_field(template.campaign_id, template.sending_domain),
                     aggregates.expires_at(hour, self.metrics_days),
                     *sorted(aggregates.recipient_domains(record.rcpt_to))]
        try:
            try:
                known, *waited = self._first_trip(keys, args, "EVALSHA")
            except redis.exceptions.NoScriptError:  # Redis restarted: the script is idempotent
                known, *waited = self._first_trip(keys, args, "EVAL")
            if not known:
                pipe = self.client.pipeline(transaction=False)
                pipe.set(template_key, template.to_json(), ex=self.ttl)
                _, *waited = self._execute(pipe)
        except redis.RedisError as exc:
            raise StoreError(str(exc)) from exc
        if waited and not self.aof.confirmed(waited[0]):
            raise StoreError(f"Redis did not confirm the AOF fsync: WAITAOF answered {waited[0]}")

    def _first_trip(self, keys: list[str], args: list[Any], command: str) -> list[Any]:
        """REGISTER_LUA (by its SHA unless ``command`` is EVAL or on a cluster, whose
        pipelines take no EVALSHA), not through redis-py's Script: in a pipeline that asks
        SCRIPT EXISTS first, a round trip per message."""
        pipe = self.client.pipeline(transaction=False)
        if command == "EVAL" or is_cluster(self.client):
            pipe.execute_command("EVAL", REGISTER_LUA, len(keys), *keys, *args)  # type: ignore[no-untyped-call]  # unannotated in redis-py
        else:
            pipe.execute_command("EVALSHA", self._register.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]  # unannotated in redis-py
        return self._execute(pipe)

    def _execute(self, pipe: Any) -> list[Any]:
        """The pipeline with WAITAOF last when it applies."""
        self.aof.queue(pipe)
        return list(pipe.execute())

    def resolve(self, token: str, also: Optional[Callable[[Any, str, Optional[int]], None]] = None
                ) -> Optional[Resolved]:
        """What a token points at, or None when it is malformed, unknown or forged.
        ``also(pipeline, message key, link index)`` may add commands to the same round
        trip; their replies come back in ``Resolved.extra``."""
        return self.lookup(token, also)[0]

    def lookup(self, token: str, also: Optional[Callable[[Any, str, Optional[int]], None]] = None
               ) -> tuple[Optional[Resolved], tuple[Any, ...]]:
        """``resolve``, with the replies to ``also``'s commands even when the token is
        unknown or forged; () when it is malformed (then nothing is sent to Redis)."""
        parts = split_token(token)
        if parts is None:
            return None, ()
        message_key, template_id, index = parts
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.message_key(message_key))
        pipe.get(self.template_key(template_id))
        if also is not None:
            also(pipe, message_key, index)
        try:  # ``also``'s commands may write: one Redis refuses (full) leaves None
            record_json, template_json, *replies = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            raise StoreError(str(exc)) from exc
        for reply in (record_json, template_json):
            if isinstance(reply, Exception):
                raise StoreError(str(reply)) from reply
        extra = tuple(None if isinstance(reply, Exception) else reply for reply in replies)
        return resolved_from(message_key, template_id, index, record_json, template_json,
                             extra), extra


def resolved_from(message_key: str, template_id: str, index: Optional[int],
                  record_text: Optional[bytes], template_text: Optional[bytes],
                  extra: tuple[Any, ...] = ()) -> Optional[Resolved]:
    """A token's parts (``split_token``) and its two stored values as a Resolved, or None
    when either is missing, the record names another template or the index is too high."""
    if record_text is None or template_text is None:
        return None
    record = MessageRecord.from_text(record_text)
    if record.template_id != template_id:
        return None
    template = parsed_template(template_text)
    if index is None:
        return Resolved(message_key, template, record, None, extra)
    if index >= len(template.links):
        return None
    return Resolved(message_key, template, record, template.links[index], extra)


# Templates parsed per worker, keyed by their stored text, not their id: ``engage forget``
# rewrites a template in place, so text that changed is parsed anew, never served stale.
# Every recipient of a mailing clicks through the same few templates.
parsed_template = lru_cache(maxsize=256)(Template.from_json)
