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

# What a family record says, re-exported: tests and engage forget import them from here.
from engage.store.families import SHARDED as SHARDED
from engage.store.families import Erasure as Erasure
from engage.store.families import Family as Family

# The virtual shards, re-exported: modules use keys.shard_of, keys.tag ...
from engage.store.shards import LAYOUT1 as LAYOUT1
from engage.store.shards import SHARD_RE as SHARD_RE
from engage.store.shards import SHARD_TAGS as SHARD_TAGS
from engage.store.shards import SHARDS as SHARDS
from engage.store.shards import shard_ids as shard_ids
from engage.store.shards import shard_of as shard_of
from engage.store.shards import shard_of_key as shard_of_key
from engage.store.shards import tag as tag

BUCKET_LEN = 8  # a message key's first characters, naming its record's bucket (tokens)
LAYOUT = 2
MOVED = "layout 1 (no tag) is read until `engage migrate-layout` moves it to its shard"
PER_SHARD = "layout 1 (no tag) is read as one more shard until it expires or is migrated"
FAMILIES = (
    Family("template", "<shard>t:<template id>", "string", "engage.store.links (milter)",
           "[redis] link_retention_days (default: never)", Erasure.REWRITE_VALUE, MOVED),
    Family("message", "<shard>m:<message key>", "string", "engage.store.links (milter, "
           "before buckets)", "[redis] link_retention_days (default: never)",
           Erasure.REWRITE_VALUE, MOVED),
    Family("message bucket", "<shard>mb:<bucket>", "hash", "engage.store.links (milter)",
           "[redis] record_retention_days (else link_retention_days; default: never) after "
           "its last record", Erasure.REWRITE_RECORDS),
    Family("status", "<shard>ms:<message key>", "hash", "engage.store.events (redirector)",
           "as long as the message's links", Erasure.NO_ADDRESS, MOVED),
    Family("events", "<shard>events", "stream", "engage.store.events (redirector)",
           "entries trimmed after [events] retention_days", Erasure.DELETE_ENTRIES, PER_SHARD),
    Family("event index", "<shard>el:<type>", "zset, then stream", "engage.store.eventindex",
           "entries trimmed with the stream", Erasure.FOLLOW_EVENTS, PER_SHARD),
    Family("event subset index", "<shard>el:<type>:<dimension>:<value>", "zset, then stream",
           "engage.store.eventindex", "entries trimmed with the stream",
           Erasure.FOLLOW_EVENTS, PER_SHARD),
    Family("event index before 2026-12", "<shard>ei:<type[:dimension:value]>", "zset",
           "read only", "[events] retention_days + 1 after its last event",
           Erasure.FOLLOW_EVENTS, PER_SHARD),
    Family("verdict overrides", "<shard>verdicts", "hash", "engage.store.overrides (recompute)",
           "fields trimmed with the stream", Erasure.FOLLOW_EVENTS, PER_SHARD),
    Family("aggregates", "<shard>agg:<kind>:<hour>", "hash", "engage.store.aggregates",
           "[metrics] retention_days after the hour", Erasure.REWRITE_FIELDS, MOVED),
    Family("recipient domains", "<shard>agg:d:<hour>", "set", "engage.store.links (milter)",
           "[metrics] retention_days after the hour", Erasure.NO_ADDRESS, MOVED),
    Family("folded aggregates", "{agg<day>}<kind>:<hour>", "hash", "engage.metrics.fold",
           "[metrics] retention_days after the hour", Erasure.REWRITE_FIELDS,
           "none: written in layout 2 only, from the shards' aggregates"),
    Family("folding aggregates", "<shard>agg:<kind>:<hour>:folding", "hash",
           "engage.metrics.fold", "seconds: merged into the folded hash, then deleted",
           Erasure.REWRITE_FIELDS, "none: written in layout 2 only"),
    Family("fold sequence", "<shard>fold:seq", "string", "engage.metrics.fold",
           "never (one number per shard)", Erasure.NO_ADDRESS),
    Family("fold cursor", "fold", "hash", "engage.metrics.fold",
           "never (the next hour to fold; a rebuild's pause)", Erasure.NO_ADDRESS),
    Family("burst", "<shard>vb:<message key>:<second>", "set", "engage.verdicts.judge",
           "5 seconds", Erasure.NO_ADDRESS),
    Family("trap clients", "<shard>vt:<message key>", "set", "engage.verdicts.judge",
           "[verdicts] trap_window", Erasure.NO_ADDRESS),
    Family("click rate limit", "rl:<client>:<window>", "string", "engage.web.ratelimit",
           "one window", Erasure.NO_ADDRESS),
    Family("login rate limit", "dashboard:rl:<client>:<window>", "string",
           "engage.web (dashboard login)", "one window", Erasure.NO_ADDRESS),
    Family("webhook ids", "wh:ids", "set", "engage.webhooks.store", "never",
           Erasure.NO_ADDRESS),
    Family("webhook dead letters", "<shard>wh:dead", "stream", "engage.webhooks.queue",
           "until replayed or dropped", Erasure.DELETE_ENTRIES, PER_SHARD),
    Family("webhook batches", "<shard>wh:<webhook id>:batches", "hash",
           "engage.webhooks.queue", "until delivered or parked", Erasure.REWRITE_MEMBERS,
           PER_SHARD),
    Family("webhook due", "<shard>wh:<webhook id>:due", "zset", "engage.webhooks.queue",
           "with its batch", Erasure.NO_ADDRESS, PER_SHARD),
    Family("webhook attempts", "wh:<webhook id>:log", "stream", "engage.webhooks.store",
           "[webhooks] status retention", Erasure.NO_ADDRESS),
    Family("webhook", "wh:<webhook id>", "string", "engage.webhooks.store",
           "until deleted", Erasure.NO_ADDRESS),
    Family("append ids", "<shard>eid:<decisecond>", "set", "engage.store.events",
           "30 seconds", Erasure.NO_ADDRESS),
    Family("pending clicks", "<shard>pc", "stream", "engage.web.clickpath (redirector)",
           "seconds: each entry until its click's event is appended (engage.pendingclicks)",
           Erasure.NO_ADDRESS, "none: written in layout 2 only"),
    Family("repeat open", "<shard>or:<message key>:<pixel>:<client digest>", "string",
           "engage.store.events", "[web] open_repeat_window", Erasure.NO_ADDRESS),
    Family("open limit", "ol:<network>:<minute>", "string", "engage.web.opengate",
           "61 seconds", Erasure.NO_ADDRESS),
    Family("dropped events", "dropped", "hash", "engage.web.health", "never (a few fields)",
           Erasure.NO_ADDRESS),
    Family("layout", "layout", "string", "engage migrate-layout", "never (one value)",
           Erasure.NO_ADDRESS),
    Family("stream compaction", "compacting:<stream>", "stream", "engage.erasure.forget",
           "seconds: swapped in for its shard's stream", Erasure.DELETE_ENTRIES),
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
    unsharded = family.pattern.replace(SHARDED, "")
    literal = re.sub(r"<[^>]+>", "", unsharded)
    return "<" not in unsharded, len(literal)


# Built once: forget classifies every key of the keyspace with it.
_MATCH_ORDER = tuple((family.regex, family)
                     for family in sorted(FAMILIES, key=_specificity, reverse=True))


def _message_tag(message_key: str, shard: int | None) -> str:
    return tag(shard_of(message_key) if shard is None else shard)


# ------------------------------------------------------------------ builders
# Per-message families take the shard from the message key; ``shard=LAYOUT1`` names
# the layout-1 key (reading old data, migrating it).
def template(prefix: str, template_id: str, shard: int) -> str:
    """One copy per shard: the click's script reads it next to the message record."""
    return f"{prefix}{tag(shard)}t:{template_id}"


def message(prefix: str, message_key: str, shard: int | None = None) -> str:
    return f"{prefix}{_message_tag(message_key, shard)}m:{message_key}"


def message_bucket(prefix: str, message_key: str) -> str:
    """The hash of a bucketed key's record (engage.store.tokens.record_field)."""
    return f"{prefix}{_message_tag(message_key, None)}mb:{message_key[:BUCKET_LEN]}"


def status(prefix: str, message_key: str, shard: int | None = None) -> str:
    return f"{prefix}{_message_tag(message_key, shard)}ms:{message_key}"


def events(prefix: str, shard: int) -> str:
    return f"{prefix}{tag(shard)}events"


def event_index(prefix: str, shard: int, kind: str, dimension: str = "", value: str = "",
                listed: bool = False) -> str:
    """``listed``: the index written now; else the sorted set read until it expires."""
    base = f"{prefix}{tag(shard)}{'el' if listed else 'ei'}:{kind}"
    return f"{base}:{dimension}:{value}" if dimension else base


def verdicts(prefix: str, shard: int) -> str:
    return f"{prefix}{tag(shard)}verdicts"


def aggregate(prefix: str, shard: int, kind: str, hour: str) -> str:
    return f"{prefix}{tag(shard)}agg:{kind}:{hour}"


def folded(prefix: str, kind: str, hour: str) -> str:
    """One hour's aggregates of every shard (engage.metrics.fold), tagged by its UTC day:
    a day's folded hours share a slot, so one script call reads them."""
    return f"{prefix}{{agg{hour[:10]}}}{kind}:{hour}"


def folding(prefix: str, shard: int, kind: str, hour: str) -> str:
    """A shard's bucket while it is merged into the folded one (in the shard's slot)."""
    return f"{aggregate(prefix, shard, kind, hour)}:folding"


def fold_seq(prefix: str, shard: int) -> str:
    return f"{prefix}{tag(shard)}fold:seq"


def fold_cursor(prefix: str) -> str:
    return f"{prefix}fold"


def burst(prefix: str, message_key: str, second: int) -> str:
    return f"{prefix}{_message_tag(message_key, None)}vb:{message_key}:{second}"


def trap_clients(prefix: str, message_key: str) -> str:
    return f"{prefix}{_message_tag(message_key, None)}vt:{message_key}"


def rate_limit(prefix: str, client: str, window: int) -> str:
    """``client`` is what [privacy] ip_addresses leaves of the address (or a digest)."""
    return f"{prefix}rl:{client}:{window}"


def login_limit_prefix(prefix: str) -> str:  # the dashboard login's own RateLimiter
    return f"{prefix}dashboard:"


def webhook_ids(prefix: str) -> str:
    return f"{prefix}wh:ids"


def webhook_dead(prefix: str, shard: int) -> str:
    return f"{prefix}{tag(shard)}wh:dead"


def webhook(prefix: str, hook_id: str) -> str:
    return f"{prefix}wh:{hook_id}"


def webhook_batches(prefix: str, hook_id: str, shard: int) -> str:
    return f"{prefix}{tag(shard)}wh:{hook_id}:batches"


def webhook_due(prefix: str, hook_id: str, shard: int) -> str:
    return f"{prefix}{tag(shard)}wh:{hook_id}:due"


def webhook_log(prefix: str, hook_id: str) -> str:
    return f"{prefix}wh:{hook_id}:log"


def append_ids(prefix: str, shard: int, decisecond: int) -> str:
    return f"{prefix}{tag(shard)}eid:{decisecond}"


def pending_clicks(prefix: str, shard: int) -> str:
    """Clicks answered before their event was appended: the raw request, for seconds."""
    return f"{prefix}{tag(shard)}pc"


def repeat_open(prefix: str, message_key: str, kind: str, client: str) -> str:
    return f"{prefix}{_message_tag(message_key, None)}or:{message_key}:{kind}:{client}"


def open_limit(prefix: str, network: str, window: int) -> str:
    """``network`` is what [privacy] ip_addresses leaves of it (a digest in none mode)."""
    return f"{prefix}ol:{network}:{window}"


def dropped(prefix: str) -> str:
    return f"{prefix}dropped"


def layout(prefix: str) -> str:  # "2" once layout 1's keys are migrated (migrate-layout)
    return f"{prefix}layout"


def compacting(prefix: str, stream: str) -> str:
    """The copy a compaction builds of ``stream`` (a full key name under the prefix); in
    the stream's slot: its name holds the stream's shard tag (or the prefix's tag)."""
    return f"{prefix}compacting:{stream[len(prefix):]}"


def compaction_replaced(prefix: str, stream: str) -> str:  # the old stream, an instant
    return compacting(prefix, stream) + ":replaced"


def scan_pattern(prefix: str) -> str:
    """Every key engage owns (settings allow no glob characters in the prefix)."""
    return f"{prefix}*"
