"""The two Lua scripts of ``engage migrate-layout`` (engage.admin.migrate_moves): one runs
in the source key's slot, the other in the destination's, so that each works on a Redis
Cluster where layout 1 and the shards live in different slots."""
from __future__ import annotations

# Delete KEYS[1] only if it still holds ARGV[1] (GET, or DUMP when ARGV[2] is 'dump'):
# a source changed since it was copied (engage forget rewrote it) stays for the next run.
# 1 deleted, 0 changed (kept), -1 gone already (expired or deleted).
DELETE_IF_SAME_LUA = """
local now
if ARGV[2] == 'dump' then now = redis.call('DUMP', KEYS[1]) else now = redis.call('GET', KEYS[1]) end
if not now then return -1 end
if now ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

# The source of staging copy KEYS[1] is deleted (ARGV[1] '1'): rename it KEYS[2], which is
# merged whatever happens next; else drop it. (A copy that expired meanwhile is just gone;
# and redis-py's cluster pipeline refuses a plain RENAME.)
COMMIT_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '1' then redis.call('RENAME', KEYS[1], KEYS[2]) else redis.call('DEL', KEYS[1]) end
return 1
"""

# Merge the staging copy KEYS[1] into KEYS[2] (same slot), one chunk of ARGV[3] fields or
# members from cursor ARGV[2]; every field merged is removed from the staging copy in
# this same script, so a crash between two chunks merges nothing twice. ARGV[1]: 'set'
# (members added), 'counters' (integer fields added) or 'status' (the status hash: its
# counts added, first times and flags -- event ids -- kept at the earlier value). When
# KEYS[2] does not exist the staging copy is renamed to it. The longer life of the two is
# kept (no expiry beats any). Returns {next cursor, fields or members left}.
MERGE_LUA = """
local staging, dest, mode = KEYS[1], KEYS[2], ARGV[1]
if redis.call('EXISTS', staging) == 0 then return {'0', 0} end
if redis.call('EXISTS', dest) == 0 then
  redis.call('RENAME', staging, dest)
  return {'0', 0}
end
local left, kept = redis.call('PTTL', staging), redis.call('PTTL', dest)
if kept >= 0 then
  if left == -1 then redis.call('PERSIST', dest)
  elseif left > kept then redis.call('PEXPIRE', dest, left) end
end
local counts = {open_count = 1, initial_open_count = 1, click_count = 1, repeat_opens = 1}
local function earlier(a, b)
  local x, y = tonumber(a), tonumber(b)
  if x and y then return x < y end
  return a < b
end
if mode == 'set' then
  local reply = redis.call('SSCAN', staging, ARGV[2], 'COUNT', ARGV[3])
  if #reply[2] > 0 then
    redis.call('SADD', dest, unpack(reply[2]))
    redis.call('SREM', staging, unpack(reply[2]))
  end
  return {reply[1], redis.call('SCARD', staging)}
end
local reply = redis.call('HSCAN', staging, ARGV[2], 'COUNT', ARGV[3])
local items = reply[2]
for i = 1, #items, 2 do
  local field, value = items[i], items[i + 1]
  if (mode == 'counters' or counts[field]) and string.match(value, '^-?%d+$') then
    redis.call('HINCRBY', dest, field, value)
  else
    local current = redis.call('HGET', dest, field)
    if not current or earlier(value, current) then redis.call('HSET', dest, field, value) end
  end
  redis.call('HDEL', staging, field)
end
return {reply[1], redis.call('HLEN', staging)}
"""
