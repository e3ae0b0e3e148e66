"""Optional GeoIP for engagement events, SparkPost's ``geo_ip`` object.

Used only when a MaxMind database path is configured and the ``maxminddb`` module is
importable; otherwise ``open_lookup`` returns None and events carry no ``geo_ip``.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Callable, Optional

from engage.store.trackevent import RequestFacts

log = logging.getLogger(__name__)

Lookup = Callable[[str], Optional[dict[str, Any]]]


def with_geo(lookup: Lookup | None, facts: RequestFacts) -> RequestFacts:
    """``facts`` with the client address's geo_ip, when there is a lookup and an address."""
    ip = facts.ip_address
    return replace(facts, geo_ip=lookup(ip)) if lookup is not None and ip else facts


def open_lookup(path: str) -> Lookup | None:
    if not path:
        return None
    try:
        import maxminddb
    except ImportError:
        log.warning("geoip_db is set but the maxminddb module is missing: no geo_ip in events")
        return None
    try:
        reader = maxminddb.open_database(path)
    except (OSError, ValueError) as exc:
        log.warning("cannot open GeoIP database %s: %s", path, exc)
        return None

    def lookup(ip: str) -> dict[str, Any] | None:
        try:
            record = reader.get(ip)
        except ValueError:
            return None
        return shape(record) if isinstance(record, dict) else None
    return lookup


def shape(record: dict[str, Any]) -> dict[str, Any] | None:
    """A MaxMind City/Country record as SparkPost's geo_ip (absent parts left out)."""
    subdivisions = record.get("subdivisions") or [{}]
    location = record.get("location", {})
    geo = {
        "country": record.get("country", {}).get("iso_code"),
        "region": subdivisions[0].get("iso_code"),
        "city": record.get("city", {}).get("names", {}).get("en"),
        "latitude": location.get("latitude"),
        "longitude": location.get("longitude"),
        "postal_code": record.get("postal", {}).get("code"),
    }
    return {key: value for key, value in geo.items() if value is not None} or None
