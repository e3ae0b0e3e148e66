"""Rebuild the hourly aggregates of a window from the raw events (``engage metrics rebuild``).

For when verdicts were recomputed. Shard by shard (engage.store.keys; layout 1 is one
more), as the append script saw it: the shard's retained stream ``{p}{tag}events`` is
replayed in order with the overrides of its ``{p}{tag}verdicts`` applied (field = public
event_id, value = the new ``engage`` object). A message's events, status and counts are
all in its shard, so each shard is replayed alone; the replays' counts are added up and
each hour of the window is then written as its folded bucket (engage.metrics.fold: a
folded hour holds every shard's counts, so every shard is always rebuilt): the shards'
engagement and link buckets and folding copies of the hour deleted and the shards' fold
numbers moved on (one script per shard, in its slot), then the folded buckets replaced
(one script), so a fold of a claim made before cannot add it again. The fold is paused
meanwhile. Sent counts are not in the events and stay as they are. The nonprefetched
flags of messages with an overridden event are corrected too, so later events count right.
Limits: a window older than a retained stream cannot be rebuilt (refused, not guessed);
layout 1 without a stream keeps its buckets as they are, a layout-2 shard without one
(no events) gives no counts; the current hour is left to the live path; whether a
message was opened or clicked before the oldest retained event is told by its status
hash (counts and flag event_ids); a count written to a past hour of the window between
its shard's replay and the write is dropped (as before folding: a replay is a snapshot).
The arithmetic of the replay is engage.metrics.replay's; this module reads and writes Redis.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

import redis

from engage.metrics import fold
from engage.metrics.buckets import run_calls
from engage.metrics.replay import Replay, flags_before, is_flag
from engage.store import aggregates, keys
from engage.store.eventforms import timestamp_of
from engage.store.events import EventLog, score_of
from engage.store.redisconn import readable_shards, stream_entries
from engage.store.scripts.fold import REPLACE_LUA, RESET_LUA
from engage.store.scripts.metrics import FIX_FLAGS_LUA

log = logging.getLogger(__name__)

HOUR = aggregates.HOUR
CHUNK = 2000
PAUSE = 600  # seconds the fold waits, renewed per shard (engage.metrics.fold.pause)


class RebuildError(Exception):
    """The window cannot be rebuilt (the message says why)."""


@dataclass
class Report:
    first_hour: str = ""
    last_hour: str = ""
    hours: int = 0
    events: int = 0
    overrides: int = 0
    flags_fixed: int = 0
    shards: int = 0  # rebuilt; shards without a stream are left as they are


def rebuild(client: redis.Redis, prefix: str, start: int, end: int, retention_days: int,
            now: float) -> Report:
    """Replace the aggregates of the whole hours in [start, end) (every shard and layout
    1); see the module text. Every shard's stream is checked before anything is
    written, so a refused window changes nothing."""
    end = min(end // HOUR * HOUR, int(now) // HOUR * HOUR)
    start = start // HOUR * HOUR
    bounds = {shard: found for shard in readable_shards(client, prefix)
              if (found := _stream_bounds(client, keys.events(prefix, shard), shard))}
    if not bounds:
        raise RebuildError("there are no raw events to rebuild from")
    complete = max(found[2] for found in bounds.values())
    if start < complete:
        raise RebuildError(f"raw events before {aggregates.hour_of(complete)}:00Z are no "
                           "longer kept ([events] retention_days): that part cannot be "
                           "rebuilt; start the window there or later")
    if start >= end:
        raise RebuildError("nothing to rebuild: the window holds no whole hour before the "
                           "current one")
    report = Report(aggregates.hour_of(start), aggregates.hour_of(end - HOUR),
                    (end - start) // HOUR)
    totals: dict[tuple[str, str], Counter[str]] = {}
    fold.pause(client, prefix, PAUSE)
    try:
        for shard, (oldest, last, _) in bounds.items():
            fold.pause(client, prefix, PAUSE)
            replay = Replay(start, end)
            _rebuild_shard(client, prefix, shard, replay, oldest, last, report)
            for bucket, counts in replay.buckets.items():
                totals.setdefault(bucket, Counter()).update(counts)
            report.shards += 1
        _write(client, prefix, start, end, set(bounds), totals, retention_days)
    finally:
        fold.resume(client, prefix)
    return report


def _rebuild_shard(client: redis.Redis, prefix: str, shard: int, replay: Replay, oldest: int,
                   last: bytes, report: Report) -> None:
    """One shard: its stream replayed with its overrides into ``replay``, its flags fixed."""
    overridden: set[str] = set()
    log = EventLog(client, prefix)
    for entries in _chunks(client, keys.events(prefix, shard), last):
        overrides = client.hmget(keys.verdicts(prefix, shard),
                                 [str(score_of(i, shard)) for i, _ in entries])
        for (entry_id, _), event, override in zip(entries, log.decoded(shard, entries),
                                                   overrides):
            event.pop("event_id", None)  # as stored: replay counts what the stream holds
            if override and _apply(event, override):
                report.overrides += 1
                overridden.add(str(event.get("transmission_id") or ""))
            replay.add(event, score_of(entry_id, shard))
            report.events += 1
    statuses = _statuses(client, prefix, shard, replay.wanted_status() | (overridden - {""}))
    replay.finish({message: flags_before(status, replay.messages[message], oldest)
                   for message, status in statuses.items() if message in replay.messages})
    report.flags_fixed += _fix_flags(client, prefix, shard, replay, overridden, statuses,
                                     oldest, score_of(last, shard))


def _stream_bounds(client: redis.Redis, stream: str,
                   shard: int) -> tuple[int, bytes, int] | None:
    """(event_id of the oldest retained event, stream id of the newest, start of the first
    whole hour the stream holds completely: 0 if it was never trimmed), None when the
    stream is missing or empty."""
    try:
        info = client.xinfo_stream(stream)
    except redis.ResponseError:
        return None
    first = info.get("first-entry")
    if not first:
        return None
    complete = 0
    added = info.get("entries-added")  # Redis >= 7; older ones: assume trimmed
    if added is None or added > info["length"]:
        stamp = timestamp_of(first[0], first[1][b"e"])
        complete = aggregates.hour_start(stamp[:13]) + HOUR
    return score_of(first[0], shard), info["last-entry"][0], complete


def _chunks(client: redis.Redis, stream: str,
            last: bytes) -> Iterable[list[tuple[bytes, dict[bytes, bytes]]]]:
    low: Any = "-"
    while True:
        entries = stream_entries(client.xrange(stream, low, last, count=CHUNK))
        if not entries:
            return
        yield entries
        if entries[-1][0] == last or len(entries) < CHUNK:
            return
        low = b"(" + entries[-1][0]


def _apply(event: dict[str, Any], override: bytes | str) -> bool:
    try:
        engage = json.loads(override)
    except ValueError:
        log.warning("verdict override for event %s is not JSON: ignored", event.get("event_id"))
        return False
    if not isinstance(engage, dict):
        return False
    event["engage"] = engage
    return True


def _statuses(client: redis.Redis, prefix: str, shard: int,
              messages: Iterable[str]) -> dict[str, dict[bytes, bytes]]:
    wanted = sorted(messages)
    found: dict[str, dict[bytes, bytes]] = {}
    for offset in range(0, len(wanted), CHUNK):
        part = wanted[offset:offset + CHUNK]
        pipe = client.pipeline(transaction=False)
        for message in part:
            pipe.hgetall(keys.status(prefix, message, shard))
        found.update(zip(part, pipe.execute()))
    return found


def _write(client: redis.Redis, prefix: str, start: int, end: int, shards: set[int],
           totals: dict[tuple[str, str], Counter[str]], retention_days: int) -> None:
    """Hour by hour: the engagement and link buckets of the rebuilt shards deleted (and
    their folding copies), each shard's fold sequence moved on (RESET_LUA), then the
    hour's totals written as its folded buckets (REPLACE_LUA), marked with those
    numbers so that a fold of an older claim cannot add it again."""
    reset = client.register_script(RESET_LUA)
    replace = client.register_script(REPLACE_LUA)
    order = sorted(shards - {keys.LAYOUT1})
    for hour_time in range(start, end, HOUR):
        hour = aggregates.hour_of(hour_time)
        if keys.LAYOUT1 in shards:  # never folded: its buckets only (each in its own slot)
            for kind in ("e", "l"):
                client.delete(keys.aggregate(prefix, keys.LAYOUT1, kind, hour))
        calls: list[tuple[list[str], list[Any]]] = [
            ([*(name(prefix, shard, kind, hour) for name in (keys.aggregate, keys.folding)
                for kind in ("e", "l")), keys.fold_seq(prefix, shard)], []) for shard in order]
        numbers = list(run_calls(client, reset, calls))
        marks = [item for shard, number in zip(order, numbers) for item in (shard, number)]
        expiry = aggregates.expires_at(hour, retention_days) if retention_days else 1
        writes = [([keys.folded(prefix, kind, hour)],
                   [expiry, len(marks) // 2, *marks,
                    *(item for pair in totals.get((kind, hour), Counter()).items()
                      for item in pair)]) for kind in ("e", "l")]
        list(run_calls(client, replace, writes))


def _fix_flags(client: redis.Redis, prefix: str, shard: int, replay: Replay,
               overridden: set[str], statuses: Mapping[str, Mapping[bytes, bytes]],
               oldest: int, last: int) -> int:
    """Nonprefetched flags of messages with an overridden event, as the replay decided."""
    script = client.register_script(FIX_FLAGS_LUA)
    fixed = 0
    for message in sorted(overridden - {""}):
        if message not in replay.messages:
            continue
        firsts = replay.messages[message].firsts
        current = {raw.decode("ascii", "replace"): value
                   for raw, value in statuses.get(message, {}).items()}
        names = {name for name in set(firsts) | set(current)
                 if is_flag(name) and name[0] == "h"}
        names -= {name for name in current  # set before the replayed stream: kept
                  if current[name].isdigit() and int(current[name]) < oldest}
        args: list[Any] = [last]
        for name in sorted(names):
            args += [name, str(firsts[name].score) if name in firsts else ""]
        if len(args) > 1:
            fixed += int(script(keys=[keys.status(prefix, message, shard)], args=args))
    return fixed


def parse_hour(text: str) -> Optional[int]:
    """``YYYY-MM-DDTHH[:MM]`` (UTC) -> unix time of that hour, None when malformed."""
    try:
        return aggregates.hour_start(text.strip()[:13]) if len(text.strip()) >= 13 else None
    except ValueError:
        return None
