"""SparkPost's metrics list routes (``GET /api/v1/metrics/campaigns``, ``/domains``,
``/sending-domains`` ...): the distinct values with data in a window, from the hourly
aggregates (engage.store.aggregates)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import groupby

import redis

from engage.metrics.api import DEFAULT_LIMIT, TIME_FORM, parse_limit
from engage.metrics.buckets import run_calls
from engage.metrics.periods import hour_names, period_start
from engage.query import BadParameter, parse_time, parse_zone
from engage.store import aggregates, keys
from engage.store.aggregates import HOUR
from engage.store.redisconn import readable_shards
from engage.store.scripts.metrics import LIST_LUA

# SparkPost's list routes (GET /api/v1/metrics/<name>): what each lists here. campaigns
# and sending-domains come from the sent and engagement buckets, domains (recipient
# domains) from the hourly sets written at registration; engage keeps no templates, IP
# pools, sending IPs, mailbox providers or subject campaigns, so those lists are empty.
LISTS = {"campaigns": 1, "sending-domains": 2, "domains": 0, "templates": -1,
         "ip-pools": -1, "sending-ips": -1, "mailbox-providers": -1,
         "mailbox-provider-regions": -1, "subject-campaigns": -1}
LIST_PARAMS = frozenset(("from", "to", "timezone", "match", "limit"))
LIST_CHUNK_HOURS = 24 * 31  # HKEYS of absent keys cost little: fewer, larger calls


@dataclass(frozen=True)
class ListQuery:
    name: str  # a LISTS key
    start: int  # unix time, whole hour, inclusive
    end: int  # unix time, whole hour, exclusive
    match: str = ""
    limit: int = DEFAULT_LIMIT


def parse_list_query(name: str, args: Mapping[str, str], now: float,
                     retention_days: int) -> ListQuery:
    """Validate a list route's parameters; ``from`` defaults to the retention's start."""
    for param in args:
        if param not in LIST_PARAMS:
            raise BadParameter(param, "unsupported parameter")
    zone = parse_zone(args.get("timezone", "UTC"))
    end_at = parse_time(args["to"], "to", zone, TIME_FORM) if "to" in args else now
    start_at = (parse_time(args["from"], "from", zone, TIME_FORM) if "from" in args
                else now - retention_days * 86400)
    if start_at >= end_at:
        raise BadParameter("from", "must be earlier than to")
    return ListQuery(name, int(start_at // HOUR * HOUR), period_start(end_at, "hour", zone, True),
                     args.get("match", "").strip().lower(), parse_limit(args))


def list_values(client: redis.Redis, prefix: str, query: ListQuery, now: float,
                retention_days: int) -> list[str]:
    """The distinct values with data in the window, containing ``match``, sorted, at most
    ``limit``: the union of LIST_LUA calls, one per shard (and layout 1) per
    LIST_CHUNK_HOURS hours, then one per day of folded hours (engage.metrics.buckets)."""
    column = LISTS[query.name]
    if column < 0:
        return []
    low = max(query.start, int(now - retention_days * 86400) // HOUR * HOUR - HOUR)
    wanted = hour_names(low, min(query.end, int(now + 86400)))
    kinds, shards = ["d"] if column == 0 else ["s", "e"], readable_shards(client, prefix)
    script = client.register_script(LIST_LUA)
    parts = [wanted[offset:offset + LIST_CHUNK_HOURS]
             for offset in range(0, len(wanted), LIST_CHUNK_HOURS)]
    calls = (([name(prefix, shard, kind, hour) for hour in part for kind in kinds
               for name in (keys.aggregate, keys.folding)
               if kind != "d" and shard != keys.LAYOUT1 or name is keys.aggregate],
              ["s" if column == 0 else "h"]) for part in parts for shard in shards)
    found = {_list_value(raw, column) for reply in run_calls(client, script, calls)
             for raw in reply}
    # then the folded hours (recipient domains are not folded): a value moves from a
    # shard's bucket to its folding copy in one step and is in the folded bucket before
    # the copy goes, so reading the shards first misses none
    days = [list(day) for _, day in groupby(wanted, key=lambda hour: hour[:10])] if column else []
    folded = (([keys.folded(prefix, kind, hour) for hour in day for kind in kinds], ["h"])
              for day in days)
    found |= {_list_value(raw, column) for reply in run_calls(client, script, folded)
              for raw in reply}
    found.discard("")
    return sorted(value for value in found if query.match in value.lower())[:query.limit]


def _list_value(raw: bytes, column: int) -> str:
    text = raw.decode("utf-8", "replace")
    if column == 0:
        return text
    parts = aggregates.split_field(text)  # "", campaign, sending domain
    return parts[column] if column < len(parts) else ""
