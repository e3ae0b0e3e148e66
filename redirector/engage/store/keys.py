"""The one Redis schema: every key family engage writes, and the only place a key name is built.

Each ``Family`` says what it holds (type), who writes it (owner), how long it lives, whether
it can hold a recipient's address and so how ``engage forget`` erases it, and what a
layout change would migrate. ``family_of`` names the family of any key under the prefix;
a key no family claims is a bug (tests walk a populated Redis for that) and makes
``engage forget`` fail rather than silently keep what it does not know.
The builders below are the only code that spells a key: modules call them, never f-strings.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Erasure(Enum):
    """What ``engage forget`` does to a family (engage.erasure.forget implements each)."""

    NO_ADDRESS = "holds no address by construction (ids, counters, digests, IPs)"
    REWRITE_VALUE = "the value is rewritten without the address (same key, same TTL)"
    DELETE_ENTRIES = "entries that mention the address are deleted, the stream compacted"
    FOLLOW_EVENTS = "entries of erased events are removed; keys named after the address deleted"
    REWRITE_FIELDS = "hash fields whose name holds the address are renamed without it"
    REWRITE_MEMBERS = "batch records lose the address's events (a batch left empty goes)"


@dataclass(frozen=True)
class Family:
    name: str
    pattern: str  # after the prefix; <...> is one variable part
    type: str
    owner: str
    expiry: str
    erasure: Erasure
    migration: str = "none: layout 1 is the only layout"

    @property
    def regex(self) -> re.Pattern[str]:
        parts = re.split(r"(<[^>]+>)", self.pattern)
        body = "".join("(.+)" if p.startswith("<") else re.escape(p) for p in parts)
        return re.compile(body + r"\Z", re.S)


FAMILIES = (
    Family("template", "t:<template id>", "string", "engage.store.links (milter)",
           "[redis] link_retention_days (default: never)", Erasure.REWRITE_VALUE),
    Family("message", "m:<message key>", "string", "engage.store.links (milter)",
           "[redis] link_retention_days (default: never)", Erasure.REWRITE_VALUE),
    Family("status", "ms:<message key>", "hash", "engage.store.events (redirector)",
           "as long as the message's links", Erasure.NO_ADDRESS),
    Family("events", "events", "stream", "engage.store.events (redirector)",
           "entries trimmed after [events] retention_days", Erasure.DELETE_ENTRIES),
    Family("event index", "ei:<type>", "zset", "engage.store.events",
           "entries trimmed with the stream", Erasure.FOLLOW_EVENTS),
    Family("event subset index", "ei:<type>:<dimension>:<value>", "zset",
           "engage.store.events", "entries trimmed with the stream", Erasure.FOLLOW_EVENTS),
    Family("verdict overrides", "verdicts", "hash", "engage.store.overrides (recompute)",
           "fields trimmed with the stream", Erasure.FOLLOW_EVENTS),
    Family("aggregates", "agg:<kind>:<hour>", "hash", "engage.store.aggregates",
           "[metrics] retention_days after the hour", Erasure.REWRITE_FIELDS),
    Family("recipient domains", "agg:d:<hour>", "set", "engage.store.links (milter)",
           "[metrics] retention_days after the hour", Erasure.NO_ADDRESS),
    Family("burst", "vb:<message key>:<second>", "set", "engage.verdicts.judge",
           "5 seconds", Erasure.NO_ADDRESS),
    Family("trap clients", "vt:<message key>", "set", "engage.verdicts.judge",
           "[verdicts] trap_window", Erasure.NO_ADDRESS),
    Family("click rate limit", "rl:<client>:<window>", "string", "engage.web.ratelimit",
           "one window", Erasure.NO_ADDRESS),
    Family("login rate limit", "dashboard:rl:<client>:<window>", "string",
           "engage.web (dashboard login)", "one window", Erasure.NO_ADDRESS),
    Family("webhook ids", "wh:ids", "set", "engage.webhooks.store", "never",
           Erasure.NO_ADDRESS),
    Family("webhook dead letters", "wh:dead", "stream", "engage.webhooks.queue",
           "until replayed or dropped", Erasure.DELETE_ENTRIES),
    Family("webhook batches", "wh:<webhook id>:batches", "hash", "engage.webhooks.queue",
           "until delivered or parked", Erasure.REWRITE_MEMBERS),
    Family("webhook due", "wh:<webhook id>:due", "zset", "engage.webhooks.queue",
           "with its batch", Erasure.NO_ADDRESS),
    Family("webhook attempts", "wh:<webhook id>:log", "stream", "engage.webhooks.store",
           "[webhooks] status retention", Erasure.NO_ADDRESS),
    Family("webhook", "wh:<webhook id>", "string", "engage.webhooks.store",
           "until deleted", Erasure.NO_ADDRESS),
    Family("append ids", "eid:<decisecond>", "set", "engage.store.events",
           "30 seconds", Erasure.NO_ADDRESS),
    Family("repeat open", "or:<message key>:<pixel>:<client digest>", "string",
           "engage.store.events", "[web] open_repeat_window", Erasure.NO_ADDRESS),
    Family("open limit", "ol:<network>:<minute>", "string", "engage.web.opengate",
           "61 seconds", Erasure.NO_ADDRESS),
    Family("dropped events", "dropped", "hash", "engage.web.health", "never (a few fields)",
           Erasure.NO_ADDRESS),
    Family("stream compaction", "compacting:<stream>", "stream", "engage.erasure.forget",
           "seconds: renamed over the stream it copies", Erasure.DELETE_ENTRIES),
)
BY_NAME = {family.name: family for family in FAMILIES}


def family_of(prefix: str, key: str) -> Family | None:
    """The family a key belongs to; None for a key outside the prefix or unknown.
    Fixed names first, then the most specific pattern (most literal characters)."""
    if not key.startswith(prefix):
        return None
    rest = key[len(prefix):]
    for regex, family in _MATCH_ORDER:
        if regex.match(rest):
            return family
    return None


def _specificity(family: Family) -> tuple[bool, int]:
    literal = re.sub(r"<[^>]+>", "", family.pattern)
    return "<" not in family.pattern, len(literal)


# Built once: forget classifies every key of the keyspace with it.
_MATCH_ORDER = tuple((family.regex, family)
                     for family in sorted(FAMILIES, key=_specificity, reverse=True))


# ------------------------------------------------------------------ builders
def template(prefix: str, template_id: str) -> str:
    return f"{prefix}t:{template_id}"


def message(prefix: str, message_key: str) -> str:
    return f"{prefix}m:{message_key}"


def status(prefix: str, message_key: str) -> str:
    return f"{prefix}ms:{message_key}"


def events(prefix: str) -> str:
    return f"{prefix}events"


def event_index(prefix: str, kind: str, dimension: str = "", value: str = "") -> str:
    base = f"{prefix}ei:{kind}"
    return f"{base}:{dimension}:{value}" if dimension else base


def verdicts(prefix: str) -> str:
    return f"{prefix}verdicts"


def aggregate(prefix: str, kind: str, hour: str) -> str:
    return f"{prefix}agg:{kind}:{hour}"


def burst(prefix: str, message_key: str, second: int) -> str:
    return f"{prefix}vb:{message_key}:{second}"


def trap_clients(prefix: str, message_key: str) -> str:
    return f"{prefix}vt:{message_key}"


def rate_limit(prefix: str, client: str, window: int) -> str:
    """``client`` is what [privacy] ip_addresses leaves of the address (or a digest)."""
    return f"{prefix}rl:{client}:{window}"


def login_limit_prefix(prefix: str) -> str:
    """The dashboard login limiter is a second RateLimiter under this prefix."""
    return f"{prefix}dashboard:"


def webhook_ids(prefix: str) -> str:
    return f"{prefix}wh:ids"


def webhook_dead(prefix: str) -> str:
    return f"{prefix}wh:dead"


def webhook(prefix: str, hook_id: str) -> str:
    return f"{prefix}wh:{hook_id}"


def webhook_batches(prefix: str, hook_id: str) -> str:
    return f"{prefix}wh:{hook_id}:batches"


def webhook_due(prefix: str, hook_id: str) -> str:
    return f"{prefix}wh:{hook_id}:due"


def webhook_log(prefix: str, hook_id: str) -> str:
    return f"{prefix}wh:{hook_id}:log"


def append_ids(prefix: str, decisecond: int) -> str:
    return f"{prefix}eid:{decisecond}"


def repeat_open(prefix: str, message_key: str, kind: str, client: str) -> str:
    return f"{prefix}or:{message_key}:{kind}:{client}"


def open_limit(prefix: str, network: str, window: int) -> str:
    """``network`` is what [privacy] ip_addresses leaves of it (a digest in none mode)."""
    return f"{prefix}ol:{network}:{window}"


def dropped(prefix: str) -> str:
    return f"{prefix}dropped"


def compacting(prefix: str, stream: str) -> str:
    """The copy a compaction builds of ``stream`` (a full key name under the prefix); in
    the stream's hash slot, since the prefix carries the tag on a cluster."""
    return f"{prefix}compacting:{stream[len(prefix):]}"


def compaction_replaced(prefix: str, stream: str) -> str:
    """The name the compacted stream's old self has for an instant, before UNLINK."""
    return compacting(prefix, stream) + ":replaced"


def scan_pattern(prefix: str) -> str:
    """Every key engage owns (settings allow no glob characters in the prefix)."""
    return f"{prefix}*"
