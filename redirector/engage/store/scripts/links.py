"""The link store's script: registering a message (engage.store.links.LinkStore.register)."""
from __future__ import annotations

# The message record only if new, and then its sent count: one script, so a resend of
# the same registration (redis-py retries after a timeout) counts the message once.
# KEYS: template, message record[, sent bucket]; ARGV: record, TTL (0: none)[, field, expiry]
# Returns whether the template is stored already.
REGISTER_LUA = """
local known = redis.call('EXISTS', KEYS[1])
local ttl = tonumber(ARGV[2])
local new
if ttl > 0 then
  if known == 1 then redis.call('EXPIRE', KEYS[1], ttl) end
  new = redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ttl)
else
  new = redis.call('SET', KEYS[2], ARGV[1], 'NX')
end
if new and KEYS[3] then
  redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
  redis.call('EXPIREAT', KEYS[3], ARGV[4])
  if #ARGV > 4 then  -- the recipients' domains, for the metrics' domain lists
    redis.call('SADD', KEYS[4], unpack(ARGV, 5))
    redis.call('EXPIREAT', KEYS[4], ARGV[4])
  end
end
return known
"""
