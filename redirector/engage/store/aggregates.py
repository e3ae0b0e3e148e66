"""Hourly aggregates for the metrics API: the key layout and the O(1) update per event.

Three hashes per UTC hour ``H`` (``YYYY-MM-DDTHH``), each expiring at ``H + [metrics]
retention_days`` (EXPIREAT, so late writes never stretch a bucket's life):
  ``{p}agg:s:<H>``  messages sent (written by LinkStore.register), field ``s|<c>|<d>``
  ``{p}agg:e:<H>``  engagement counters, field ``<code>|<c>|<d>`` (codes: ``ENGAGEMENT``)
  ``{p}agg:l:<H>``  clicks per link, field ``<code>|<c>|<d>|<link>``
  ``{p}agg:d:<H>``  a set: the recipient domains of the messages sent (for the metrics
                    API's domains list; no counts are kept per recipient domain)
with ``<c>`` the campaign id, ``<d>`` the sending domain and ``<link>`` the link name (or
URL when unnamed), each with ``%`` and ``|`` percent-encoded. Events count in the hour of
their ``timestamp``, sent messages in the hour of their injection.

Uniques are decided by flags in the message's status hash ``{p}ms:<message key>``, set
with HSETNX in the same script as the event append: ``opened_at`` / ``clicked_at`` (kept
there already), ``initial_open_count`` reaching 1, and the flags below, whose value is the
event_id that set them (so a rebuild can tell its own from newer ones):
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

# Runs inside engage.store.events.APPEND_LUA after the status hash update, with ``score`` (the
# event_id), ``new`` (1 when this event set opened_at/clicked_at) and ``n`` (the kind's
# count after this event) in scope. KEYS[2] status hash, KEYS[3] engagement hash,
# KEYS[4] link hash; ARGV[5] kind (o, i, c), ARGV[8] '|<c>|<d>', ARGV[9] '1' for a human,
# ARGV[10] '|<c>|<d>|<link>', ARGV[11] link id, ARGV[12] expiry (unix time).
UPDATE_LUA = """
do
  local st, e, l, dims, human = KEYS[2], KEYS[3], KEYS[4], ARGV[8], ARGV[9] == '1'
  local fresh = {}  -- a counter that starts at 1 may be the key's first: set its expiry
  local function bump(key, field) if redis.call('HINCRBY', key, field, 1) == 1 then fresh[key] = 1 end end
  local function add(code) bump(e, code .. dims) end
  local function link(code) bump(l, code .. ARGV[10]) end
  local function once(flag) return redis.call('HSETNX', st, flag, score) == 1 end
  local function lacks(flag) return redis.call('HEXISTS', st, flag) == 0 end
  if ARGV[5] == 'c' then
    add('c') link('c')
    if new == 1 then add('uc') if lacks('opened_at') then add('uo') end end
    if once('k' .. ARGV[11]) then link('uc') end
    if human then
      add('nc') link('nc')
      if once('hc') then add('nuc') if lacks('hr') then add('nuo') end end
      if once('hk' .. ARGV[11]) then link('nuc') end
    end
  else
    add('r')
    if new == 1 then add('ur') if lacks('clicked_at') then add('uo') end end
    if ARGV[5] == 'i' then add('i') if n == 1 then add('ui') end end
    if human then
      add('nr')
      if once('hr') then add('nur') if lacks('hc') then add('nuo') end end
      if ARGV[5] == 'i' then add('ni') if once('hi') then add('nui') end end
    end
  end
  for key in pairs(fresh) do redis.call('EXPIREAT', key, ARGV[12]) end
end
"""


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


def bucket_key(prefix: str, kind: str, hour: str) -> str:
    return keys.aggregate(prefix, kind, hour)


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


def update_keys_args(prefix: str, event: Mapping[str, Any],
                     retention_days: int) -> tuple[list[str], list[Any]]:
    """KEYS[3..4] and ARGV[8..12] of UPDATE_LUA for one event, or ([], []) to skip."""
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
    return ([bucket_key(prefix, "e", hour), bucket_key(prefix, "l", hour)],
            [base, "1" if is_human(event) else "0", f"{base}|{escape(label)}",
             link_id(label), expiry])


def recipient_domains(rcpt_to: tuple[str, ...]) -> set[str]:
    """The lowercased domains of a message's envelope recipients."""
    return {rcpt.rpartition("@")[2].lower() for rcpt in rcpt_to if "@" in rcpt}


def sent_field(campaign_id: str, sending_domain: str) -> str:
    return "s" + dims(campaign_id, sending_domain)
