"""Privacy masking of what the redirector stores and logs about a request: ``[privacy]``.

Pure functions. ``ip_addresses``: ``full`` keeps the address, ``truncated`` keeps its
network (IPv4 /24 as ``a.b.c.0``, IPv6 /48, an IPv4-mapped IPv6 address as IPv4 /24 in
its mapped form), ``none`` keeps nothing (empty string). ``user_agents``: ``keep`` or
``drop`` (empty string). Verdicts and GeoIP see the raw request first; whatever is stored
(events, hence the events API and webhooks), logged or used as a Redis key goes through
here. Something that is not an IP address is never kept when masking is asked for.
"""
from __future__ import annotations

import ipaddress
from dataclasses import replace
from functools import lru_cache

from engage.store.events import RequestFacts

IP_MODES = ("full", "truncated", "none")
UA_MODES = ("keep", "drop")
IPV4_PREFIX = 24
IPV6_PREFIX = 48


@lru_cache(maxsize=4096)  # up to three times per click (rate limit, event, access log)
def truncate_ip(ip: str) -> str:
    """The network of ``ip`` (/24 or /48) written as an address; '' when not an address."""
    try:
        address = ipaddress.ip_address(ip.strip().split("%", 1)[0])  # no IPv6 zone id
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        network = ipaddress.ip_network(f"{address.ipv4_mapped}/{IPV4_PREFIX}", strict=False)
        return f"::ffff:{network.network_address}"
    prefix = IPV4_PREFIX if address.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def mask_ip(ip: str, mode: str) -> str:
    """The address as ``[privacy] ip_addresses`` allows it to be stored or logged."""
    if mode == "full":
        return ip
    if mode == "truncated":
        return truncate_ip(ip)
    return ""


def mask_user_agent(user_agent: str, mode: str) -> str:
    return user_agent if mode == "keep" else ""


def limiter_ip(ip: str, mode: str) -> str:
    """What the rate limiter counts by: the full address only when full addresses may be
    stored; otherwise the /24 (/48) network, so no address reaches Redis (or its AOF)."""
    if mode == "full":
        return ip
    return truncate_ip(ip) or "-"


def mask_facts(facts: RequestFacts, ip_mode: str, ua_mode: str) -> RequestFacts:
    """The request facts to store: IP and User-Agent masked (geo_ip, looked up from the
    full address beforehand, is kept)."""
    return replace(facts, ip_address=mask_ip(facts.ip_address, ip_mode),
                   user_agent=mask_user_agent(facts.user_agent, ua_mode))
