"""The link store: what a tracking token resolves to, shared by the milter and the redirector.

Layout (all keys under the configured prefix and the message's shard tag, engage.store.keys,
so that one click's keys are in one slot of a Redis Cluster; string values):
  ``{p}t:<template id>``  what every recipient of the same content shares: the list of
                          destination URLs with link names, campaign, tags, From, options.
                          The id is a hash of that content, so a campaign to a million
                          recipients stores its 150 links once per shard (24 times).
  ``{p}mb:<bucket>``      the records of up to 100 messages one milter registered in a
                          row (engage.store.tokens.Buckets), a hash small enough to stay
                          a listpack: each message's record (recipients, envelope sender,
                          subject, Message-ID, queue id, injection time, metadata,
                          template id: separated fields, ``MessageRecord.to_text``) under
                          its key's own part, stored against the bucket's first record
                          (under ""): what a mailing shares is kept once per bucket.
  ``{p}m:<message id>``   the record of a message whose key predates buckets (16
                          characters): one key each, read as long as their links live.
  ``{p}ms:<message id>``  the message's mutable status, a hash written by engage.store.events
                          with each event: opened_at, clicked_at (first, ISO 8601),
                          open_count, initial_open_count, click_count.
Tokens (engage.store.tokens): open ``<mid><tid>``, click ``<mid><tid><index base36>``;
a token whose template id differs from the record's is treated as unknown. The stored
forms of templates and records are engage.store.records'. Registering a message is one
round trip; resolving a token is one (two for a token of layout 1, read until
``engage migrate-layout`` marks it moved, engage.store.keys.layout).
No TTL unless ``link_retention_days`` is set. With ``record_retention_days`` shorter, the
record goes first and its links keep resolving from the template alone (``Resolved.record``
then names no recipient): every link keeps working for as long as the templates are kept.
Registering also counts the message sent
(one per set of links) in its injection hour's ``{p}agg:s:`` bucket and adds its
recipients' domains to that hour's ``{p}agg:d:`` set, in the same round trip, only when
its record was new (SET NX): redis-py's resend after a timeout counts nothing twice.
With ``durable``, the round trip ends with WAITAOF where Redis has it
(engage.store.durable): register returns only once the links are on disk.
"""
from __future__ import annotations

import time
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
from engage.store.tokens import bucket_base, is_bucketed, record_field
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
                 durable: bool = False, record_retention_days: int = 0) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = retention_days * 86400 or None
        records = record_retention_days * 86400
        # A record kept less long than its links: past it, the template answers alone.
        self.record_ttl = min(records, self.ttl or records) or self.ttl
        self.orphans = bool(records) and (self.ttl is None or records < self.ttl)
        self.layout1 = Layout1(client, prefix)
        self.metrics_days = metrics_retention_days  # 0: no sent counts
        self._register = client.register_script(REGISTER_LUA)
        self.aof = AofWait(client, durable)

    def template_key(self, template_id: str, shard: int) -> str:
        return keys.template(self.prefix, template_id, shard)

    def message_key(self, message_key: str, shard: int | None = None) -> str:
        return keys.message(self.prefix, message_key, shard)

    def record_at(self, message_key: str) -> tuple[str, str]:
        """(key, field) of the message's record: its bucket and field, or (its own key, "")
        for a key made before buckets."""
        if is_bucketed(message_key):
            return keys.message_bucket(self.prefix, message_key), record_field(message_key)
        return self.message_key(message_key), ""

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
        shard = keys.shard_of(message_key)
        template_key = self.template_key(record.template_id, shard)
        record_key, field = self.record_at(message_key)
        base = bucket_base(message_key, record) if field else None
        names = [template_key, record_key]
        args: list[Any] = [record.to_text(base), self.ttl or 0, self.record_ttl or 0, field,
                           base.to_text() if base is not None else ""]
        if self.metrics_days:
            hour = aggregates.hour_of(record.injection_time)
            names += [aggregates.bucket_key(self.prefix, shard, "s", hour),
                      aggregates.bucket_key(self.prefix, shard, "d", hour)]
            args += [aggregates.sent_field(template.campaign_id, template.sending_domain),
                     aggregates.expires_at(hour, self.metrics_days),
                     *sorted(aggregates.recipient_domains(record.rcpt_to))]
        try:
            try:
                known, *waited = self._first_trip(names, args, "EVALSHA")
            except redis.exceptions.NoScriptError:  # Redis restarted: the script is idempotent
                known, *waited = self._first_trip(names, args, "EVAL")
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
        record_key, field = self.record_at(message_key)
        pipe = self.client.pipeline(transaction=False)
        if field:
            pipe.hmget(record_key, field, "")
        else:
            pipe.get(record_key)
        pipe.get(self.template_key(template_id, keys.shard_of(message_key)))
        if also is not None:
            also(pipe, message_key, index)
        try:  # ``also``'s commands may write: one Redis refuses (full) leaves None
            stored, template_json, *replies = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            raise StoreError(str(exc)) from exc
        for reply in (stored, template_json):
            if isinstance(reply, Exception):
                raise StoreError(str(reply)) from reply
        record_json, base = stored if field else (stored, None)
        if record_json is None and not field:
            record_json, template_json = self.layout1.fill(message_key, template_id, template_json)
        extra = tuple(None if isinstance(reply, Exception) else reply for reply in replies)
        return resolved_from(message_key, template_id, index, record_json, template_json,
                             extra, self.orphans, base), extra


def resolved_from(message_key: str, template_id: str, index: Optional[int],
                  record_text: Optional[bytes], template_text: Optional[bytes],
                  extra: tuple[Any, ...] = (), orphans: bool = False,
                  base_text: Optional[bytes] = None) -> Optional[Resolved]:
    """A token's parts (``split_token``) and its stored values (record, template, and the
    base of the record's bucket if any) as a Resolved, or None when the record or the
    template is missing, the record names another template or the index is too high.
    With ``orphans`` (records kept less long than links), a missing record is one that
    expired: the template answers, with a record that names no recipient."""
    if template_text is None or (record_text is None and not orphans):
        return None
    record = (MessageRecord(template_id=template_id) if record_text is None
              else MessageRecord.from_text(record_text, parsed_base(base_text)))
    if record.template_id != template_id:
        return None
    template = parsed_template(template_text)
    if index is None:
        return Resolved(message_key, template, record, None, extra)
    if index >= len(template.links):
        return None
    return Resolved(message_key, template, record, template.links[index], extra)


class Layout1:
    """Tokens of layout 1 (one slot, no shard tags): read on a miss until ``engage
    migrate-layout`` sets the layout marker, checked once a minute."""

    RECHECK = 60.0

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._checked = (float("-inf"), True)  # (when, layout 1 may still hold links)

    def fill(self, message_key: str, template_id: str, template: Optional[bytes]
             ) -> tuple[Optional[bytes], Optional[bytes]]:
        """(record, template) for a token whose record layout 2 lacks: layout 1's record
        with its template, else no record and whichever template there is."""
        if not self._maybe():
            return None, template
        record, old_template = self.get(message_key, template_id)
        if record is not None:
            return record, old_template or template
        return None, template or old_template

    def get(self, message_key: str, template_id: str
            ) -> tuple[Optional[bytes], Optional[bytes]]:
        """(record, template) under layout 1's names."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(keys.message(self.prefix, message_key, keys.LAYOUT1))
        pipe.get(keys.template(self.prefix, template_id, keys.LAYOUT1))
        try:
            record, template = pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(str(exc)) from exc
        return record, template

    def _maybe(self) -> bool:
        checked, maybe = self._checked
        now = time.monotonic()
        if now - checked >= self.RECHECK:
            try:
                marker = self.client.get(keys.layout(self.prefix))
            except redis.RedisError as exc:
                raise StoreError(str(exc)) from exc
            maybe = marker != str(keys.LAYOUT).encode()
            self._checked = (now, maybe)
        return maybe


# Templates parsed per worker, keyed by their stored text, not their id: ``engage forget``
# rewrites a template in place, so text that changed is parsed anew, never served stale.
# Every recipient of a mailing clicks through the same few templates.
parsed_template = lru_cache(maxsize=256)(Template.from_json)


@lru_cache(maxsize=1024)
def _parsed_base(text: bytes) -> MessageRecord:
    return MessageRecord.from_text(text)


def parsed_base(text: Optional[bytes]) -> Optional[MessageRecord]:
    """A bucket's base record (None when there is none), parsed once per worker: the
    clicks of one bucket's messages share it. Frozen, so sharing is safe."""
    return None if text is None else _parsed_base(text)
