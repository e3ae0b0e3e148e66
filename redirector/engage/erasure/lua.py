"""The Lua scripts of ``engage forget``: filters that run inside Redis so a forget reads
the keyspace in chunks without shipping every value, and compare-and-set rewrites that
never overwrite a value changed since it was read."""

# KEYS: string keys; ARGV: lowercased needles. Key, value, ... of the values holding one.
FILTER_LUA = """
local out = {}
for _, key in ipairs(KEYS) do
  local value = redis.pcall('GET', key)
  if type(value) == 'string' then
    local low = string.lower(value)
    for _, needle in ipairs(ARGV) do
      if string.find(low, needle, 1, true) then
        out[#out + 1] = key
        out[#out + 1] = value
        break
      end
    end
  end
end
return out
"""
# KEYS[1]: a stream. ARGV: start id (exclusive; '-' = the beginning), count, needles...
# Returns {last id read ('' = none), entries read, id, value, id, value ...} for the
# entries one of whose values holds a needle.
STREAM_LUA = """
local start = ARGV[1] == '-' and '-' or '(' .. ARGV[1]
local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', tonumber(ARGV[2]))
local out = {'', #entries}
for _, entry in ipairs(entries) do
  out[1] = entry[1]
  local fields, hit = entry[2], nil
  for i = 2, #fields, 2 do
    local low = string.lower(fields[i])
    for n = 3, #ARGV do
      if string.find(low, ARGV[n], 1, true) then hit = fields[i] break end
    end
    if hit then break end
  end
  if hit then
    out[#out + 1] = entry[1]
    out[#out + 1] = hit
  end
end
return out
"""
# KEYS[1]: a string key. ARGV: the value we read, its replacement (TTL kept).
SET_IF_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
"""
# KEYS: a webhook's batches hash and due zset. ARGV: batch id, the record we read, its
# replacement ('' = drop the batch: nothing of it is left to send).
BATCH_IF_LUA = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return 1
"""
# KEYS[1]: the dead-letter stream. ARGV: entry id, then the replacement's field/value
# pairs (none: just delete). A stream entry cannot change: the replacement gets a new id.
DEAD_IF_LUA = """
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[1])
if #ARGV > 1 then redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2)) end
return 1
"""
# KEYS: hashes whose field names may hold the address; ARGV: lowercased needles.
# Key, field, ... of the fields whose name holds one.
FIELDS_LUA = """
local out = {}
for _, key in ipairs(KEYS) do
  local fields = redis.pcall('HKEYS', key)
  if type(fields) == 'table' then
    for _, name in ipairs(fields) do
      local low = string.lower(name)
      for _, needle in ipairs(ARGV) do
        if string.find(low, needle, 1, true) then
          out[#out + 1] = key
          out[#out + 1] = name
          break
        end
      end
    end
  end
end
return out
"""
# KEYS[1]: a hash of counters. ARGV: a field, its new name. The count moves (adds up
# with a field already of that name); 0 when the field is gone.
RENAME_FIELD_LUA = """
local count = redis.call('HGET', KEYS[1], ARGV[1])
if not count then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[1], ARGV[2], count)
return 1
"""
# Stream compaction. XDEL only flags an entry: its bytes stay in the stream's listpack
# node, and so in RDB snapshots, an AOF's RDB preamble and replicas, until the whole node
# goes. A compaction copies the live entries, same ids, into KEYS[2] in chunks
# (COPY_CHUNK_LUA, as often as it takes), then swaps it in atomically (SWAP_LUA).
# KEYS[1] the stream, KEYS[2] the copy. ARGV: last id copied ('-' = none), count.
# Returns the last id copied now ('' when the copy has caught up).
COPY_CHUNK_LUA = """
local start = ARGV[1] == '-' and '-' or '(' .. ARGV[1]
local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', tonumber(ARGV[2]))
for _, entry in ipairs(entries) do
  redis.call('XADD', KEYS[2], entry[1], unpack(entry[2]))
end
if #entries == 0 then return '' end
return entries[#entries][1]
"""
# KEYS[1] the stream, KEYS[2] the copy, KEYS[3] a name for the replaced stream.
# ARGV[1]: last id copied ('-' = none). Copies the tail appended meanwhile, drops what
# retention trimmed meanwhile, carries the stream's counters, every consumer group (last
# delivered id, entries read) and its pending entries (consumer, idle time, delivery
# count), then replaces the stream. The replaced one is freed by UNLINK, in the
# background: RENAME over it would free a large stream while Redis waits.
# The copy holds every entry the stream had while copied: trimmed like the stream, it must
# be as long, or entries were deleted meanwhile (another forget, a replayed dead letter)
# and the copy would bring them back: then it is dropped and SWAP_MISMATCH returned.
SWAP_MISMATCH = 2
SWAP_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('UNLINK', KEYS[2]) return 0 end
local start = ARGV[1] == '-' and '-' or '(' .. ARGV[1]
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], start, '+')) do
  redis.call('XADD', KEYS[2], entry[1], unpack(entry[2]))
end
local function map(flat) local m = {} for i = 1, #flat, 2 do m[flat[i]] = flat[i + 1] end return m end
local info = map(redis.call('XINFO', 'STREAM', KEYS[1]))
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
if first then
  redis.call('XTRIM', KEYS[2], 'MINID', first[1])
  if redis.call('XLEN', KEYS[2]) ~= redis.call('XLEN', KEYS[1]) then
    redis.call('UNLINK', KEYS[2])
    return 2
  end
else
  redis.call('DEL', KEYS[2])
  redis.call('XADD', KEYS[2], info['last-generated-id'], 'compacted', '1')
  redis.call('XDEL', KEYS[2], info['last-generated-id'])
end
if info['entries-added'] then  -- Redis 7; 6.2 keeps no such counters
  redis.call('XSETID', KEYS[2], info['last-generated-id'], 'ENTRIESADDED', info['entries-added'],
             'MAXDELETEDID', info['max-deleted-entry-id'])
else
  redis.call('XSETID', KEYS[2], info['last-generated-id'])
end
for _, raw in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local group = map(raw)
  local created = {'XGROUP', 'CREATE', KEYS[2], group['name'], group['last-delivered-id']}
  if group['entries-read'] then
    created[#created + 1] = 'ENTRIESREAD'
    created[#created + 1] = group['entries-read']
  end
  redis.call(unpack(created))
  for _, p in ipairs(redis.call('XPENDING', KEYS[1], group['name'], '-', '+', 1000000)) do
    redis.call('XCLAIM', KEYS[2], group['name'], p[2], 0, p[1], 'IDLE', p[3],
               'RETRYCOUNT', p[4], 'FORCE', 'JUSTID')
  end
end
redis.call('RENAME', KEYS[1], KEYS[3])
redis.call('RENAME', KEYS[2], KEYS[1])
redis.call('UNLINK', KEYS[3])
return 1
"""

# KEYS: an erased event's indexes (engage.store.eventindex: sorted sets or streams), in
# its shard. ARGV[1]: its stream id. How many held it. (A stream index keeps the
# ordinals of the entries left: a count over the gap counts the erased event too.)
UNINDEX_LUA = """
local removed = 0
for _, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'zset' then removed = removed + redis.call('ZREM', key, ARGV[1])
  elseif kind == 'stream' then removed = removed + redis.call('XDEL', key, ARGV[1]) end
end
return removed
"""
