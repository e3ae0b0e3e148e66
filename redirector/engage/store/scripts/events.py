"""The event log's scripts (engage.store.events.EventLog): append one event, read a page
of the index union, fetch entries by id."""
from __future__ import annotations

from engage.store.scripts.aggregates import UPDATE_CALL, UPDATE_FUNCTION
from engage.store.scripts.eventindex import INDEX_FUNCTIONS

# The gate first (the last ARGV[13] keys of KEYS are its own): the append id (ARGV[14])
# into its decisecond's set KEYS[last+1] (integers: an intset, 8 bytes each), a known id
# ends the script; for an open, KEYS[last+2] the repeat key (SET NX for ARGV[18] s), then
# ARGV[19] = '1' when the network is past its open limit (read before, outside: its
# counter is in no shard; counted after a recorded open).
# ARGV[20]: the event's epoch ms when ARGV[1] (a stored form, engage.store.eventforms)
# leaves its time to the stream id: the entry is added as <ms>-*, or, when the stream's
# last id is past that ms (another redirector's clock ahead), already has ARGV[17] (the
# seq cap: ids past it would share an event_id) entries in that ms, or the ms is a second
# or more from Redis's clock (ids never run ahead of Redis's time), as * with "s":<ms>.
# The score (public event_id) is ms * 1000 + ARGV[16] + min(seq, ARGV[17]): the shard's
# base and cap (engage.store.events.EventIds), so that shards never share an id.
# Indexes (KEYS[first..last], engage.store.eventindex) are trimmed by MINID when they are
# streams, on about one append in 32 (chosen by the entry's ms) while sorted sets: queries
# clip to the retention window anyway, and EXPIRE drops an index that gets no new events.
# With a status kind in ARGV[5] (o, i or c), KEYS[2] is the message's status hash: the
# first open (or click) time is set only if absent, the count of that kind goes up.
# With ARGV[8] not empty, KEYS[3..4] are the hour's aggregates (aggregates.UPDATE_FUNCTION).
# A click answered before its append (engage.pendingclicks) has its pending-clicks entry
# id in ARGV[21] and the stream in KEYS[last+2] (ARGV[18..19] '0': no open gate): the
# entry is deleted before anything is stored, and one already gone was appended by
# another finisher: 'dup'. After the SADD: the first write, the one a full Redis refuses
# (a write lets the script's next ones through), so a refused append keeps its entry.
# Every key is in the message's shard (one slot on a Redis Cluster).
# APPEND_LUA is built below from these named parts: the aggregates' function, the append
# up to the aggregates, the call, the rest.
_APPEND_HEAD = """local gate = tonumber(ARGV[13])
local last = #KEYS - gate
if redis.call('SADD', KEYS[last + 1], ARGV[14]) == 0 then return 'dup' end
redis.call('EXPIRE', KEYS[last + 1], ARGV[15])
if ARGV[21] ~= '' and redis.call('XDEL', KEYS[last + 2], ARGV[21]) == 0 then return 'dup' end
if gate == 2 and tonumber(ARGV[18]) > 0
    and not redis.call('SET', KEYS[last + 2], '1', 'NX', 'EX', ARGV[18]) then
  if ARGV[5] ~= '' then
    redis.call('HINCRBY', KEYS[2], 'repeat_opens', 1)
    if tonumber(ARGV[7]) > 0 then redis.call('EXPIRE', KEYS[2], ARGV[7]) end
  end
  return 'repeat'
end
if gate == 2 and ARGV[19] == '1' then return 'limited' end
local id, clock = false, redis.call('TIME')
if ARGV[20] ~= '' and math.abs(tonumber(ARGV[20]) - (clock[1] * 1000 + math.floor(clock[2] / 1000))) < 1000 then
  local latest, ms = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1], tonumber(ARGV[20])
  local dash = latest and string.find(latest[1], '-', 1, true)
  local last_ms = latest and tonumber(string.sub(latest[1], 1, dash - 1))
  if not latest or last_ms < ms
      or (last_ms == ms and tonumber(string.sub(latest[1], dash + 1)) < tonumber(ARGV[17])) then
    id = redis.pcall('XADD', KEYS[1], 'MINID', '~', ARGV[2], ARGV[20] .. '-*', 'e', ARGV[1])
    if type(id) ~= 'string' then id = false end
  end
end
if not id then
  local text = ARGV[1]
  if ARGV[20] ~= '' then text = string.sub(text, 1, -2) .. ',"s":' .. ARGV[20] .. '}' end
  id = redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[2], '*', 'e', text)
end
local dash = string.find(id, '-', 1, true)
local seq = tonumber(string.sub(id, dash + 1))
local score = string.sub(id, 1, dash - 1)
  .. string.format('%03d', tonumber(ARGV[16]) + math.min(seq, tonumber(ARGV[17])))
local trim = seq == 0 and tonumber(string.sub(id, dash - 2, dash - 1)) % 32 == 0
local first = 2
if ARGV[5] ~= '' then
  first = 3
  local new = redis.call('HSETNX', KEYS[2], ARGV[5] == 'c' and 'clicked_at' or 'opened_at', ARGV[6])
  local counts = {o = 'open_count', i = 'initial_open_count', c = 'click_count'}
  local n = redis.call('HINCRBY', KEYS[2], counts[ARGV[5]], 1)
  if tonumber(ARGV[7]) > 0 then redis.call('EXPIRE', KEYS[2], ARGV[7]) end
  if ARGV[8] ~= '' then
    first = 5
"""
_APPEND_TAIL = """
  end
end
for i = first, last do
  indexed(KEYS[i], id, score, ARGV[2], ARGV[3], trim)
  redis.call('EXPIRE', KEYS[i], ARGV[4])
end
return id
"""
APPEND_LUA = INDEX_FUNCTIONS + UPDATE_FUNCTION + _APPEND_HEAD + UPDATE_CALL + _APPEND_TAIL

# One page, newest first, of the union of indexes (KEYS[2..]), assembled next to the
# data: merge by score, skip an id seen twice (one event under two recipients), XRANGE
# each entry, splice in event_id. ARGV: top score, low score, page size, the shard's
# score base and seq cap (as APPEND_LUA's ARGV[16..17]), the first and last stream id of
# low..top (engage.store.eventindex.range_args).
# Returns {score of the last one, 1 if more follow, JSON object, JSON object ...}.
PAGE_LUA = INDEX_FUNCTIONS + """
local lists, pos, count = {}, {}, tonumber(ARGV[3])
for i = 2, #KEYS do
  lists[i - 1] = newest(KEYS[i], ARGV[1], ARGV[2], ARGV[6], ARGV[7], count + 1, ARGV[4], ARGV[5])
  pos[i - 1] = 1
end
local out, last, previous, more = {}, '', nil, 0
while true do
  local best, top = nil, -1
  for i, list in ipairs(lists) do
    local score = list[pos[i] + 1]
    if score and tonumber(score) > top then best, top = i, tonumber(score) end
  end
  if not best then break end
  local id = lists[best][pos[best]]
  pos[best] = pos[best] + 2
  if id ~= previous then
    previous = id
    if #out == count then more = 1 break end
    local entry = redis.call('XRANGE', KEYS[1], id, id)[1]
    if entry then
      local dash = string.find(id, '-', 1, true)
      local seq = tonumber(ARGV[4]) + math.min(tonumber(string.sub(id, dash + 1)), tonumber(ARGV[5]))
      last = string.sub(id, 1, dash - 1) .. string.format('%03d', seq)
      out[#out + 1] = '{"event_id":"' .. last .. '",' .. string.sub(entry[2][2], 2)
    end
  end
end
table.insert(out, 1, more)
table.insert(out, 1, last)
return out
"""

# Several entries by id in one command, as a flat list: id, JSON, id, JSON ...
FETCH_LUA = """
local out = {}
for _, id in ipairs(ARGV) do
  local entry = redis.call('XRANGE', KEYS[1], id, id)[1]
  if entry then
    out[#out + 1] = entry[1]
    out[#out + 1] = entry[2][2]
  end
end
return out
"""
