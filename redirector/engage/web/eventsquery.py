"""The events API's request side: SparkPost's search parameters parsed into a ``Query``
(``parse_query``, BadParameter naming the parameter), and the cursor that carries the
last score returned and the first page's window (engage.web.eventsapi searches)."""
from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

from engage.query import (
    MISSING,
    BadParameter,
    parse_delimiter,
    parse_list,
    parse_time,
    parse_zone,
)
from engage.store.events import TYPES

MAX_PER_PAGE = 10_000
DEFAULT_PER_PAGE = 1000
DEFAULT_WINDOW = 86400
SCAN_CHUNK = 2000
MAX_EVENT_IDS = 10_000
TIME_FORM = "ISO 8601, e.g. 2024-05-01T12:00:00Z (or 2024-05-01T08:00 with timezone)"
# Filters on fields our events carry: indexed (DIMENSIONS) or applied to scanned events.
LIST_PARAMS = ("events", "campaigns", "recipients", "messages", "transmissions",
               "subjects", "sending_domains", "recipient_domains", "from_addresses",
               "ip_addresses")
# Filters on what engage never records (it sits before the MTA, has no templates,
# subaccounts, A/B tests or IP pools): valid, and they match nothing.
NEVER_PARAMS = ("bounce_classes", "reasons", "templates", "sending_ips", "ip_pools",
                "subaccounts", "ab_tests", "ab_test_versions", "mailbox_providers",
                "mailbox_provider_regions")
NUMERIC_PARAMS = ("bounce_classes", "ab_test_versions")
PARAMS = frozenset(LIST_PARAMS + NEVER_PARAMS + (
    "from", "to", "cursor", "per_page", "delimiter", "timezone", "event_ids"))
LOWERCASE = ("recipients", "sending_domains", "recipient_domains", "from_addresses")
# SparkPost's event types; those we never produce are valid filters that match nothing.
SPARKPOST_TYPES = frozenset(TYPES + (
    "delivery", "injection", "bounce", "delay", "policy_rejection", "out_of_band",
    "spam_complaint", "generation_failure", "generation_rejection", "list_unsubscribe",
    "link_unsubscribe", "amp_click", "amp_open", "amp_initial_open", "sms_status"))
EVENT_FIELDS = {"campaigns": "campaign_id", "messages": "message_id",
                "transmissions": "transmission_id", "subjects": "subject",
                "ip_addresses": "ip_address"}


@dataclass(frozen=True)
class Query:
    start_ms: int  # inclusive
    end_ms: int  # exclusive
    per_page: int = DEFAULT_PER_PAGE
    before: int | None = None  # from the cursor: only scores below this one
    types: tuple[str, ...] = TYPES
    filters: Mapping[str, frozenset[str]] = field(default_factory=dict)
    event_ids: frozenset[int] | None = None
    fixed: bool = False  # the window came from a cursor: clip it no further


@dataclass(frozen=True)
class Page:
    results: bytes  # JSON objects as stored plus event_id, joined by commas
    total_count: int
    cursor: str | None


def parse_query(args: Mapping[str, str], now: float) -> Query:
    """Validate every parameter; the first bad one raises BadParameter."""
    for name in args:
        if name not in PARAMS:
            raise BadParameter(name, "unsupported parameter")
    delimiter = parse_delimiter(args)
    zone = parse_zone(args.get("timezone", "UTC"))
    end = parse_time(args["to"], "to", zone, TIME_FORM) if "to" in args else now
    start = (parse_time(args["from"], "from", zone, TIME_FORM) if "from" in args
             else end - DEFAULT_WINDOW)
    if start >= end:
        raise BadParameter("from", "must be earlier than to")
    lists = {name: parse_list(args[name], name, delimiter)
             for name in LIST_PARAMS if name in args}
    wanted = lists.pop("events", frozenset(TYPES))
    unknown = wanted - SPARKPOST_TYPES
    if unknown:
        raise BadParameter("events", f"unknown event type {sorted(unknown)[0]!r}")
    types = tuple(kind for kind in TYPES if kind in wanted)
    if _never_matches(args, delimiter):
        types = ()
    for name in LOWERCASE:
        if name in lists:
            lists[name] = frozenset(value.lower() for value in lists[name])
    # round(), not int(): 1795990589.836 * 1000 is 1795990589835.9998. Without ``to`` the
    # window ends after the current ms: an event of this very ms is in it.
    end_ms = round(end * 1000) if "to" in args else round(now * 1000) + 1
    query = Query(round(start * 1000), end_ms, _parse_per_page(args), None, types,
                  lists, _parse_event_ids(args, delimiter))
    return _with_cursor(query, args.get("cursor", "initial"))


def _never_matches(args: Mapping[str, str], delimiter: str) -> bool:
    """Validate the filters on what we never record; True when one is given."""
    given = [name for name in NEVER_PARAMS if name in args]
    for name in given:
        values = parse_list(args[name], name, delimiter)
        if name in NUMERIC_PARAMS and not all(value.isdigit() for value in values):
            raise BadParameter(name, "must list whole numbers")
    if "ab_test_versions" in args and "ab_tests" not in args:
        raise BadParameter("ab_tests", "required with ab_test_versions", MISSING)
    return bool(given)


def _parse_event_ids(args: Mapping[str, str], delimiter: str) -> frozenset[int] | None:
    if "event_ids" not in args:
        return None
    values = parse_list(args["event_ids"], "event_ids", delimiter)
    if not all(value.isdigit() and len(value) <= 20 for value in values):
        raise BadParameter("event_ids", "must list event_id values (decimal numbers)")
    if len(values) > MAX_EVENT_IDS:
        raise BadParameter("event_ids", f"at most {MAX_EVENT_IDS} ids per request")
    return frozenset(int(value) for value in values)


def _parse_per_page(args: Mapping[str, str]) -> int:
    text = args.get("per_page", str(DEFAULT_PER_PAGE))
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_PER_PAGE:
        raise BadParameter("per_page", f"must be a whole number from 1 to {MAX_PER_PAGE}")
    return int(text)


def encode_cursor(score: int, start_ms: int | None = None, end_ms: int | None = None) -> str:
    """The score of the last result and, from v2 on, the walk's window (ms)."""
    text = f"v1:{score}" if start_ms is None else f"v2:{score}:{start_ms}:{end_ms}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _with_cursor(query: Query, text: str) -> Query:
    """The query as the cursor continues it: below its score, in its window (v2)."""
    if text == "initial":
        return query
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    version, *numbers = raw.split(":")
    shape = {"v1": 1, "v2": 3}.get(version)
    if shape is None or len(numbers) != shape or not all(n.isdigit() for n in numbers):
        raise BadParameter("cursor", "not a cursor this API returned")
    if version == "v1":
        return replace(query, before=int(numbers[0]))
    score, start_ms, end_ms = map(int, numbers)
    return replace(query, before=score, start_ms=start_ms, end_ms=end_ms, fixed=True)


def next_link(path: str, args: Mapping[str, str], cursor: str | None) -> dict[str, str]:
    """SparkPost's ``links``: ``next`` repeats the query with the new cursor, or is absent."""
    if cursor is None:
        return {}
    params = {name: value for name, value in args.items() if name != "cursor"}
    params["cursor"] = cursor
    return {"next": f"{path}?{urlencode(params)}"}


