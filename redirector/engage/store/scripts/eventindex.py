"""The event indexes' Lua (engage.store.eventindex): a sorted set up to LISTED entries, a
stream of ``n`` ordinals past that, read and written the same way whichever it is.

INDEX_FUNCTIONS is defined at the top of every script that touches an index:
- ``newest(key, top, low, first, last, count, base, cap)``: up to ``count`` entries with
  low <= score <= top (``first``/``last``: the same range as stream ids, engage.store.
  eventindex.id_range), newest first, as {id, score, id, score ...} (ZREVRANGEBYSCORE
  WITHSCORES's shape; a stream entry's score, its event_id, as a number: base, cap are
  the shard's), or with ``ids_only`` the ids alone.
- ``counted(key, low, high, first, last)``: how many entries are in the range.
- ``indexed(key, id, score, cutoff_ms, cutoff_score, trim)``: adds the entry; a sorted set
  past LISTED entries is rewritten as a stream, in id order with ordinals 1, 2 ...; the
  stream's oldest entries go by MINID (whole nodes), the sorted set's now and then (trim).
"""
from __future__ import annotations

LISTED = 128  # Redis's zset-max-listpack-entries: past it a sorted set is a skiplist

INDEX_FUNCTIONS = """
local function type_of(key) return redis.call('TYPE', key)['ok'] end
local function newest(key, top, low, first, last, count, base, cap, ids_only)
  local kind = type_of(key)
  if kind == 'zset' then
    if ids_only then return redis.call('ZREVRANGEBYSCORE', key, top, low, 'LIMIT', 0, count) end
    return redis.call('ZREVRANGEBYSCORE', key, top, low, 'WITHSCORES', 'LIMIT', 0, count)
  end
  local out = {}
  if kind == 'stream' then
    base, cap = tonumber(base), tonumber(cap)
    for _, entry in ipairs(redis.call('XREVRANGE', key, last, first, 'COUNT', count)) do
      local id = entry[1]
      out[#out + 1] = id
      if not ids_only then
        local dash = string.find(id, '-', 1, true)
        out[#out + 1] = tonumber(string.sub(id, 1, dash - 1)) * 1000 + base
          + math.min(tonumber(string.sub(id, dash + 1)), cap)
      end
    end
  end
  return out
end
local function counted(key, low, high, first, last)
  local kind = type_of(key)
  if kind == 'zset' then return redis.call('ZCOUNT', key, low, high) end
  if kind ~= 'stream' then return 0 end
  local oldest = redis.call('XRANGE', key, first, last, 'COUNT', 1)[1]
  if not oldest then return 0 end
  local latest = redis.call('XREVRANGE', key, last, first, 'COUNT', 1)[1]
  return tonumber(latest[2][2]) - tonumber(oldest[2][2]) + 1
end
local function id_parts(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function indexed(key, id, score, cutoff_ms, cutoff_score, trim)
  if type_of(key) == 'stream' then
    local latest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
    -- pcall: an id not above the index's last (its stream was replaced) is left out
    redis.pcall('XADD', key, 'MINID', '~', cutoff_ms, id, 'n', latest and tonumber(latest[2][2]) + 1 or 1)
    return
  end
  redis.call('ZADD', key, score, id)
  if trim then redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. cutoff_score) end
  if redis.call('ZCARD', key) <= LISTED then return end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. cutoff_score)
  local ids = redis.call('ZRANGE', key, 0, -1)
  table.sort(ids, function(a, b)
    local a_ms, a_seq = id_parts(a)
    local b_ms, b_seq = id_parts(b)
    return a_ms < b_ms or (a_ms == b_ms and a_seq < b_seq)
  end)
  redis.call('DEL', key)
  for n, member in ipairs(ids) do redis.pcall('XADD', key, member, 'n', n) end
end
""".replace("LISTED", str(LISTED))

# KEYS: index keys of one shard. ARGV: low, high (scores), base, cap, first, last (ids).
# The count of each key, in order.
COUNT_LUA = INDEX_FUNCTIONS + """
local out = {}
for i, key in ipairs(KEYS) do out[i] = counted(key, ARGV[1], ARGV[2], ARGV[5], ARGV[6]) end
return out
"""

# KEYS: index keys of one shard. ARGV: top, low (scores), count, base, cap, first, last.
# Each key's newest ids in the range, as a list per key.
NEWEST_LUA = INDEX_FUNCTIONS + """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = newest(key, ARGV[1], ARGV[2], ARGV[6], ARGV[7], ARGV[3], ARGV[4], ARGV[5], true)
end
return out
"""
