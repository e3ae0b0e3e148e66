"""Which network an open comes from, and the gate that bounds what one network can store.

An open is charged to its network: IPv4 /24, IPv6 /64 (an IPv4-mapped address as IPv4),
because one host holds a whole /64 and a /24 is cheap to hop within. Key names follow
``[privacy] ip_addresses``: ``full`` names the network, ``truncated`` the network that
mode may store (engage.erasure.privacy.truncate_ip: /24, /48), ``none`` only a digest of
it. The repeat key always holds a digest (with the message key), never an address.
The repeat check runs in the append's script (the repeat key is in the message's shard);
the per-network count is in no shard: it is read in the round trip that resolves the
pixel's token (``read_count``), the script is told whether the network is past its
limit, and a recorded open adds one (``count_recorded``, one more round trip, for
recorded opens only: a flood of repeats or limited opens costs none).
"""
from __future__ import annotations

import hashlib
import ipaddress
from functools import lru_cache
from typing import Any, Optional

from engage.erasure.privacy import truncate_ip
from engage.settings import Settings
from engage.store.events import STATUS_KINDS, OpenGate, open_limit_key, repeat_open_key

IPV4_NETWORK = 24
IPV6_NETWORK = 64
LIMIT_WINDOW = 60  # [web] open_limit counts per minute


@lru_cache(maxsize=4096)
def network_of(ip: str) -> str:
    """The /24 or /64 that ``ip`` belongs to, written as its first address; '' when ``ip``
    is not an address (then every such client shares one network)."""
    try:
        address = ipaddress.ip_address(ip.strip().split("%", 1)[0])
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = IPV4_NETWORK if address.version == 4 else IPV6_NETWORK
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def digest(text: str) -> str:
    return hashlib.blake2b(b"engage-open\0" + text.encode(), digest_size=8).hexdigest()


def network_label(ip: str, mode: str) -> str:
    """The network as ``[privacy] ip_addresses`` lets it appear in a key name."""
    if mode == "full":
        return network_of(ip) or "-"
    if mode == "truncated":
        return truncate_ip(ip) or "-"
    return "h" + digest(network_of(ip))


def open_gate(settings: Settings, kind: str, message_key: str, ip: str,
              replies: tuple[Any, ...]) -> OpenGate:
    """The gate of one open (``kind``: open or initial_open) of ``message_key`` from
    ``ip``; ``replies``: those of ``read_count``, queued when its token was resolved."""
    return OpenGate(repeat_open_key(settings.key_prefix, message_key, STATUS_KINDS[kind],
                                    digest(network_of(ip))), settings.open_repeat_window,
                    over_limit(settings, replies))


def limit_key(settings: Settings, ip: str, now: float) -> str:
    return open_limit_key(settings.key_prefix, network_label(ip, settings.ip_addresses),
                          int(now // LIMIT_WINDOW))


def read_count(settings: Settings, ip: str, now: float, pipe: Any) -> None:
    """Queue a read of the network's recorded opens in this window on ``pipe`` (nothing
    without [web] open_limit)."""
    if settings.open_limit:
        pipe.get(limit_key(settings, ip, now))


def over_limit(settings: Settings, replies: tuple[Any, ...]) -> bool:
    """Whether ``read_count``'s reply (the first of ``replies``) is at [web] open_limit.
    A count Redis could not read (None) is not: fail open."""
    count: Optional[Any] = replies[0] if settings.open_limit and replies else None
    return count is not None and int(count) >= settings.open_limit


def count_recorded(client: Any, settings: Settings, ip: str, now: float) -> None:
    """One more open recorded from the network (INCR, EXPIRE NX). Raises redis.RedisError."""
    if settings.open_limit:
        key = limit_key(settings, ip, now)
        pipe = client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, LIMIT_WINDOW + 1, nx=True)
        pipe.execute()
