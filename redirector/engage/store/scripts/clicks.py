"""The click path's script (engage.web.clickpath) and its reply by name."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Optional

# A click's lookup as one script rather than a pipeline of eight commands (redis-py's
# cost is per command: packing, parsing, bookkeeping). Reads first (LinkStore.lookup's
# two GETs, the trap check of Judge.click_state); the state the judge and the rate limit
# count with follows, written with redis.pcall: a write Redis refuses (maxmemory reached,
# noeviction; a read-only replica; a failed AOF) comes back as an error value and the
# lookup still answers, so a full Redis still redirects every known link. Replies:
# record, template, SADD, EXPIRE, SCARD, SISMEMBER[, INCR, EXPIRE] (an error value: nil),
# read by name through ClickLookup.
# KEYS: message record, template, burst set, trap set[, rate-limit counter]
# ARGV: burst member, burst TTL, address digest[, counter TTL]
LOOKUP_LUA = """
local out = {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]), false, false, false,
             redis.call('SISMEMBER', KEYS[4], ARGV[3])}
local function try(...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err then return false end
  return reply
end
out[3] = try('SADD', KEYS[3], ARGV[1])
out[4] = try('EXPIRE', KEYS[3], ARGV[2])
out[5] = try('SCARD', KEYS[3])
if KEYS[5] then
  out[7] = try('INCR', KEYS[5])
  out[8] = try('EXPIRE', KEYS[5], ARGV[4])
end
return out
"""


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

    @classmethod
    def from_reply(cls, reply: Sequence[Any]) -> ClickLookup:
        return cls(reply[0], reply[1], tuple(reply[2:6]), reply[6] if len(reply) > 6 else None)
