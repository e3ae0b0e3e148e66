"""What engage stored, read the way a test wants it: over every shard (and layout 1's
names), in time order. The product's own readers are what the tests check; these only
look at the raw keys (engage.store.keys builds every name)."""
from __future__ import annotations

import secrets
import time
from typing import Any, Callable

from engage.store import keys
from engage.store.events import EventLog, score_of
from engage.store.redisconn import connect
from engage.store.tokens import Buckets, b64


def old_key() -> str:
    """A message key as made before buckets (16 characters, its record a key of its own)."""
    return b64(secrets.token_bytes(12))


def spread_key() -> str:
    """A message key of a bucket of its own, so of a random shard: the milter fills a
    bucket (and so one shard) with up to 100 messages in a row, a test that wants its
    few messages over every shard cannot wait for that."""
    return Buckets().new_key()


def key_in_shard(shard: int) -> str:
    """A new message key whose shard is ``shard``."""
    while True:
        key = spread_key()
        if keys.shard_of(key) == shard:
            return key


def pending(client: Any, prefix: str) -> int:
    """Clicks answered whose event is not appended yet (engage.pendingclicks)."""
    pipe = client.pipeline(transaction=False)
    for shard in keys.shard_ids():
        pipe.xlen(keys.pending_clicks(prefix, shard))
    return sum(pipe.execute())


def settled(client: Any, prefix: str, timeout: float = 5.0) -> int:
    """Wait until every click answered has its event appended (a redirector appends it
    just after its 302 is sent, engage.web.answered), ``timeout`` s at most: the clicks
    still pending then."""
    deadline = time.monotonic() + timeout
    while (left := pending(client, prefix)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return left


def settled_for(redirector: Any, timeout: float = 5.0) -> int:
    """``settled`` on a running redirector's Redis and prefix (support.procs.Redirector)."""
    client = connect(redirector.env["ENGAGE_REDIS_URL"])
    try:
        return settled(client, redirector.env.get("ENGAGE_KEY_PREFIX", "engage:"), timeout)
    finally:
        client.close()


def entries(client: Any, prefix: str) -> list[tuple[int, bytes, dict[bytes, bytes]]]:
    """Every stream entry of every shard: (shard, entry id, fields), oldest first (the
    clicks answered settled first)."""
    settled(client, prefix)
    found = []
    for shard in keys.shard_ids(layout1=True):
        for entry_id, fields in client.xrange(keys.events(prefix, shard)):
            found.append((score_of(entry_id, shard), shard, entry_id, fields))
    found.sort(key=lambda item: item[0])
    return [(shard, entry_id, fields) for _, shard, entry_id, fields in found]


def events(client: Any, prefix: str) -> list[dict[str, Any]]:
    """Every stored event, whole (as the events API reads it, without event_id and
    recomputed verdicts), oldest first."""
    log = EventLog(client, prefix)
    found = []
    for shard, entry_id, fields in entries(client, prefix):
        event = log.decoded(shard, [(entry_id, fields)])[0]
        del event["event_id"]
        found.append(event)
    return found


def count(client: Any, prefix: str) -> int:
    """Entries in every shard's stream (the clicks answered settled first)."""
    settled(client, prefix)
    pipe = client.pipeline(transaction=False)
    for shard in keys.shard_ids(layout1=True):
        pipe.xlen(keys.events(prefix, shard))
    return sum(pipe.execute())


def status(client: Any, prefix: str, message_key: str) -> dict[str, str]:
    """The message's status hash, decoded (the clicks answered settled first)."""
    settled(client, prefix)
    raw = client.hgetall(keys.status(prefix, message_key))
    return {name.decode(): value.decode() for name, value in raw.items()}


def family_keys(client: Any, prefix: str, family: str) -> list[bytes]:
    """Every key of one registry family (by name), on whichever shard."""
    return [key for key in client.scan_iter(match=f"{prefix}*", count=1000)
            if (found := keys.family_of(prefix, key.decode())) is not None
            and found.name == family]


def records(client: Any, prefix: str) -> int:
    """Message records stored: in buckets (their fields but the base) and of keys of their own."""
    buckets = family_keys(client, prefix, "message bucket")
    return len(family_keys(client, prefix, "message")) + sum(
        client.hlen(key) - client.hexists(key, "") for key in buckets)


def health_when_full(client: Any, read_health: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``read_health()`` (a /healthz body) once Redis reads full. Redis frees an idle
    client's query buffer a moment after refusing its writes, which can take used_memory
    back under maxmemory: top it up with small writes until one is refused, then read."""
    report = read_health()
    for n in range(5000):
        if report["memory"]["state"] == "full":
            break
        try:
            client.set(f"filler:top:{n}", "x" * 400)
        except Exception:  # OOM: refused, used_memory is past maxmemory again
            report = read_health()
    return report
