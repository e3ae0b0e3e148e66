"""The link store's script: registering a message (engage.store.links.LinkStore.register)."""
from __future__ import annotations

# The message record only if new, and then its sent count: one script, so a resend of
# the same registration (redis-py retries after a timeout) counts the message once.
# Every key in the message's shard (engage.store.keys).
# A bucketed record (ARGV[4], its field, not empty) goes into the bucket hash KEYS[2],
# with its base (ARGV[5], when stored against one) under "" unless the bucket has it: every
# record of a bucket sends the same base, so whichever lands first writes it. The bucket
# lives as long as its last record. A record of the old form is a key of its own.
# KEYS: template, message record or bucket[, sent bucket, domains set]
# ARGV: record, links' TTL (0: none), record's TTL (0: none), field, base[, sent field,
#       expiry, domains...]
# Returns whether the template is stored already.
REGISTER_LUA = """
local known = redis.call('EXISTS', KEYS[1])
local ttl, record_ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local new
if ttl > 0 and known == 1 then redis.call('EXPIRE', KEYS[1], ttl) end
if ARGV[4] ~= '' then
  new = redis.call('HSETNX', KEYS[2], ARGV[4], ARGV[1]) == 1
  if ARGV[5] ~= '' then redis.call('HSETNX', KEYS[2], '', ARGV[5]) end
  if new and record_ttl > 0 then redis.call('EXPIRE', KEYS[2], record_ttl) end
elseif record_ttl > 0 then
  new = redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', record_ttl)
else
  new = redis.call('SET', KEYS[2], ARGV[1], 'NX')
end
if new and KEYS[3] then
  redis.call('HINCRBY', KEYS[3], ARGV[6], 1)
  redis.call('EXPIREAT', KEYS[3], ARGV[7])
  if #ARGV > 7 then  -- the recipients' domains, for the metrics' domain lists
    redis.call('SADD', KEYS[4], unpack(ARGV, 8))
    redis.call('EXPIREAT', KEYS[4], ARGV[7])
  end
end
return known
"""
