"""The queue's Lua scripts (engage.webhooks.queue). Each touches the keys of one shard
(one slot of a Redis Cluster): a batch that mixes shards is built from several calls,
in the order engage.webhooks.assemble explains.

A record (a field of ``{p}{s}wh:<id>:batches``, JSON) is one of:
- a batch: ``ids`` (this shard's stream ids), ``size``, ``created``, ``attempts``,
  ``lease``, ``code``; ``body`` when replayed from a dead letter; ``plan`` (shard numbers)
  while its other shards' parts are being taken; ``parts`` ({shard: ids}) once sealed;
- a part: the events a batch took from another shard, ``home`` naming the batch's shard.
  Its due time is when to check that its batch still holds it.
"""
from __future__ import annotations

from engage.webhooks.keys import CONSUMER

LIB = """
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
local function group_info(stream, group)
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local fields = {}
    for i = 1, #g, 2 do fields[g[i]] = g[i + 1] end
    if fields['name'] == group then return fields end
  end
  return nil
end
"""

# KEYS: a shard's events stream. ARGV: group, most events to count.
# Returns {-1}: no consumer group; {0, 0, 0, last id}: nothing waiting (watch for entries
# after that id); {1, waiting, age of the oldest waiting ms, newest id}. Read only.
PEEK = LIB + """
local info = group_info(KEYS[1], ARGV[1])
if not info then return {-1} end
local last = info['last-delivered-id']
local first = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1)[1]
if not first then return {0, 0, 0, last} end
local waiting = tonumber(info['lag'])
  or #redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', ARGV[2])
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1][1]
return {1, waiting, now_ms() - tonumber(string.match(first[1], '^(%d+)')), newest}
"""

# KEYS (one shard): events stream, due zset, batches hash.
# ARGV: group, max events, batch id, due in ms (a batch's lease; a part's first check),
# lease token, types (a,b,c), plan (a batch's other shards, space-separated; '' none),
# home (a part's batch's shard; '' for a batch).
# Reads up to max new entries from the group and records those of our types, in one
# step: an entry is pending in the group only while a record holds it. Returns
# {1, batch id, record JSON, still waiting, age of the oldest still waiting ms};
# {2}: none of our types (those read are acked); {-1}: the consumer group is missing.
TAKE = LIB + """
local info = group_info(KEYS[1], ARGV[1])
if not info then return {-1} end
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], 'engage', 'COUNT', ARGV[2],
                         'STREAMS', KEYS[1], '>')
if not reply then return {2} end
local entries = reply[1][2]
local wanted, ids, other = {}, {}, {}
for kind in string.gmatch(ARGV[6], '[^,]+') do wanted[kind] = true end
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
local now = now_ms()
local record = {ids = table.concat(ids, ' '), size = #ids, created = now, attempts = 0,
                lease = ARGV[5], code = 0}
if ARGV[7] ~= '' then record['plan'] = ARGV[7] end
if ARGV[8] ~= '' then record['home'] = ARGV[8] end
local raw = cjson.encode(record)
redis.call('HSET', KEYS[3], ARGV[3], raw)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
local last = entries[#entries][1]
local next = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1)[1]
if not next then return {1, ARGV[3], raw, 0, 0} end
local waiting = tonumber(group_info(KEYS[1], ARGV[1])['lag']) or 1
return {1, ARGV[3], raw, waiting, now - tonumber(string.match(next[1], '^(%d+)'))}
""".replace("'engage'", repr(CONSUMER))

# KEYS (one shard): due zset, batches hash. ARGV: lease ms, lease token.
# Returns {0, ms until the next one is due or -1}, or {1, batch id, record JSON}.
CLAIM = LIB + """
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

# KEYS (one shard): the batch's due zset and batches hash. ARGV: batch id, lease token,
# parts JSON ({shard: ids}), total size, lease ms. Fixes which parts the batch holds
# before its first attempt (its content never changes after: a receiver dedupes by batch
# id) and renews the lease. Returns the record JSON, or false when the lease is lost.
SEAL = LIB + """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return false end
local record = cjson.decode(raw)
if record['lease'] ~= ARGV[2] then return false end
record['plan'] = nil
local parts = cjson.decode(ARGV[3])
if next(parts) then record['parts'] = parts end
record['size'] = tonumber(ARGV[4])
raw = cjson.encode(record)
redis.call('HSET', KEYS[2], ARGV[1], raw)
redis.call('ZADD', KEYS[1], now_ms() + tonumber(ARGV[5]), ARGV[1])
return raw
"""

# KEYS (one shard): due zset, batches hash. ARGV: part id, lease token, then either a
# delay ms (its batch holds it: check again then) or '' and a new id (its batch is gone or
# sealed without it: the part becomes a batch of its own, under the new id, due now).
# Returns 1 (done) or 0 (gone, or leased by another worker).
PART = LIB + """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return 0 end
local record = cjson.decode(raw)
if record['lease'] ~= ARGV[2] then return 0 end
local now = now_ms()
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  return 1
end
record['home'], record['lease'], record['created'], record['attempts'] = nil, '', now, 0
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[4], cjson.encode(record))
redis.call('ZADD', KEYS[1], now, ARGV[4])
return 1
"""

# KEYS (one shard): events stream, due zset, batches hash. ARGV: group, batch id.
# A batch's or a part's events acknowledged and its record dropped (a batch's parts
# first: a part never outlives a settled batch but by a crash).
SUCCEED = LIB + """
local raw = redis.call('HGET', KEYS[3], ARGV[2])
if not raw then return 0 end
ack(KEYS[1], ARGV[1], split(cjson.decode(raw)['ids']))
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""

# KEYS (one shard): events stream, due zset, batches hash, dead-letter stream.
# ARGV: group, batch id, lease token, attempts, delay ms, window ms, code, error, body,
# webhook id, the stream ids of every shard (engage.webhooks.queue.Batch.all_ids).
# Returns 'retry' (due again after the delay, never later than the window's end), 'dead'
# (the window is over: parked and this shard's events acknowledged; the worker then
# settles the parts) or 'lost' (lease taken over). A replayed batch parks the body its
# record holds now, not the one just sent: an erasure (engage.erasure.forget) may have
# rewritten it meanwhile.
FAIL = LIB + """
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
           'created', record['created'], 'ids', ARGV[11], 'body', record['body'] or ARGV[9])
ack(KEYS[1], ARGV[1], split(record['ids']))
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
return 'dead'
"""
