"""The durable batch queue of one webhook: take new events, claim due retries, settle.

The queue has one part per shard (engage.webhooks.keys): a batch holds events of one
shard's stream and lives in that shard's keys, so every script touches one slot. Each
step is one Lua script, so a batch exists exactly when its events have been read
from the webhook's consumer group: a worker killed at any point loses nothing. A batch
being sent is leased (its due time pushed past the send's worst case); if the worker
dies, the lease runs out and any worker retries it. Events are acknowledged (XACK) only
when their batch got a 2xx, or when it is parked in the dead-letter stream. Times are
Redis server time, so workers on several hosts agree. Delivery is at least once: a
worker that outlives its lease may send a batch another worker sends again.
"""
from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis

from engage.webhooks.keys import CONSUMER, Keys

_LIB = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function ack(stream, group, ids)
  for i = 1, #ids, 1000 do
    redis.call('XACK', stream, group, unpack(ids, i, math.min(i + 999, #ids)))
  end
end
local function split(text)
  local out = {}
  for id in string.gmatch(text or '', '%S+') do out[#out + 1] = id end
  return out
end
"""

# KEYS (one shard): events stream, due zset, batches hash.
# ARGV: group, max events, interval ms, new batch id, lease ms, lease token, types (a,b,c).
# Returns {0, wait ms, last id}: nothing ready (wait at most that long, -1: until a new
# entry; XREAD after last id);
# {1, batch id, record JSON}: a new batch (its events are read with EventLog.fetch_json);
# {2}: events read but none of our types (acked); {-1}: the consumer group is missing.
TAKE = _LIB + """
local info = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local fields = {}
  for i = 1, #g, 2 do fields[g[i]] = g[i + 1] end
  if fields['name'] == ARGV[1] then info = fields end
end
if not info then return {-1} end
local max, interval = tonumber(ARGV[2]), tonumber(ARGV[3])
local last = info['last-delivered-id']
local first = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1)[1]
if not first then return {0, -1, last} end
local waiting = tonumber(info['lag']) or #redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', max)
local now = now_ms()
local age = now - tonumber(string.match(first[1], '^(%d+)'))
if waiting < max and age < interval then
  local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1][1]
  return {0, interval - age, newest}
end
local entries = redis.call('XREADGROUP', 'GROUP', ARGV[1], 'engage', 'COUNT', max,
                           'STREAMS', KEYS[1], '>')[1][2]
local wanted, ids, other = {}, {}, {}
for kind in string.gmatch(ARGV[7], '[^,]+') do wanted[kind] = true end
for _, entry in ipairs(entries) do
  local fields, json = entry[2], nil
  if fields then
    for i = 1, #fields, 2 do if fields[i] == 'e' then json = fields[i + 1] end end
  end
  -- engage.store.events writes "type" first (whole) or "t" (engage.store.eventforms);
  -- anything else is decoded
  local kind = json and (string.match(json, '^{"t":"([%w_]+)"')
                         or string.match(json, '^{"type":"([%w_]+)"'))
  if json and not kind then
    local ok, event = pcall(cjson.decode, json)
    if ok and type(event) == 'table' then kind = event['type'] end
  end
  if kind and wanted[kind] then
    ids[#ids + 1] = entry[1]
  else
    other[#other + 1] = entry[1]
  end
end
ack(KEYS[1], ARGV[1], other)
if #ids == 0 then return {2} end
local record = cjson.encode({ids = table.concat(ids, ' '), size = #ids, created = now,
                             attempts = 0, lease = ARGV[6], code = 0})
redis.call('HSET', KEYS[3], ARGV[4], record)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[4])
return {1, ARGV[4], record}
""".replace("'engage'", repr(CONSUMER))

# KEYS (one shard): due zset, batches hash. ARGV: lease ms, lease token.
# Returns {0, ms until the next one is due or -1}, or {1, batch id, record JSON}.
CLAIM = _LIB + """
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #head == 0 then return {0, -1} end
local now = now_ms()
if tonumber(head[2]) > now then return {0, tonumber(head[2]) - now} end
local raw = redis.call('HGET', KEYS[2], head[1])
if not raw then
  redis.call('ZREM', KEYS[1], head[1])
  return {0, 0}
end
local record = cjson.decode(raw)
record['lease'] = ARGV[2]
raw = cjson.encode(record)
redis.call('HSET', KEYS[2], head[1], raw)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), head[1])
return {1, head[1], raw}
"""

# KEYS (one shard): events stream, due zset, batches hash. ARGV: group, batch id.
SUCCEED = _LIB + """
local raw = redis.call('HGET', KEYS[3], ARGV[2])
if not raw then return 0 end
ack(KEYS[1], ARGV[1], split(cjson.decode(raw)['ids']))
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""

# KEYS (one shard): events stream, due zset, batches hash, dead-letter stream.
# ARGV: group, batch id, lease token, attempts, delay ms, window ms, code, error, body,
# webhook id. Returns 'retry' (due again after the delay, never later than the window's
# end), 'dead' (the window is over: parked and acknowledged) or 'lost' (lease taken over).
# A replayed batch parks the body its record holds now, not the one just sent: an
# erasure (engage.erasure.forget) may have rewritten it meanwhile.
FAIL = _LIB + """
local raw = redis.call('HGET', KEYS[3], ARGV[2])
if not raw then return 'lost' end
local record = cjson.decode(raw)
if record['lease'] ~= ARGV[3] then return 'lost' end
local now = now_ms()
local deadline = tonumber(record['created']) + tonumber(ARGV[6])
record['attempts'], record['code'], record['error'] = tonumber(ARGV[4]), tonumber(ARGV[7]), ARGV[8]
if now < deadline then
  redis.call('HSET', KEYS[3], ARGV[2], cjson.encode(record))
  redis.call('ZADD', KEYS[2], math.min(now + tonumber(ARGV[5]), deadline), ARGV[2])
  return 'retry'
end
redis.call('XADD', KEYS[4], '*', 'webhook', ARGV[10], 'batch', ARGV[2],
           'size', record['size'], 'attempts', ARGV[4], 'code', ARGV[7], 'error', ARGV[8],
           'created', record['created'], 'ids', record['ids'] or '', 'body', record['body'] or ARGV[9])
ack(KEYS[1], ARGV[1], split(record['ids']))
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
return 'dead'
"""


@dataclass(frozen=True)
class Batch:
    id: str
    shard: int
    ids: tuple[str, ...]
    size: int
    attempts: int
    created_ms: int
    lease: str
    body: bytes | None = None  # replayed from the dead-letter stream: sent as it is

    @classmethod
    def from_record(cls, shard: int, batch_id: str | bytes, raw: str | bytes) -> Batch:
        data: dict[str, Any] = json.loads(raw)
        body = data.get("body")
        return cls(_text(batch_id), shard, tuple(str(data.get("ids") or "").split()),
                   int(data.get("size", 0)), int(data.get("attempts", 0)),
                   int(data.get("created", 0)), str(data.get("lease", "")),
                   body.encode("utf-8") if isinstance(body, str) else None)


class Missing:
    """The webhook's consumer group is gone (deleted webhook, or a flushed stream)."""


@dataclass(frozen=True)
class Waiting:
    """Nothing to send now: wait at most ``ms`` (-1: no due retry), wake on entries after
    ``after`` (None: do not watch the stream)."""

    ms: int
    after: str | None = None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def new_batch_id() -> str:
    """SparkPost's batch ids are opaque strings; ours are 128 random bits in hex."""
    return secrets.token_hex(16)


class BatchQueue:
    """The queue of one webhook, over the shards (connection passed in)."""

    def __init__(self, client: redis.Redis, keys: Keys, hook_id: str) -> None:
        self.client, self.keys, self.hook_id = client, keys, hook_id
        self.group = keys.group(hook_id)
        self._take = client.register_script(TAKE)
        self._claim = client.register_script(CLAIM)
        self._succeed = client.register_script(SUCCEED)
        self._fail = client.register_script(FAIL)

    def _shard_keys(self, shard: int) -> list[str]:
        return [self.keys.events(shard), self.keys.due(self.hook_id, shard),
                self.keys.batches(self.hook_id, shard)]

    def take(self, shard: int, types: tuple[str, ...], max_events: int, interval_ms: int,
             lease_ms: int) -> Batch | Waiting | Missing | None:
        """A new batch of the shard's waiting events; Waiting; Missing (no stream or no
        consumer group); None when events of other types only were consumed (call again)."""
        batch_id = new_batch_id()
        args: list[str | int] = [self.group, max_events, interval_ms, batch_id, lease_ms, batch_id,
                                 ",".join(types)]
        try:
            reply = self._take(keys=self._shard_keys(shard), args=args)
        except redis.ResponseError as exc:
            if "no such key" not in str(exc):
                raise
            reply = [-1]
        if reply[0] == -1:
            return Missing()
        if reply[0] == 0:
            return Waiting(int(reply[1]), _text(reply[2]))
        if reply[0] == 2:
            return None
        return Batch.from_record(shard, reply[1], reply[2])

    def next_due(self, shards: Sequence[int]) -> dict[int, int]:
        """Per shard, ms until its earliest retry is due (0: now; -1: none), in one round
        trip, read only: claim_due then leases one batch of a shard found due."""
        pipe = self.client.pipeline(transaction=False)
        for shard in shards:
            pipe.zrange(self.keys.due(self.hook_id, shard), 0, 0, withscores=True)
        now_ms = time.time() * 1000  # claim_due checks again with Redis time
        heads = cast("list[list[tuple[bytes, float]]]", pipe.execute())
        return {shard: max(0, int(head[0][1] - now_ms)) if head else -1
                for shard, head in zip(shards, heads)}

    def claim_due(self, shard: int, lease_ms: int) -> Batch | Waiting:
        """The shard's earliest retry whose time has come (leased to us), or how long until one is."""
        token = new_batch_id()
        reply = self._claim(keys=self._shard_keys(shard)[1:], args=[lease_ms, token])
        if reply[0] == 0:
            return Waiting(int(reply[1]))
        return Batch.from_record(shard, reply[1], reply[2])

    def succeed(self, batch: Batch) -> bool:
        return bool(self._succeed(keys=self._shard_keys(batch.shard), args=[self.group, batch.id]))

    def fail(self, batch: Batch, attempts: int, delay_ms: int, window_ms: int, code: int,
             error: str, body: bytes) -> str:
        """'retry', 'dead' or 'lost' (see FAIL)."""
        keys = self._shard_keys(batch.shard) + [self.keys.dead(batch.shard)]
        args: list[str | int | bytes] = [self.group, batch.id, batch.lease, attempts, delay_ms,
                                         window_ms, code, error[:500], body, self.hook_id]
        return _text(self._fail(keys=keys, args=args))

    def ensure_group(self, shard: int) -> None:
        """Create the consumer group at the end of the shard's stream (new events only)."""
        try:
            self.client.xgroup_create(self.keys.events(shard), self.group, id="$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
