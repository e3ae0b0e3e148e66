"""The click path's script (engage.web.clickpath) and its reply by name."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Optional

# A click's lookup as one script rather than a pipeline of eight commands (redis-py's
# cost is per command: packing, parsing, bookkeeping). Reads first (LinkStore.lookup's
# record and template, the trap check of Judge.click_state); the state the judge and the
# rate limit count with follows, written with redis.pcall: a write Redis refuses (maxmemory
# reached, noeviction; a read-only replica; a failed AOF) comes back as an error value and
# the lookup still answers, so a full Redis still redirects every known link. Replies:
# record, template, SADD, EXPIRE, SCARD, SISMEMBER, INCR, EXPIRE (an error value or not
# asked: false), the bucket's base record, the pending entry's id (false: none), read by
# name through ClickLookup.
# The pending entry (engage.pendingclicks): when ARGV[5] holds the click's raw facts and
# a 302 is likely (the template is there, the count within the limit ARGV[6]), they are
# XADDed with the click state's replies to come (read, not yet written) to the shard's
# pending-clicks stream, so the redirector can answer before it appends the event; the
# append deletes the entry. The XADD is the script's first write: Redis checks maxmemory
# only before a script's first write (any write, even one that changes nothing, lets the
# next ones through), so a full Redis refuses it and leaves no entry: the redirector then
# appends first, and that append is refused as before.
# KEYS: message record or bucket, template, burst set, trap set, pending clicks[, rate-limit
# counter]
# ARGV: the record's field in its bucket ('': a record of its own), burst member, burst
# TTL, address digest, the click's facts ('': no entry), rate limit (0: none)[, counter TTL]
PENDING_CAP = 10000  # entries per shard at most (~300 bytes each): a finisher that never runs
LOOKUP_LUA = """
local record, base = false, false
if ARGV[1] ~= '' then
  local stored = redis.call('HMGET', KEYS[1], ARGV[1], '')
  record, base = stored[1], stored[2]
else
  record = redis.call('GET', KEYS[1])
end
local out = {record, redis.call('GET', KEYS[2]), false, false, false,
             redis.call('SISMEMBER', KEYS[4], ARGV[4]), false, false, base}
local function try(...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err then return false end
  return reply
end
out[10] = false
local limit = tonumber(ARGV[6])
if ARGV[5] ~= '' and out[2] and not (KEYS[6] and limit > 0
    and (tonumber(redis.call('GET', KEYS[6])) or 0) >= limit) then
  local added = 1 - redis.call('SISMEMBER', KEYS[3], ARGV[2])
  local state = added .. ' 1 ' .. (redis.call('SCARD', KEYS[3]) + added) .. ' ' .. out[6]
  out[10] = try('XADD', KEYS[5], 'MAXLEN', '~', PENDING_CAP, '*', 'c', ARGV[5], 's', state)
end
out[3] = try('SADD', KEYS[3], ARGV[2])
out[4] = try('EXPIRE', KEYS[3], ARGV[3])
out[5] = try('SCARD', KEYS[3])
if KEYS[6] then
  out[7] = try('INCR', KEYS[6])
  out[8] = try('EXPIRE', KEYS[6], ARGV[7])
end
return out
""".replace("PENDING_CAP", str(PENDING_CAP))


class ClickState(NamedTuple):
    """The click state's replies, in the order of Judge.click_state's commands (the same
    in LOOKUP_LUA): SADD burst, EXPIRE burst, SCARD burst, SISMEMBER trap. A write Redis
    refused is None."""

    added: Any
    expired: Any
    links: Optional[int]  # links of the message clicked from this network in the burst
    after_trap: Any  # 1: this address hit the message's trap link before

    @classmethod
    def from_reply(cls, replies: Sequence[Any]) -> Optional[ClickState]:
        """The first four replies as a ClickState; None when there are fewer."""
        return cls(*replies[:4]) if len(replies) >= 4 else None


class ClickLookup(NamedTuple):
    """LOOKUP_LUA's reply by name."""

    record: Optional[bytes]  # the message record's JSON
    template: Optional[bytes]  # the template's JSON
    state: tuple[Any, ...]  # the ClickState replies, as LinkStore.lookup's ``also`` returns them
    counted: Optional[int]  # the rate-limit counter after INCR; None: not counted (refused)
    base: Optional[bytes]  # the record's bucket's base record; None: none
    pending: Optional[bytes]  # the pending-clicks entry's id; None: none written

    @classmethod
    def from_reply(cls, reply: Sequence[Any]) -> ClickLookup:
        return cls(reply[0], reply[1], tuple(reply[2:6]), reply[6], reply[8],
                   reply[9] if len(reply) > 9 else None)
