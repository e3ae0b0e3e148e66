"""The virtual shards of layout 2 and how a key or a message finds its shard
(engage.store.keys re-exports all of it: modules use ``keys.shard_of`` and friends)."""
from __future__ import annotations

# The virtual shards (layout 2). Everything one message's click reads and writes is in its
# shard, named by a hash tag: on a Redis Cluster each shard is one slot, and the tags sit
# at the centres of 24 equal slices of the 16384 slots, so the even split that
# ``redis-cli --cluster create`` makes puts 24/n shards on each of 1, 2, 3, 4, 6, 8 or 12
# masters. A link sent today must resolve in years: these tags never change (tested).
SHARD_TAGS = ("8n", "bq", "ps", "ei", "wk", "3v", "md", "ss", "aq", "tk", "fi", "3w",
              "9v", "ci", "qk", "dq", "b7", "p5", "6v", "rk", "x8", "us", "s5", "a7")
SHARDS = len(SHARD_TAGS)
SHARD_RE = r"(\{(?:" + "|".join(SHARD_TAGS) + r")\})?"
LAYOUT1 = -1  # the "shard" of layout 1 (one slot, no shard tag): read until migrated


def shard_of(message_key: str) -> int:
    """The virtual shard of a message: from its key's first 24 random bits (base64url),
    so the milter and every redirector agree without asking Redis."""
    value = 0
    for char in message_key[:4]:
        value = value * 64 + _B64_VALUE.get(char, 0)
    return value % SHARDS


_B64_VALUE = {char: n for n, char in enumerate(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}


def shard_ids(layout1: bool = False) -> tuple[int, ...]:
    """Every shard; with ``layout1``, layout 1's keys as one more (LAYOUT1), for readers
    that must see data written before the migration."""
    return tuple(range(SHARDS)) + ((LAYOUT1,) if layout1 else ())


def tag(shard: int) -> str:
    """``{tag}`` in front of a sharded family's name; nothing for LAYOUT1."""
    return "" if shard == LAYOUT1 else "{" + SHARD_TAGS[shard] + "}"


def shard_of_key(prefix: str, key: str) -> int:
    """The shard a key under ``prefix`` is in (LAYOUT1 for an untagged key)."""
    rest = key[len(prefix):]
    if rest.startswith("{") and rest[3:4] == "}" and rest[1:3] in _SHARD_OF_TAG:
        return _SHARD_OF_TAG[rest[1:3]]
    return LAYOUT1


_SHARD_OF_TAG = {text: n for n, text in enumerate(SHARD_TAGS)}
