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
Tokens: open ``<mid><tid>``, click ``<mid><tid><link index base36>``. The message id is
96 random bits (unguessable); a token whose template id differs from the record's is
treated as unknown. Registering a message is one round trip; resolving a token is one.
No TTL unless ``link_retention_days`` is set. Registering also counts the message sent
(one per set of links) in its injection hour's ``{p}agg:s:`` bucket and adds its
recipients' domains to that hour's ``{p}agg:d:`` set, in the same round trip, only when
its record was new (SET NX): redis-py's resend after a timeout counts nothing twice.
With ``durable``, the round trip ends with WAITAOF where Redis has it
(engage.store.durable): register returns only once the links are on disk.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any, Callable, NamedTuple, Optional

import redis

from engage.store import aggregates, keys
from engage.store.durable import AofWait
from engage.store.redisconn import is_cluster, reply_text
from engage.store.scripts.links import REGISTER_LUA

TRAP_LINK_NAME = "engage-trap"  # target_link_name of the hidden link the milter adds
MID_LEN = 16  # 12 random bytes, base64url
TID_LEN = 12  # 9 bytes of SHA-256, base64url
MAX_INDEX_DIGITS = 4
US, RS = "\x1f", "\x1e"  # the record's field and recipient separators
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{%d}[0-9a-z]{0,%d}" % (MID_LEN + TID_LEN, MAX_INDEX_DIGITS))


class StoreError(Exception):
    """The link store cannot be reached or answered wrongly."""


class Link(NamedTuple):  # a tuple: a 150-link template makes 150 of them per load
    url: str
    name: str = ""


@dataclass(frozen=True)
class Template:
    """Everything about a message that is the same for each recipient of one mailing."""

    links: tuple[Link, ...] = ()
    campaign_id: str = ""
    tags: tuple[str, ...] = ()
    friendly_from: str = ""
    sending_domain: str = ""
    open_tracking: bool = True
    click_tracking: bool = True

    def to_json(self) -> str:
        return self._json

    @cached_property
    def _json(self) -> str:
        rest = _dumps({
            "l": [], "c": self.campaign_id, "g": list(self.tags), "f": self.friendly_from,
            "d": self.sending_domain, "o": int(self.open_tracking), "k": int(self.click_tracking),
        })
        return '{"l":[' + _links_json(self.links) + rest[len('{"l":['):]

    @classmethod
    def from_json(cls, text: str | bytes) -> "Template":
        data = json.loads(text)
        return cls(
            links=tuple(Link(*item) for item in data["l"]), campaign_id=data["c"],
            tags=tuple(data["g"]), friendly_from=data["f"], sending_domain=data["d"],
            open_tracking=bool(data["o"]), click_tracking=bool(data["k"]),
        )

    @cached_property
    def template_id(self) -> str:
        return _b64(hashlib.sha256(self.to_json().encode()).digest()[:9])

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled for every message the milter's rewrite workers send back: as flat
        # tuples (and the JSON already computed) it costs a fifth of the default.
        links = tuple((link.url, link.name) for link in self.links)
        return _unpickle_template, (links, self.campaign_id, self.tags, self.friendly_from,
                                    self.sending_domain, self.open_tracking, self.click_tracking,
                                    self.__dict__.get("_json"))


def _unpickle_template(links: tuple[tuple[str, str], ...], campaign_id: str, tags: tuple[str, ...],
                       friendly_from: str, sending_domain: str, open_tracking: bool,
                       click_tracking: bool, json_text: Optional[str]) -> Template:
    template = Template(tuple(Link(url, name) for url, name in links), campaign_id, tags,
                        friendly_from, sending_domain, open_tracking, click_tracking)
    if json_text is not None:
        template.__dict__["_json"] = json_text  # where cached_property keeps it
    return template


@dataclass(frozen=True)
class MessageRecord:
    """What differs per message: the envelope, headers that are often personalised, metadata."""

    rcpt_to: tuple[str, ...] = ()
    mail_from: str = ""
    subject: str = ""
    message_id: str = ""
    queue_id: str = ""
    injection_time: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    template_id: str = ""

    def to_text(self) -> str:
        """The stored value: fields joined by US (0x1f), recipients by RS (0x1e), injection
        time in base 36, metadata as JSON (empty when none). Each record is one Redis key,
        so every byte counts a million times; the text is short enough that a typical
        record fits jemalloc's 192-byte class. A field holding a separator (a control
        character in a subject, say), an empty recipient or a time before 1970 makes the
        whole record JSON, as records were first written; both forms are read."""
        texts = (self.template_id, *self.rcpt_to, self.mail_from, self.subject,
                 self.message_id, self.queue_id)
        if (any(US in text or RS in text for text in texts) or "" in self.rcpt_to
                or self.injection_time < 0):
            return self._json_form()
        metadata = _dumps(self.metadata) if self.metadata else ""
        return US.join((self.template_id, RS.join(self.rcpt_to), self.mail_from, self.subject,
                        self.message_id, self.queue_id, _base36(self.injection_time), metadata))

    def _json_form(self) -> str:
        return _dumps({
            "t": self.template_id, "r": list(self.rcpt_to), "f": self.mail_from,
            "s": self.subject, "m": self.message_id, "q": self.queue_id,
            "i": self.injection_time, "md": self.metadata,
        })

    @classmethod
    def from_text(cls, text: str | bytes) -> "MessageRecord":
        if isinstance(text, bytes):
            text = text.decode("utf-8", "surrogatepass")
        if text.startswith("{"):
            data = json.loads(text)
            return cls(
                rcpt_to=tuple(data["r"]), mail_from=data["f"], subject=data["s"],
                message_id=data["m"], queue_id=data["q"], injection_time=data["i"],
                metadata=data["md"], template_id=data["t"],
            )
        template_id, rcpts, mail_from, subject, message_id, queue_id, injected, metadata = (
            text.split(US))
        return cls(
            rcpt_to=tuple(rcpts.split(RS)) if rcpts else (), mail_from=mail_from,
            subject=subject, message_id=message_id, queue_id=queue_id,
            injection_time=int(injected, 36), metadata=json.loads(metadata) if metadata else {},
            template_id=template_id,
        )


@dataclass(frozen=True)
class Resolved:
    """A token looked up: the link (None for open tokens) and the records it belongs to."""

    message_key: str
    template: Template
    record: MessageRecord
    link: Optional[Link]
    extra: tuple[Any, ...] = ()  # replies to the commands ``resolve(also=...)`` added


JSON_AS_IS = bytes(set(range(0x20, 0x80)) - set(b'"\\'))  # ASCII that JSON does not escape


def _links_json(links: tuple[Link, ...]) -> str:
    """``_dumps`` of [[url, name] or [url], ...] without the outer brackets, written
    directly when no text needs a JSON escape (the usual case: URLs are plain ASCII):
    escaping 150 URLs took json.dumps a twentieth of a rewrite."""
    texts = "".join([link.url + link.name for link in links])
    if not texts.isascii() or texts.encode().translate(None, JSON_AS_IS):
        return _dumps([[link.url, link.name] if link.name else [link.url] for link in links])[1:-1]
    return ",".join([f'["{link.url}","{link.name}"]' if link.name else f'["{link.url}"]'
                     for link in links])


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def status_key(prefix: str, message_key: str) -> str:
    return keys.status(prefix, message_key)


def new_message_key() -> str:
    """96 random bits: the unguessable part of every token of one message."""
    return _b64(secrets.token_bytes(12))


def open_token(message_key: str, template_id: str) -> str:
    return message_key + template_id


def click_token(message_key: str, template_id: str, index: int) -> str:
    return message_key + template_id + _base36(index)


B36_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
# Link indexes below 1296 as text, made once: a 150-link message needs 150 per message.
_B36_SMALL = list(B36_DIGITS) + [a + b for a in B36_DIGITS[1:] for b in B36_DIGITS]


def _base36(number: int) -> str:
    if number < len(_B36_SMALL):
        return _B36_SMALL[number]
    digits = B36_DIGITS
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if not number:
            return text


def split_token(token: str) -> Optional[tuple[str, str, Optional[int]]]:
    """(message key, template id, link index or None) or None for a malformed token."""
    if not TOKEN_RE.fullmatch(token):
        return None
    index_text = token[MID_LEN + TID_LEN:]
    index = int(index_text, 36) if index_text else None
    return token[:MID_LEN], token[MID_LEN:MID_LEN + TID_LEN], index




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
