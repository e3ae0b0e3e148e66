"""Erasure of one recipient address from Redis: ``engage forget`` and the forget API.

Promises: afterwards no key name and no stored value under the prefix mentions the
address (engage.erasure.scrub says what "mentions" means), except keys of families this module
does not know, which it reports and leaves. Message records and templates are rewritten
in place (same key, same TTL), so every tracked link keeps resolving and redirecting;
events that mention the address are deleted from the stream (XDEL), their index
entries and verdict overrides with them; webhook batches and dead letters lose those
events. Aggregates and per-message status counts stay. Idempotent, and safe while the
milter, redirector and webhook workers run: every rewrite is a compare-and-set, and a
batch whose events are all gone is settled by the worker as "events expired".

Cost: one SCAN of the whole keyspace (no per-message index: message records stay as
small as they are) plus one pass over the events stream, both filtered inside Redis by
Lua scripts in chunks of ``chunk`` keys or entries, so no call holds Redis for long.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from engage.erasure.scrub import Address, filter_body, scrub_batch, scrub_record, scrub_template
from engage.store.events import TYPES, EventLog, index_values, score_of
from engage.store.redisconn import scan_keys
from engage.webhooks.keys import Keys

log = logging.getLogger(__name__)
CHUNK = 1000
ATTEMPTS = 5  # compare-and-set retries of one value changed under our feet

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


@dataclass
class Summary:
    """What one forget removed or rewrote (all zero: nothing to do), and what it read."""

    events: int = 0
    index_entries: int = 0
    index_keys: int = 0
    verdicts: int = 0
    messages: int = 0
    templates: int = 0
    webhook_batches: int = 0
    dead_letters: int = 0
    unknown_keys: list[str] = field(default_factory=list)
    keys_scanned: int = 0
    events_scanned: int = 0
    seconds: float = 0.0

    CHANGES = ("events", "index_entries", "index_keys", "verdicts", "messages", "templates",
               "webhook_batches", "dead_letters")

    @property
    def changed(self) -> bool:
        return any(getattr(self, name) for name in self.CHANGES)

    def as_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, **asdict(self), "seconds": round(self.seconds, 3)}


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


class Forgetter:
    """Erases addresses under one key prefix; the connection is passed in."""

    def __init__(self, client: redis.Redis[bytes], prefix: str = "engage:",
                 chunk: int = CHUNK) -> None:
        self.client, self.prefix, self.chunk = client, prefix, chunk
        self.events = EventLog(client, prefix)
        self.keys = Keys(prefix)
        self._filter = client.register_script(FILTER_LUA)
        self._stream = client.register_script(STREAM_LUA)
        self._set_if = client.register_script(SET_IF_LUA)
        self._batch_if = client.register_script(BATCH_IF_LUA)
        self._dead_if = client.register_script(DEAD_IF_LUA)

    def forget(self, address: Address) -> Summary:
        """Erase ``address``. Raises redis.RedisError when Redis fails (run it again)."""
        started = time.monotonic()
        summary = Summary()
        named = self._records(address, summary)  # first: new events then carry no address
        deleted = self._stream_events(address, summary)
        self._index_keys(address, named, summary)
        self._webhooks(address, deleted, summary)
        summary.seconds = time.monotonic() - started
        log.info("forget: %d events, %d index entries, %d index keys, %d verdicts, "
                 "%d message records, %d templates, %d webhook batches, %d dead letters; "
                 "%d keys and %d events read in %.2f s", summary.events,
                 summary.index_entries, summary.index_keys, summary.verdicts, summary.messages,
                 summary.templates, summary.webhook_batches, summary.dead_letters,
                 summary.keys_scanned, summary.events_scanned, summary.seconds)
        if summary.unknown_keys:
            log.warning("forget: %d keys name the address but belong to no family forget "
                        "knows; left as they are", len(summary.unknown_keys))
        return summary

    # ------------------------------------------------------------ records, templates
    def _scan(self) -> Iterator[list[bytes]]:
        """Every key under the prefix, a chunk at a time (the prefix has no glob characters:
        settings allow letters, digits and :._-{} only)."""
        yield from scan_keys(self.client, f"{self.prefix}*", self.chunk)

    def _records(self, address: Address, summary: Summary) -> list[str]:
        """Rewrite message records and templates that mention the address; the names of
        keys whose name holds it."""
        records = (f"{self.prefix}m:".encode(), f"{self.prefix}t:".encode())
        named: list[str] = []
        for keys in self._scan():
            summary.keys_scanned += len(keys)
            named += [_text(key) for key in keys if address.mentions(key)]
            stored = [key for key in keys if key.startswith(records)]
            if not stored:
                continue
            found = self._filter(keys=stored, args=list(address.needles))
            for i in range(0, len(found), 2):
                key, raw = _text(found[i]), found[i + 1]
                is_record = key.startswith(self.prefix + "m:")
                scrub = scrub_record if is_record else scrub_template
                if self._rewrite(key, raw, scrub, address):
                    if is_record:
                        summary.messages += 1
                    else:
                        summary.templates += 1
        return named

    def _rewrite(self, key: str, raw: bytes | None,
                 scrub: Callable[[bytes, Address], str | None], address: Address) -> bool:
        """Compare-and-set ``scrub(value)`` until it sticks; False when nothing to change."""
        for _ in range(ATTEMPTS):
            if raw is None:
                return False
            new = scrub(raw, address)
            if new is None:
                return False
            if self._set_if(keys=[key], args=[raw, new]):
                return True
            raw = self.client.get(key)
        raise redis.RedisError(f"{key} kept changing while being rewritten")

    # ------------------------------------------------------------ events
    def _stream_events(self, address: Address, summary: Summary) -> set[str]:
        """Delete every event that mentions the address, with its index entries and its
        verdict override; the deleted stream ids. Reads up to the stream's end as it is
        when reached, so events appended meanwhile are looked at too."""
        deleted: set[str] = set()
        last = "-"
        while True:
            reply = self._stream(keys=[self.events.stream],
                                 args=[last, self.chunk, *address.needles])
            if not reply[0]:
                return deleted
            last = _text(reply[0])
            summary.events_scanned += int(reply[1])
            pairs = [(_text(reply[i]), _text(reply[i + 1])) for i in range(2, len(reply), 2)]
            doomed = [(entry_id, raw) for entry_id, raw in pairs if address.mentions(raw)]
            if doomed:
                self._delete_events(doomed, summary)
                deleted.update(entry_id for entry_id, _ in doomed)

    def _delete_events(self, doomed: list[tuple[str, str]], summary: Summary) -> None:
        indexes = [self._index_keys_of(raw) for _, raw in doomed]
        pipe = self.client.pipeline(transaction=False)
        for (entry_id, _), keys in zip(doomed, indexes):
            pipe.xdel(self.events.stream, entry_id)
            for key in keys:
                pipe.zrem(key, entry_id)
            pipe.hdel(f"{self.prefix}verdicts", str(score_of(entry_id)))
        replies = iter(pipe.execute())
        for keys in indexes:
            summary.events += next(replies)
            summary.index_entries += sum(next(replies) for _ in keys)
            summary.verdicts += next(replies)

    def _index_keys_of(self, raw: str) -> list[str]:
        try:
            event = json.loads(raw)
            kind = event["type"]
            pairs = index_values(event)
        except (ValueError, KeyError, TypeError):
            return []  # not an event engage wrote: its stream entry goes, it has no index
        return [self.events.index_key(kind)] + [self.events.index_key(kind, dim, value)
                                                for dim, value in pairs]

    def _index_keys(self, address: Address, named: list[str], summary: Summary) -> None:
        """Drop index keys named after the address (``{p}ei:<type>:r:<address>`` ...);
        report other keys whose name holds it."""
        index_prefix = f"{self.prefix}ei:"
        doomed = {name for name in named if name.startswith(index_prefix)}
        doomed |= {self.events.index_key(kind, "r", address.text) for kind in TYPES}
        summary.index_keys += int(self.client.delete(*sorted(doomed)))
        summary.unknown_keys = sorted(name for name in named if name not in doomed)

    # ------------------------------------------------------------ webhooks
    def _webhooks(self, address: Address, deleted: set[str], summary: Summary) -> None:
        for hook_id in sorted(_text(i) for i in self.client.smembers(self.keys.ids)):
            self._batches(hook_id, address, summary)
        self._dead_letters(address, deleted, summary)

    def _batches(self, hook_id: str, address: Address, summary: Summary) -> None:
        """Queued batches carry stream ids (deleted events are skipped when sent) or, when
        replayed from a dead letter, their whole body: that body loses the events."""
        batches, due = self.keys.batches(hook_id), self.keys.due(hook_id)
        for batch_id, raw in self.client.hgetall(batches).items():
            for _ in range(ATTEMPTS):
                new, _ = scrub_batch(raw, address)
                if new == _text(raw):
                    break
                if self._batch_if(keys=[batches, due], args=[batch_id, raw, new or ""]):
                    summary.webhook_batches += 1
                    break
                raw = self.client.hget(batches, batch_id)
                if raw is None:
                    break

    def _dead_letters(self, address: Address, deleted: set[str], summary: Summary) -> None:
        for entry_id, fields in self.client.xrange(self.keys.dead):
            item = {_text(k): _text(v) for k, v in fields.items()}
            if not any(address.mentions(value) for value in item.values()):
                continue
            replacement = _dead_letter_without(item, address, deleted)
            args: list[Any] = [entry_id]
            for name, value in replacement.items():
                args += [name, value]
            summary.dead_letters += int(self._dead_if(keys=[self.keys.dead], args=args))


def _dead_letter_without(item: dict[str, str], address: Address,
                         deleted: set[str]) -> dict[str, str]:
    """A dead letter's fields without the address's events ({} when none is left)."""
    out = {name: address.cut(value) for name, value in item.items()}
    body = item.get("body", "")
    try:
        out["body"], kept, _ = filter_body(body, address)
    except ValueError:  # not JSON: nothing of it can be sent without the address
        return {}
    if kept == 0:
        return {}
    out["size"] = str(kept)
    out["ids"] = " ".join(i for i in item.get("ids", "").split() if i not in deleted)
    return out


def address_from_json(body: bytes) -> Address:
    """The address of a forget API request ``{"recipient": "<address>"}``; ValueError
    with the reason otherwise."""
    try:
        request = json.loads(body)
    except ValueError:
        raise ValueError('the body must be JSON: {"recipient": "<address>"}') from None
    recipient = request.get("recipient") if isinstance(request, dict) else None
    if not isinstance(recipient, str):
        raise ValueError('"recipient" (a string) is required')
    return Address.parse(recipient)
