"""Hourly aggregates for the metrics API: the key layout and the O(1) update per event.

Three hashes per UTC hour ``H`` (``YYYY-MM-DDTHH``) and shard (``{p}`` below stands for
the prefix and the shard's tag: a message counts in its own shard, engage.store.keys, and
the metrics API sums the shards), each expiring at ``H + [metrics] retention_days``
(EXPIREAT, so late writes never stretch a bucket's life):
  ``{p}agg:s:<H>``  messages sent (written by LinkStore.register), field ``s|<c>|<d>``
  ``{p}agg:e:<H>``  engagement counters, field ``<code>|<c>|<d>`` (codes: ``ENGAGEMENT``)
  ``{p}agg:l:<H>``  clicks per link, field ``<code>|<c>|<d>|<link>``
  ``{p}agg:d:<H>``  a set: the recipient domains of the messages sent (for the metrics
                    API's domains list; no counts are kept per recipient domain)
with ``<c>`` the campaign id, ``<d>`` the sending domain and ``<link>`` the link name (or
URL when unnamed), each with ``%`` and ``|`` percent-encoded. Events count in the hour of
their ``timestamp``, sent messages in the hour of their injection.

Uniques are decided by flags in the message's status hash ``{p}ms:<message key>``, set
with HSETNX in the same script as the event append (engage.store.scripts.aggregates):
``opened_at`` / ``clicked_at`` (kept there already), ``initial_open_count`` reaching 1,
and the flags below, whose value is the event_id that set them (so a rebuild can tell its
own from newer ones):
  ``hr`` ``hi`` ``hc``  first human render, initial render, click (nonprefetched uniques)
  ``k<id>`` ``hk<id>``  first click, first human click, on one link (``link_id``)
"""
from __future__ import annotations

import base64
import calendar
import hashlib
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from engage.store import keys

DEFAULT_RETENTION_DAYS = 400
HOUR = 3600
KINDS = ("s", "e", "l")  # sent, engagement, links (counters; "d" is a set of domains)

# SparkPost metric name -> field code. Nonprefetched ("n...") codes count human events only.
SENT = {"count_sent": "s"}
ENGAGEMENT = {
    "count_rendered": "r", "count_nonprefetched_rendered": "nr",
    "count_initial_rendered": "i", "count_nonprefetched_initial_rendered": "ni",
    "count_unique_rendered": "ur", "count_nonprefetched_unique_rendered": "nur",
    "count_unique_initial_rendered": "ui", "count_nonprefetched_unique_initial_rendered": "nui",
    "count_unique_confirmed_opened": "uo", "count_nonprefetched_unique_confirmed_opened": "nuo",
    "count_clicked": "c", "count_nonprefetched_clicked": "nc",
    "count_unique_clicked": "uc", "count_nonprefetched_unique_clicked": "nuc",
}
# Per link: count_raw_clicked is SparkPost's name there for messages that clicked the link.
LINKS = {
    "count_clicked": "c", "count_nonprefetched_clicked": "nc",
    "count_unique_clicked": "uc", "count_raw_clicked": "uc",
    "count_nonprefetched_unique_clicked": "nuc",
}



def escape(value: str) -> str:
    """A field component that cannot contain the separator."""
    return value.replace("%", "%25").replace("|", "%7C")


def unescape(value: str) -> str:
    return value.replace("%7C", "|").replace("%25", "%")


def dims(campaign_id: str, sending_domain: str) -> str:
    return f"|{escape(campaign_id)}|{escape(sending_domain)}"


def split_field(field: str) -> list[str]:
    """``code|c|d[|link]`` back into its unescaped parts."""
    return [unescape(part) for part in field.split("|")]


def hour_of(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H", time.gmtime(epoch))


@lru_cache(maxsize=64)
def hour_start(hour: str) -> int:
    """Unix time of the start of ``YYYY-MM-DDTHH`` (UTC)."""
    return calendar.timegm(time.strptime(hour, "%Y-%m-%dT%H"))


def bucket_key(prefix: str, shard: int, kind: str, hour: str) -> str:
    return keys.aggregate(prefix, shard, kind, hour)


def expires_at(hour: str, retention_days: int) -> int:
    return hour_start(hour) + retention_days * 86400


def is_human(event: Mapping[str, Any]) -> bool:
    """The contract: no ``engage`` verdict counts as human; only "human" is nonprefetched."""
    engage = event.get("engage")
    return not isinstance(engage, Mapping) or engage.get("verdict", "human") == "human"


def link_label(event: Mapping[str, Any]) -> str:
    """What the link-name metrics group a click by: the link name, else the URL."""
    return str(event.get("target_link_name") or event.get("target_link_url") or "")


def link_id(label: str) -> str:
    """8 characters naming a link within one message's status hash (48 bits)."""
    digest = hashlib.blake2b(label.encode("utf-8", "surrogatepass"), digest_size=6).digest()
    return base64.urlsafe_b64encode(digest).decode()


def update_keys_args(prefix: str, shard: int, event: Mapping[str, Any],
                     retention_days: int) -> tuple[list[str], list[Any]]:
    """KEYS[3..4] and ARGV[8..12] of UPDATE_LUA for one event of ``shard`` (its message's),
    or ([], []) to skip."""
    stamp = event.get("timestamp")
    if not retention_days or not isinstance(stamp, str) or len(stamp) < 13:
        return [], []
    hour = stamp[:13]
    try:
        expiry = expires_at(hour, retention_days)
    except ValueError:
        return [], []
    base = dims(str(event.get("campaign_id") or ""), str(event.get("sending_domain") or ""))
    label = link_label(event)
    return ([bucket_key(prefix, shard, "e", hour), bucket_key(prefix, shard, "l", hour)],
            [base, "1" if is_human(event) else "0", f"{base}|{escape(label)}",
             link_id(label), expiry])


def recipient_domains(rcpt_to: tuple[str, ...]) -> set[str]:
    """The lowercased domains of a message's envelope recipients."""
    return {rcpt.rpartition("@")[2].lower() for rcpt in rcpt_to if "@" in rcpt}


def sent_field(campaign_id: str, sending_domain: str) -> str:
    return "s" + dims(campaign_id, sending_domain)
