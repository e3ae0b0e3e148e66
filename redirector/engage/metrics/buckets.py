"""Reading the hourly buckets (engage.store.keys): every shard's (which shards:
engage.store.redisconn.readable_shards) and the folded ones (engage.metrics.fold), by
script calls sent PIPELINE_CALLS per round trip.

An hour's counts are in its folded bucket, in its shards' buckets (until folded, and
any written late), and for an instant in a shard's folding copy (claimed, not yet
merged or not yet deleted). ``sum_hours`` reads all three, so it is right whatever a
fold does meanwhile: (1) the folded buckets, a UTC day per call (a day's are in one
slot), with their marks; (2) each shard's buckets and folding copies, one shard per
call (one slot), CHUNK_HOURS hours each, a copy counted only when its number is above
its shard's mark read in (1) (else (1) counted it); (3) the folded buckets' versions
again. A bucket claimed after (1) is in (2) (bucket and copy are read together), a merge
before (1) is skipped in (2); only a merge *and* the deletion of its copy between (1)
and (2) would be missed, and then (3) sees the version move and the read starts over.
Calls go chunk by chunk, all shards of a chunk together, so each round trip has work for
every master of a cluster; at most PIPELINE_CALLS replies are held at a time.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import groupby, islice
from typing import Any

import redis
from redis.commands.core import Script

from engage.store import keys
from engage.store.events import EventError
from engage.store.redisconn import queue_script, readable_shards
from engage.store.scripts.metrics import SUM_LUA, VERSIONS_LUA

PIPELINE_CALLS = 100
CHUNK_HOURS = 48
TRIES = 3  # reads that met a fold (versions moved) before giving up
Sums = list[tuple[str, dict[bytes, int]]]
Marks = dict[tuple[str, str], dict[str, int]]  # (kind, hour) -> {"#v": 4, "#3": 17 ...}


def run_calls(client: redis.Redis, script: Script,
              calls: Iterable[tuple[Sequence[str], Sequence[Any]]]) -> Iterator[Any]:
    """The replies of ``script`` called with each (keys, args), in order, PIPELINE_CALLS
    calls per round trip. Raises EventError when Redis fails."""
    pending = iter(calls)
    while batch := list(islice(pending, PIPELINE_CALLS)):
        pipe = client.pipeline(transaction=False)
        for names, args in batch:
            queue_script(script, pipe, names, args)
        try:
            replies = pipe.execute()
        except redis.RedisError as exc:
            raise EventError(str(exc)) from exc
        yield from replies


def sum_hours(client: redis.Redis, prefix: str, hours: Sequence[tuple[str, str]],
              kinds: Sequence[str], codes: Sequence[str]) -> Sums:
    """(label, {field: total}) over the buckets of ``kinds`` of ``hours`` ((period label,
    hour name) in time order), fields of ``codes`` only; see the module text. Raises
    EventError when Redis fails or the hours kept being folded while read."""
    script = client.register_script(SUM_LUA)
    days = [list(group) for _, group in groupby(hours, key=lambda item: item[1][:10])]
    for _ in range(TRIES):
        merged: dict[str, dict[bytes, int]] = {}
        marks: Marks = {}
        calls = [_call(day, kinds, lambda kind, hour: [(keys.folded(prefix, kind, hour), "f")])
                 for day in days]
        _sum(client, script, calls, codes, merged, marks)
        calls = [_call(part, kinds, _shard_keys(prefix, shard, marks))
                 for start in range(0, len(hours), CHUNK_HOURS)
                 for part in [hours[start:start + CHUNK_HOURS]]
                 for shard in readable_shards(client, prefix)]
        _sum(client, script, calls, codes, merged, None)
        if _versions(client, prefix, days, kinds) == {key: found.get("#v", 0)
                                                     for key, found in marks.items()}:
            return list(merged.items())
    raise EventError("the hours read were being folded all along: try again")


Call = tuple[list[str], list[tuple[str, str]], list[str], list[str], list[int]]


def _call(hours: Sequence[tuple[str, str]], kinds: Sequence[str], named: Any) -> Call:
    """One SUM_LUA call over ``hours``: (labels, (kind, hour) per key, keys, modes,
    keys per label); ``named(kind, hour)`` gives the (key, mode) pairs of one bucket."""
    labels: list[str] = []
    sizes: list[int] = []
    which: list[tuple[str, str]] = []
    names: list[str] = []
    modes: list[str] = []
    for label, group in groupby(hours, key=lambda item: item[0]):
        before = len(names)
        for _, hour in group:
            for kind in kinds:
                for name, mode in named(kind, hour):
                    which.append((kind, hour))
                    names.append(name)
                    modes.append(mode)
        labels.append(label)
        sizes.append(len(names) - before)
    return labels, which, names, modes, sizes


def _shard_keys(prefix: str, shard: int, marks: Marks) -> Any:
    def named(kind: str, hour: str) -> list[tuple[str, str]]:
        found = [(keys.aggregate(prefix, shard, kind, hour), "b")]
        if shard != keys.LAYOUT1:  # layout 1's buckets are never folded
            seen = marks.get((kind, hour), {}).get(f"#{shard}", 0)
            found.append((keys.folding(prefix, shard, kind, hour), str(seen)))
        return found
    return named


def _sum(client: redis.Redis, script: Script, calls: list[Call], codes: Sequence[str],
         merged: dict[str, dict[bytes, int]], marks: Marks | None) -> None:
    requests = ((names, [",".join(map(str, sizes)), ",".join(modes), *codes])
                for _, _, names, modes, sizes in calls)
    for (labels, which, *_), flat in zip(calls, run_calls(client, script, requests)):
        position = 0
        for label in labels:
            count = int(flat[position])
            into = merged.setdefault(label, {})
            for i in range(position + 1, position + 1 + 2 * count, 2):
                into[flat[i]] = into.get(flat[i], 0) + int(flat[i + 1])
            position += 1 + 2 * count
        if marks is not None:
            for i in range(position + 1, position + 1 + 3 * int(flat[position]), 3):
                mark = flat[i + 1].decode() if isinstance(flat[i + 1], bytes) else flat[i + 1]
                marks.setdefault(which[int(flat[i]) - 1], {})[mark] = int(flat[i + 2])


def _versions(client: redis.Redis, prefix: str, days: list[list[tuple[str, str]]],
              kinds: Sequence[str]) -> dict[tuple[str, str], int]:
    """Each folded bucket's version now (those that exist)."""
    calls = [[(kind, hour) for _, hour in day for kind in kinds] for day in days]
    found: dict[tuple[str, str], int] = {}
    replies = run_calls(client, client.register_script(VERSIONS_LUA),
                        (([keys.folded(prefix, kind, hour) for kind, hour in call], [])
                         for call in calls))
    for call, reply in zip(calls, replies):
        found.update((which, int(value)) for which, value in zip(call, reply) if value)
    return found
