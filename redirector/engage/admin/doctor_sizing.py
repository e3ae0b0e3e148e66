"""What ``engage doctor``'s capacity check measures (engage.admin.doctor_capacity): the
message and event rates of the last 24 hours, from the hourly aggregates of every shard
and of layout 1; what one message and one event cost in memory, from MEMORY USAGE on a
sample; and, on a Redis Cluster, which master holds which shards and how much.

Bounded whatever the keyspace: per master one SCAN of at most SCAN_BUDGET keys (a random
sample: SCAN walks the hash table, not the names in order) and MEMORY USAGE on at most
SAMPLE keys of each family; the event streams (25) and the 24 hours' aggregate keys are
read directly. A sample that covers a whole master is exact there.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from engage.store import aggregates, keys
from engage.store.redisconn import is_cluster, shard_masters

SCAN_BUDGET = 5000  # keys looked at per master
SAMPLE = 200  # MEMORY USAGE calls per family per master
HOURS = 24
CHUNK = 400  # commands per pipeline
# kept for [redis] link_retention_days
LINK_FAMILIES = ("message bucket", "message", "status", "template")
EVENT_FAMILIES = ("event index", "event subset index", "event index before 2026-12",
                  "verdict overrides")  # with the stream
EVENT_CODES = (b"r", b"c")  # every open and initial open counts r, every click c


@dataclass(frozen=True)
class Rates:
    messages: int  # sent in the last 24 hourly buckets (the current one included)
    events: int  # opens, initial opens and clicks counted in them
    metrics_bytes: int  # memory of those hours' aggregates: a day of metrics


@dataclass
class Costs:
    messages: float = 0.0  # message records (estimated from the sample)
    link_bytes: float = 0.0  # their records, status hashes and templates
    events: int = 0  # entries in the event streams
    event_bytes: float = 0.0  # the streams, their indexes and verdict overrides
    sampled: int = 0  # keys whose MEMORY USAGE was read

    @property
    def per_message(self) -> float | None:
        return self.link_bytes / self.messages if self.messages else None

    @property
    def per_event(self) -> float | None:
        return self.event_bytes / self.events if self.events else None


@dataclass
class Master:
    address: str
    shards: list[int] = field(default_factory=list)  # keys.LAYOUT1 among them: layout 1's slot
    used: int = 0  # used_memory
    dataset: int = 0  # used_memory_dataset: the keys, not the server's own overhead
    keys: int = 0
    maxmemory: int = 0
    system: int = 0  # total_system_memory: the host's


def hours(now: float) -> list[str]:
    return [aggregates.hour_of(now - aggregates.HOUR * n) for n in range(HOURS)]


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def rates(client: Any, prefix: str, now: float) -> Rates:
    """Sent messages and events of the last 24 hours, summed over every shard and layout 1."""
    names = [(kind, keys.aggregate(prefix, shard, kind, hour)) for hour in hours(now)
             for shard in keys.shard_ids(layout1=True) for kind in ("s", "e", "l", "d")]
    messages = events = size = 0
    for chunk in _chunks(names):
        pipe = client.pipeline(transaction=False)
        for kind, name in chunk:
            pipe.memory_usage(name)
            if kind == "s":
                pipe.hvals(name)
            elif kind == "e":
                pipe.hgetall(name)
        replies = iter(pipe.execute())
        for kind, _ in chunk:
            size += next(replies) or 0
            if kind == "s":
                messages += sum(int(value) for value in next(replies))
            elif kind == "e":
                events += sum(int(value) for name, value in next(replies).items()
                              if name.split(b"|", 1)[0] in EVENT_CODES)
    return Rates(messages, events, size)


def masters(client: Any) -> list[Any]:
    """A connection to each master (the server itself when it is not a cluster)."""
    if not is_cluster(client):
        return [client]
    return [client.get_redis_connection(node) for node in client.get_primaries()]


def sample(node: Any, budget: int = SCAN_BUDGET) -> tuple[list[str], bool]:
    """Up to ``budget`` key names of one master (engage's and others), and whether they
    are all its keys (the SCAN came round)."""
    seen: list[str] = []
    cursor = 0
    while True:
        cursor, found = node.scan(cursor, count=min(1000, budget))
        seen += [name.decode("utf-8", "replace") for name in found]
        if cursor == 0:
            return seen, True
        if len(seen) >= budget:
            return seen, False


def costs(client: Any, prefix: str, budget: int = SCAN_BUDGET, per_family: int = SAMPLE) -> Costs:
    """Memory of the link and event families, estimated master by master from a sample,
    and of the event streams, read whole."""
    found = Costs()
    for node in masters(client):
        names, complete = sample(node, budget)
        scale = 1.0 if complete or not names else int(node.dbsize()) / len(names)
        families: dict[str, list[str]] = {}
        for name in names:
            found_in = keys.family_of(prefix, name)
            if found_in and found_in.name in LINK_FAMILIES + EVENT_FAMILIES:
                families.setdefault(found_in.name, []).append(name)
        for family, members in families.items():
            measured = _usage(node, members[:per_family])
            found.sampled += len(measured)
            estimate = len(members) * scale * sum(measured) / max(len(measured), 1)
            if family in LINK_FAMILIES:
                found.link_bytes += estimate
            else:
                found.event_bytes += estimate
            if family == "message":
                found.messages += len(members) * scale
            elif family == "message bucket":  # up to 100 records each, and their base
                held = _records(node, members[:per_family])
                found.messages += len(members) * scale * sum(held) / max(len(held), 1)
    streams = [keys.events(prefix, shard) for shard in keys.shard_ids(layout1=True)]
    pipe = client.pipeline(transaction=False)
    for name in streams:
        pipe.memory_usage(name)
        pipe.xlen(name)
    replies = pipe.execute()
    found.event_bytes += sum(size or 0 for size in replies[::2])
    found.events = sum(int(length) for length in replies[1::2])
    return found


def _records(node: Any, names: list[str]) -> list[int]:
    """Records in each bucket: its fields but the base (0 for a bucket gone since)."""
    replies = _each(node, names, lambda pipe, name: (pipe.hlen(name), pipe.hexists(name, "")))
    return [int(size) - int(base) for size, base in zip(replies[::2], replies[1::2])]


def _usage(node: Any, names: list[str]) -> list[int]:
    """MEMORY USAGE of each (0 for a key gone since the SCAN)."""
    return [size or 0 for size in _each(node, names, lambda pipe, name: pipe.memory_usage(name))]


def _each(node: Any, names: list[str], queue: Callable[[Any, str], Any]) -> list[Any]:
    """The replies to ``queue``'s commands for every name, CHUNK names per round trip."""
    replies: list[Any] = []
    for chunk in _chunks(names):
        pipe = node.pipeline(transaction=False)
        for name in chunk:
            queue(pipe, name)
        replies += pipe.execute()
    return replies


def placement(client: Any, prefix: str) -> list[Master]:
    """Each master with the shards whose slot it serves and its memory and keys."""
    if not is_cluster(client):
        found = [Master("this Redis", list(keys.shard_ids(layout1=True)))]
        nodes = [client]
    else:
        held = shard_masters(client, prefix, keys.shard_ids(layout1=True))
        found = [Master(f"{node.host}:{node.port}", shards) for node, shards in held]
        nodes = [client.get_redis_connection(node) for node, _ in held]
        serving = {node.name for node, _ in held}
        for node in client.get_primaries():  # a master that serves no shard holds none
            if node.name not in serving:
                found.append(Master(f"{node.host}:{node.port}"))
                nodes.append(client.get_redis_connection(node))
    for master, node in zip(found, nodes):
        info = node.info("memory")
        master.used, master.dataset = int(info.get("used_memory", 0)), int(info.get("used_memory_dataset", 0))
        master.maxmemory, master.keys = int(info.get("maxmemory", 0)), int(node.dbsize())
        master.system = int(info.get("total_system_memory", 0))
    return found
