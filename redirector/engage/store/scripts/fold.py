"""The scripts that fold an hour's shard buckets into one (engage.metrics.fold) and that
let ``engage metrics rebuild`` replace a folded hour (engage.metrics.rebuild).

The fields starting with ``#`` are the protocol's marks, never counters (a counter's
field is ``code|...``): in a folding bucket ``#`` is its sequence number; in a folded
bucket ``#<shard>`` the last sequence number of that shard merged in and ``#v`` a version
that every change bumps (readers compare it before and after reading the shards)."""
from __future__ import annotations

# Claims one shard's bucket for folding, in the shard's slot. KEYS[1] the bucket,
# KEYS[2] its folding copy, KEYS[3] the shard's fold sequence. A folding copy left by
# an earlier run is taken as it is (the bucket then waits for the next run); otherwise
# the bucket is renamed (its expiry goes along) and numbered from the sequence, so
# later writes start a new bucket. Returns {1 if the bucket exists still, HGETALL of
# the folding copy} ({0, {}}: nothing to fold).
CLAIM_LUA = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {0, {}} end
  redis.call('RENAME', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[2], '#', redis.call('INCR', KEYS[3]))
end
return {redis.call('EXISTS', KEYS[1]), redis.call('HGETALL', KEYS[2])}
"""

# Adds one claimed bucket to the folded one, once: KEYS[1] the folded bucket; ARGV[1]
# the shard, ARGV[2] the claim's sequence number, ARGV[3] the expiry (unix time), then
# field, count pairs. A number not above the shard's mark was merged already: 0.
MERGE_LUA = """
local mark = '#' .. ARGV[1]
if tonumber(redis.call('HGET', KEYS[1], mark) or '0') >= tonumber(ARGV[2]) then return 0 end
for i = 4, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], mark, ARGV[2])
redis.call('HINCRBY', KEYS[1], '#v', 1)
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return 1
"""

# Deletes a folding copy once merged: KEYS[1] the copy, ARGV[1] its sequence number
# (a copy numbered otherwise is a newer claim: kept).
DROP_LUA = """
if redis.call('HGET', KEYS[1], '#') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# A rebuild's reset of one shard, in its slot: KEYS[1..n-1] the buckets and folding
# copies of the rebuilt hours (deleted), KEYS[n] the shard's fold sequence. Returns the
# new sequence number: every claim made before it is older, so once the folded bucket's
# mark holds it, a late merge of such a claim is a no-op.
RESET_LUA = """
for i = 1, #KEYS - 1 do redis.call('DEL', KEYS[i]) end
return redis.call('INCR', KEYS[#KEYS])
"""

# A rebuild's new counters of a folded bucket: KEYS[1]; ARGV[1] the expiry, ARGV[2] the
# number m of (shard, sequence) marks that follow, then field, count pairs. Every
# counter is replaced, marks only rise, the version goes up.
REPLACE_LUA = """
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.byte(field, 1) ~= 35 then redis.call('HDEL', KEYS[1], field) end
end
local m = tonumber(ARGV[2])
for i = 3, 2 + 2 * m, 2 do
  local mark = '#' .. ARGV[i]
  if tonumber(redis.call('HGET', KEYS[1], mark) or '0') < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], mark, ARGV[i + 1])
  end
end
for i = 3 + 2 * m, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HINCRBY', KEYS[1], '#v', 1)
redis.call('EXPIREAT', KEYS[1], ARGV[1])
return 1
"""
