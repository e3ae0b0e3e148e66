"""Erasure in message buckets (engage.store.keys "message bucket"): the records of up to
100 messages in one hash, each stored against the bucket's base record (under "").

A record may spell the address only once expanded: a field shared with the base (SUB),
or an envelope sender or Message-ID whose end is the base's (``jane`` + SUB and the base's
``@example.org``). So Redis returns every bucket where a value holds the address or its
local part followed by SUB, and the records are read expanded here. A record that
mentions the address is rewritten whole (never again against the base). When the base
itself mentions it, every record stored against it is first rewritten whole, then the
base is scrubbed: no record's fields change but those of the forgotten address. Each
bucket is a compare-and-set (its field count and the values read), retried when the
milter wrote to it meanwhile.
"""
from __future__ import annotations

from typing import Any

import redis

from engage.erasure.scrub import Address, scrub_record
from engage.erasure.webhookdata import ATTEMPTS
from engage.store.records import SAME, MessageRecord
from engage.store.redisconn import queue_script

# A bucket holds up to 101 values: about 0.14 ms of Lua each (measured), so a call filters
# a few buckets, never a SCAN chunk's thousand (140 ms of Redis the milter would wait on).
BUCKETS_PER_CALL = 20
# KEYS: buckets; ARGV: lowercased needles. Bucket, {field, value, ...} of the buckets
# where a value holds one.
FILTER_LUA = """
local out = {}
for _, key in ipairs(KEYS) do
  local fields = redis.pcall('HGETALL', key)
  if type(fields) == 'table' and not fields.err then
    local hit = false
    for i = 2, #fields, 2 do
      local low = string.lower(fields[i])
      for _, needle in ipairs(ARGV) do
        if string.find(low, needle, 1, true) then hit = true break end
      end
      if hit then break end
    end
    if hit then
      out[#out + 1] = key
      out[#out + 1] = fields
    end
  end
end
return out
"""
# KEYS[1]: a bucket. ARGV[1]: its field count as read; then field, value read, its
# replacement, ... Nothing is written unless all still hold (TTL kept).
SET_FIELDS_IF_LUA = """
if redis.call('HLEN', KEYS[1]) ~= tonumber(ARGV[1]) then return 0 end
for i = 2, #ARGV, 3 do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then return 0 end
end
for i = 2, #ARGV, 3 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2]) end
return 1
"""


def needles(address: Address) -> list[bytes]:
    """What the filter looks for: the address's forms, and its local part before SUB."""
    local = address.text.rpartition("@")[0]
    return [*address.needles, (local + SAME).encode("utf-8").lower()]


def scrub_bucket(fields: dict[bytes, bytes], address: Address) -> tuple[dict[bytes, str], int]:
    """(field: new value, records that mentioned the address) for one bucket's fields;
    nothing when no record mentions it."""
    base_text = fields.get(b"")
    base = MessageRecord.from_text(base_text) if base_text is not None else None
    new_base = scrub_record(base_text, address) if base_text is not None else None
    changes: dict[bytes, str] = {}
    erased = 0
    for name, stored in fields.items():
        if name == b"":
            continue
        whole = MessageRecord.from_text(stored, base).to_text()
        scrubbed = scrub_record(whole, address)
        if scrubbed is not None:
            changes[name] = scrubbed
            erased += 1
        elif new_base is not None and SAME.encode() in stored:
            changes[name] = whole  # before its base changes under it
    if new_base is not None:
        changes[b""] = new_base
    return changes, erased


class BucketEraser:
    """Scrubs one address out of message buckets, a chunk of them at a time."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._filter = client.register_script(FILTER_LUA)
        self._set_if = client.register_script(SET_FIELDS_IF_LUA)

    def erase(self, groups: list[list[bytes]], address: Address) -> int:
        """Records rewritten in these buckets (each group: one slot's keys)."""
        found = needles(address)
        pipe = self.client.pipeline(transaction=False)
        for group in groups:
            for start in range(0, len(group), BUCKETS_PER_CALL):
                queue_script(self._filter, pipe, group[start:start + BUCKETS_PER_CALL], found)
        replies = pipe.execute()
        erased = 0
        for reply in replies:
            for i in range(0, len(reply), 2):
                erased += self._rewrite(reply[i], _pairs(reply[i + 1]), address)
        return erased

    def _rewrite(self, bucket: bytes, fields: dict[bytes, bytes], address: Address) -> int:
        for _ in range(ATTEMPTS):
            changes, erased = scrub_bucket(fields, address)
            if not changes:
                return 0
            args: list[Any] = [len(fields)]
            for name, value in changes.items():
                args += [name, fields[name], value]
            if self._set_if(keys=[bucket], args=args):
                return erased
            fields = _pairs(self.client.hgetall(bucket))
        raise redis.RedisError(f"{bucket!r} kept changing while being rewritten")


def _pairs(reply: Any) -> dict[bytes, bytes]:
    if isinstance(reply, dict):
        return dict(reply)
    return {reply[i]: reply[i + 1] for i in range(0, len(reply), 2)}
