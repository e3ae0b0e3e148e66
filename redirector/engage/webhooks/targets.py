"""Where webhooks may be delivered: public addresses only, unless ``[webhooks]
allow_private_targets``.

A webhook's target (and its OAuth2 token endpoint) gets event batches and credentials,
so a definition must not turn the worker against the host's own or its network's
services (SSRF): loopback, link-local (cloud metadata at 169.254.169.254), private,
shared (100.64/10), documentation, multicast and reserved addresses are refused, also
inside IPv4-mapped, 6to4 and NAT64 IPv6 addresses. ``check_target`` resolves the name
when a webhook is created or changed; ``connect`` is the socket factory of every
delivery: it resolves again, connects only to an allowed address and checks the
address it is connected to, so a name that later resolves elsewhere (DNS rebinding)
is refused at delivery too. Through an HTTP proxy only the resolution at create time
applies (the proxy connects, and the operator chose it).
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

NAT64 = ipaddress.ip_network("64:ff9b::/96")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(OSError):
    """The target resolves to an address webhooks may not reach."""


def refusal(ip: str) -> str | None:
    """Why ``ip`` may not be a webhook target, or None when it is a public address."""
    try:
        address: Address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return f"{ip!r} is not an IP address"
    inner = _embedded_ipv4(address)
    if inner is not None:
        return refusal(str(inner))
    if address.is_loopback:
        return f"{address} is a loopback address"
    if address.is_link_local:
        return f"{address} is a link-local address"
    if address.is_multicast or not address.is_global:
        return f"{address} is a private or reserved address"
    return None


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an IP literal: itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_target(url: str, allow_private: bool) -> None:
    """TargetRefused (or OSError when the name does not resolve) unless every address
    the URL's host resolves to may be reached."""
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for ip in resolve(host, port):
        reason = refusal(ip)
        if reason:
            raise TargetRefused(f"{host} resolves to {reason} (webhook targets must be public "
                                "unless [webhooks] allow_private_targets = yes)")


def connect(address: tuple[str, int], timeout: Any = None,
            source_address: Any = None) -> socket.socket:
    """socket.create_connection over the allowed addresses of ``address``'s host only,
    and only if the peer it reached is allowed too."""
    host, port = address
    allowed = [ip for ip in resolve(host, port) if refusal(ip) is None]
    if not allowed:
        raise TargetRefused(f"{host} resolves to no public address: not connected")
    error: OSError | None = None
    for ip in allowed:
        try:
            sock = socket.create_connection((ip, port), timeout, source_address)
        except OSError as exc:
            error = exc
            continue
        peer = str(sock.getpeername()[0])
        if refusal(peer) is None:
            return sock
        sock.close()
        error = TargetRefused(f"{host}: connected to {peer}, not a public address")
    assert error is not None
    raise error
