"""Privacy masking of what the redirector stores and logs about a request: ``[privacy]``.

Pure functions. ``ip_addresses``: ``full`` keeps the address, ``truncated`` keeps its
network (IPv4 /24 as ``a.b.c.0``, IPv6 /48, an IPv4-mapped IPv6 address as IPv4 /24 in
its mapped form), ``none`` keeps nothing (empty string). ``user_agents``: ``keep`` or
``drop`` (empty string). Verdicts and GeoIP see the raw request first; whatever is stored
(events, hence the events API and webhooks), logged or used as a Redis key goes through
here. Something that is not an IP address is never kept when masking is asked for.
Rate limiters count per client or network in Redis key names: the address only in
``full`` mode, the /24 (/48) network in ``truncated`` mode, and in ``none`` mode a keyed
digest of the network (``pseudonym``), never an address.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import replace
from functools import lru_cache

from engage.store.trackevent import RequestFacts

IP_MODES = ("full", "truncated", "none")
UA_MODES = ("keep", "drop")
IPV4_PREFIX = 24
IPV6_PREFIX = 48
LOGIN_IPV6_PREFIX = 64  # the dashboard's login limiter: one client's usual IPv6 network


def network_of(ip: str, v6_prefix: int = IPV6_PREFIX) -> str:
    """The network of ``ip`` (IPv4 /24, IPv6 /``v6_prefix``) written as an address; ''
    when not an address."""
    try:
        address = ipaddress.ip_address(ip.strip().split("%", 1)[0])  # no IPv6 zone id
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        network = ipaddress.ip_network(f"{address.ipv4_mapped}/{IPV4_PREFIX}", strict=False)
        return f"::ffff:{network.network_address}"
    prefix = IPV4_PREFIX if address.version == 4 else v6_prefix
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


@lru_cache(maxsize=4096)  # up to three times per click (rate limit, event, access log)
def truncate_ip(ip: str) -> str:
    """The network of ``ip`` (/24 or /48) written as an address; '' when not an address."""
    return network_of(ip)


def pseudonym(text: str, secret: bytes) -> str:
    """A stand-in for ``text`` in a key name: HMAC-SHA256 under ``secret``, 80 bits in
    hex. Without the secret (which is not in Redis) it cannot be turned back into the
    network by trying all 2^24 IPv4 /24s."""
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()[:20]


def mask_ip(ip: str, mode: str) -> str:
    """The address as ``[privacy] ip_addresses`` allows it to be stored or logged."""
    if mode == "full":
        return ip
    if mode == "truncated":
        return truncate_ip(ip)
    return ""


def mask_user_agent(user_agent: str, mode: str) -> str:
    return user_agent if mode == "keep" else ""


def limiter_ip(ip: str, mode: str, secret: bytes = b"") -> str:
    """What the click rate limiter counts by: the full address only when full addresses
    may be stored; otherwise the /24 (/48) network, as is (``truncated``) or as its
    pseudonym (``none``), so no address reaches Redis (or its AOF) that may not."""
    if mode == "full":
        return ip
    network = truncate_ip(ip)
    if not network:
        return "-"
    return network if mode == "truncated" else pseudonym(network, secret)


def login_network(ip: str, mode: str, secret: bytes) -> str:
    """What the dashboard's login limiter counts by: the client's IPv4 /24 or IPv6 /64
    (one attacker rarely holds more), as is only in ``full`` mode, else its pseudonym
    (a /64 is finer than ``truncated`` keeps)."""
    network = network_of(ip, LOGIN_IPV6_PREFIX)
    if not network:
        return "-"
    return network if mode == "full" else pseudonym(network, secret)


def limiter_secret(*secrets: str) -> bytes:
    """The key of ``pseudonym`` for this installation, from secrets in its settings file
    (API keys, URL signing key, dashboard password hashes: never in Redis, the same for
    every worker and host); b"" when there are none (callers then pick a random one)."""
    material = "\0".join(secret for secret in secrets if secret)
    if not material:
        return b""
    return hmac.new(b"engage limiter key", material.encode(), hashlib.sha256).digest()


def mask_facts(facts: RequestFacts, ip_mode: str, ua_mode: str) -> RequestFacts:
    """The request facts to store: IP and User-Agent masked (geo_ip, looked up from the
    full address beforehand, is kept)."""
    return replace(facts, ip_address=mask_ip(facts.ip_address, ip_mode),
                   user_agent=mask_user_agent(facts.user_agent, ua_mode))
