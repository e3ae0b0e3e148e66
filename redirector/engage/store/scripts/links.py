"""The link store's script: registering a message (engage.store.links.LinkStore.register)."""
from __future__ import annotations

# The message record only if new, and then its sent count: one script, so a resend of
# the same registration (redis-py retries after a timeout) counts the message once.
# Every key in the message's shard (engage.store.keys).
# KEYS: template, message record[, sent bucket, domains set]
# ARGV: record, links' TTL (0: none), record's TTL (0: none)[, field, expiry, domains...]
# Returns whether the template is stored already.
REGISTER_LUA = """
local known = redis.call('EXISTS', KEYS[1])
local ttl, record_ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local new
if ttl > 0 and known == 1 then redis.call('EXPIRE', KEYS[1], ttl) end
if record_ttl > 0 then
  new = redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', record_ttl)
else
  new = redis.call('SET', KEYS[2], ARGV[1], 'NX')
end
if new and KEYS[3] then
  redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
  redis.call('EXPIREAT', KEYS[3], ARGV[5])
  if #ARGV > 5 then  -- the recipients' domains, for the metrics' domain lists
    redis.call('SADD', KEYS[4], unpack(ARGV, 6))
    redis.call('EXPIREAT', KEYS[4], ARGV[5])
  end
end
return known
"""
