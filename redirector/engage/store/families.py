"""A key family's record (engage.store.keys.FAMILIES): what it holds, who writes it, how
long it lives, how ``engage forget`` erases it, and the pattern its keys match."""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from engage.store.shards import SHARD_RE

SHARDED = "<shard>"  # in a pattern: ``{tag}`` (layout 2) or nothing (layout 1)


class Erasure(Enum):
    """What ``engage forget`` does to a family (engage.erasure.forget implements each)."""

    NO_ADDRESS = "holds no address by construction (ids, counters, digests, IPs)"
    REWRITE_VALUE = "the value is rewritten without the address (same key, same TTL)"
    REWRITE_RECORDS = "records that mention the address are rewritten without it, whole"
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
    migration: str = "none: the same in both layouts"

    @property
    def sharded(self) -> bool:
        return self.pattern.startswith(SHARDED)

    @property
    def regex(self) -> re.Pattern[str]:
        parts = re.split(r"(<[^>]+>)", self.pattern)
        body = "".join(SHARD_RE if p == SHARDED else "(.+)" if p.startswith("<") else re.escape(p)
                       for p in parts)
        return re.compile(body + r"\Z", re.S)
