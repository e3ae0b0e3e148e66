"""The metrics' scripts: summing and listing hourly buckets (engage.metrics.api) and
correcting a message's unique flags after a rebuild (engage.metrics.rebuild)."""
from __future__ import annotations

# Sums bucket hashes next to the data: KEYS are the buckets, ARGV[1] how many consecutive
# KEYS make each output group ("24,24,..."), ARGV[2] each key's mode ("b,f,3,..."; empty:
# all "b"), ARGV[3..] the field codes wanted. Modes: "b" a bucket; "f" a folded bucket
# (engage.store.scripts.fold), whose marks are returned too; a number n: a folding copy,
# read only when its sequence number is above n (else it is in the folded bucket already).
# Returns per group: the number of fields, then field, total, field, total ...; then the
# number of marks and (key number, mark, value) for each. A call reads at most
# CHUNK_HOURS hours of buckets, so no call holds Redis for long (~10 ms for 48 hours of
# 20 campaign-domain pairs).
SUM_LUA = """
local wanted, keep, out, marks, modes, k = {}, {}, {}, {}, {}, 1
for mode in string.gmatch(ARGV[2], '[^,]+') do modes[#modes + 1] = mode end
for i = 3, #ARGV do wanted[ARGV[i]] = true end
for size in string.gmatch(ARGV[1], '%d+') do
  local sums, order = {}, {}
  for _ = 1, tonumber(size) do
    local key, mode, flat = KEYS[k], modes[k] or 'b', {}
    if mode == 'b' or mode == 'f' or
        tonumber(redis.call('HGET', key, '#') or '0') > tonumber(mode) then
      flat = redis.call('HGETALL', key)
    end
    for i = 1, #flat, 2 do
      local field = flat[i]
      local wants = keep[field]  -- the same fields recur every hour: decide once
      if wants == nil then
        local bar = string.find(field, '|', 1, true)
        wants = bar ~= nil and wanted[string.sub(field, 1, bar - 1)] == true
        keep[field] = wants
      end
      if wants then
        if not sums[field] then sums[field] = 0 order[#order + 1] = field end
        sums[field] = sums[field] + tonumber(flat[i + 1])
      elseif mode == 'f' and string.byte(field, 1) == 35 then
        marks[#marks + 1] = k marks[#marks + 1] = field marks[#marks + 1] = flat[i + 1]
      end
    end
    k = k + 1
  end
  out[#out + 1] = #order
  for _, field in ipairs(order) do
    out[#out + 1] = field
    out[#out + 1] = sums[field]
  end
end
out[#out + 1] = #marks / 3
for _, item in ipairs(marks) do out[#out + 1] = item end
return out
"""

# KEYS: folded buckets. Returns each one's version (``#v``, '' when absent).
VERSIONS_LUA = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGET', key, '#v') or '' end
return out
"""

# KEYS: buckets (hashes, or with ARGV[1] = 's' sets). Returns every distinct hash field
# without its metric code ("|<c>|<d>"), or every distinct set member.
LIST_LUA = """
local seen, out = {}, {}
for _, key in ipairs(KEYS) do
  local items = ARGV[1] == 's' and redis.call('SMEMBERS', key) or redis.call('HKEYS', key)
  for _, item in ipairs(items) do
    if ARGV[1] ~= 's' then item = string.sub(item, (string.find(item, '|', 1, true) or 0)) end
    if not seen[item] then seen[item] = true out[#out + 1] = item end
  end
end
return out
"""

# Corrects nonprefetched flags. KEYS[1] status hash; ARGV[1] the last event_id replayed,
# then flag, value pairs (value '' = no human event: drop the flag unless a newer event
# set it while we replayed).
FIX_FLAGS_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local changed = 0
for i = 2, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if ARGV[i + 1] ~= '' then
    if current ~= ARGV[i + 1] then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) changed = changed + 1 end
  elseif current and tonumber(current) <= tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[1], ARGV[i]) changed = changed + 1
  end
end
return changed
"""
