"""``engage doctor``'s capacity check: from the message and event rates of the last 24
hours and the measured memory of each (engage.admin.doctor_sizing), the memory the
configured retention needs ([redis] link_retention_days, [events] retention_days,
[metrics] retention_days), against maxmemory and its events high-water mark; on a Redis
Cluster, which master holds which shards and how much, flagging one that holds more
than 15% above an equal share of the keys or of the data.

A forecast, so a WARN at most: when the need passes the high-water mark (above it the
redirector records no events) or, with links kept forever, when their growth gets there
within HORIZON_DAYS. Redis not answering is the redis check's error, a skip here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from engage import settings as config
from engage.admin import doctor_sizing as sizing
from engage.admin.doctor_findings import OK, SKIP, WARN, Finding, Options
from engage.store import keys
from engage.store.redisconn import connect, hash_tag

HORIZON_DAYS = 90
IMBALANCE = 1.15  # a master above 115% of an equal share is flagged
MIN_KEYS = 1000  # below it, shares say nothing


@dataclass(frozen=True)
class Need:
    links_per_day: float  # bytes of link data each day of mail adds
    links: float | None  # for [redis] link_retention_days; None: kept forever
    events: float  # for [events] retention_days
    metrics: float  # for [metrics] retention_days

    @property
    def bounded(self) -> float:
        return (self.links or 0.0) + self.events + self.metrics


def need(rates: sizing.Rates, costs: sizing.Costs, settings: config.Settings) -> Need:
    per_day = rates.messages * (costs.per_message or 0.0)
    return Need(per_day, per_day * settings.link_retention_days if settings.link_retention_days else None,
                rates.events * (costs.per_event or 0.0) * settings.events_retention_days,
                float(rates.metrics_bytes * settings.metrics_retention_days))


def size(count: float) -> str:
    """Bytes for people (decimal units, as the issue and the benchmarks give them)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count:.0f} B"


def check_capacity(settings: config.Settings, options: Options) -> list[Finding]:
    client = connect(settings.redis_url, timeout=options.timeout)
    try:
        rates = sizing.rates(client, settings.key_prefix, time.time())
        costs = sizing.costs(client, settings.key_prefix)
        masters = sizing.placement(client, settings.key_prefix)
    except redis.RedisError as exc:
        return [Finding(SKIP, "capacity", f"not measured: Redis does not answer ({exc})")]
    finally:
        client.close()
    return report(rates, costs, masters, settings)


def report(rates: sizing.Rates, costs: sizing.Costs, masters: list[sizing.Master],
           settings: config.Settings) -> list[Finding]:
    needed = need(rates, costs, settings)
    findings = [observed(rates, costs), retention(needed, masters, settings)]
    if len(masters) > 1:
        findings += [spread(master, masters, needed, settings) for master in masters]
    return findings


def observed(rates: sizing.Rates, costs: sizing.Costs) -> Finding:
    message = (f"{size(costs.per_message)} per message (its record, status and template share)"
               if costs.per_message is not None else "no message records to measure")
    event = (f"{size(costs.per_event)} per event (stream entry, index entries, verdict "
             f"overrides; over {costs.events} stored events)" if costs.per_event is not None
             else "no stored events to measure")
    return Finding(OK, "capacity", f"last 24 h: {rates.messages} messages sent, {rates.events} "
                   "opens and clicks (the hourly aggregates of every shard and of layout 1); "
                   f"measured {message} and {event}, MEMORY USAGE of {costs.sampled} sampled keys")


def retention(needed: Need, masters: list[sizing.Master], settings: config.Settings) -> Finding:
    links = (f"links {size(needed.links)} ({settings.link_retention_days} days of [redis] "
             "link_retention_days)" if needed.links is not None else
             f"links grow {size(needed.links_per_day)} a day, kept forever ([redis] "
             "link_retention_days = 0)")
    text = (f"the configured retention needs about {size(needed.bounded)}"
            + (" plus the links' growth" if needed.links is None else "") + f": {links}; events "
            f"{size(needed.events)} ([events] retention_days {settings.events_retention_days}); "
            f"metrics {size(needed.metrics)} ([metrics] retention_days "
            f"{settings.metrics_retention_days})")
    limit = sum(m.maxmemory for m in masters) if all(m.maxmemory for m in masters) else 0
    if not limit:
        room = sum({m.address.rpartition(":")[0]: m.system for m in masters}.values())  # per host
        return Finding(WARN if needed.bounded > room else OK, "capacity", f"{text}; no maxmemory: "
                       f"Redis grows into the memory of its host{'s' if len(masters) > 1 else ''} "
                       f"({size(room)})")
    mark = limit * settings.events_high_water
    text += (f"; maxmemory {size(limit)}, events stop above {size(mark)} ([redis] "
             f"events_high_water {settings.events_high_water:.0%})")
    if needed.bounded > mark:
        return Finding(WARN, "capacity", f"{text}: more than Redis may hold, so events stop "
                       "being recorded and then the milter tempfails tracked mail. Raise "
                       "maxmemory (or add masters) or shorten a retention")
    used = sum(m.used for m in masters)
    if needed.links is None and needed.links_per_day:
        days = max(0.0, mark - max(used, needed.bounded)) / needed.links_per_day
        text += f"; at today's rate the links reach the high-water mark in about {days:.0f} days"
        if days < HORIZON_DAYS:
            return Finding(WARN, "capacity", f"{text}: set [redis] link_retention_days or raise "
                           "maxmemory (or add masters) before then")
    return Finding(OK, "capacity", text)


def spread(master: sizing.Master, masters: list[sizing.Master], needed: Need,
           settings: config.Settings) -> Finding:
    total_keys = sum(m.keys for m in masters) or 1
    total_data = sum(m.dataset for m in masters) or 1
    equal = 1 / len(masters)
    shards = [s for s in master.shards if s != keys.LAYOUT1]
    held = (f"shards {ranges(shards)} ({len(shards)} of {keys.SHARDS})" if shards else "no shard")
    text = (f"{master.address} holds {held}{' and layout 1' if keys.LAYOUT1 in master.shards else ''}:"
            f" {size(master.used)} used, {master.keys} keys ({master.keys / total_keys:.0%} of the "
            f"keys, {master.dataset / total_data:.0%} of the data); its shards need about "
            f"{size(needed.bounded * len(shards) / keys.SHARDS)} for the configured retention")
    over = max(master.keys / total_keys, master.dataset / total_data)
    if sum(m.keys for m in masters) < MIN_KEYS or over <= IMBALANCE * equal:
        return Finding(OK, "capacity", text)
    why: tuple[str, tuple[str, ...]]
    if hash_tag(settings.key_prefix):
        why = (f"[redis] key_prefix {settings.key_prefix!r} has a hash tag, so every shard is "
               "in its one slot, on one master", ())
    elif len(shards) > IMBALANCE * keys.SHARDS * equal:
        why = ("it serves more shards than the others: the slots are not split evenly",
               (f"redis-cli --cluster rebalance {master.address}",))
    else:
        why = ("other keys than engage's, layout 1 not yet migrated (engage migrate-layout), or "
               "shards much fuller than the others", ())
    return Finding(WARN, "capacity", f"{text}: more than 15% above an equal share "
                   f"({equal:.0%}), so it fills first: {why[0]}", why[1])


def ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    parts: list[str] = []
    for number in sorted(numbers):
        if parts and number == int(parts[-1].split("-")[-1]) + 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{number}"
        else:
            parts.append(str(number))
    return ", ".join(parts)
