"""``engage doctor``'s proxy-chain check: does the redirector see a client's own address?

The doctor asks the redirector, through the public tracking URL, which client address it
derived for that very request (engage.clientaddr, API key required), sending a forged
``X-Forwarded-For: 192.0.2.1`` (TEST-NET-1, RFC 5737) as a client could. It knows its own
address from its end of the connection, so: the derived address is the forged one -> a
client can forge its address (nginx does not set X-Forwarded-For, or proxy_hops counts
more proxies than there are); it is a proxy's -> proxy_hops counts fewer, and every client
shares one address and one rate-limit bucket; it is ours -> right. When the tracking name
leads to this machine's loopback, it connects from 127.0.0.2 so that the client's address
differs from a local proxy's (127.0.0.1).
"""
from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

from engage import settings as config
from engage.admin.doctor_findings import ERROR, OK, SKIP, WARN, Finding, Options
from engage.admin.doctor_nginx import XFF_LINE
from engage.clientaddr import ROUTE

FORGED = "192.0.2.1"
LOOPBACK_SOURCE = "127.0.0.2"
MAX_ANSWER = 1 << 16


def check_proxy(settings: config.Settings, options: Options) -> list[Finding]:
    if settings.tracking_url == config.Settings.tracking_url:
        return [Finding(SKIP, "proxy", "not checked: [tracking] url is not set")]
    if not settings.api_keys:
        return [Finding(SKIP, "proxy", "not checked: asking the redirector what client address "
                        "it sees needs an [api] keys entry")]
    url = settings.tracking_url.rstrip("/") + ROUTE
    try:
        status, body, own = ask(url, settings.api_keys[0], options.timeout)
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        return [Finding(SKIP, "proxy", f"not checked: {url} cannot be fetched ({exc})")]
    if status == 401:
        return [Finding(WARN, "proxy", f"{url} refuses the first [api] keys entry: the redirector "
                        "runs with other settings than this file; proxy chain not checked")]
    if status != 200:
        return [Finding(SKIP if status >= 500 else WARN, "proxy", f"not checked: {url} answers "
                        f"{status}" + (" (see tracking)" if status >= 500 else
                                       ", not like this engage's redirector (an older version?)"))]
    try:
        results = json.loads(body)["results"]
        return [judge(results, own, settings)]
    except (ValueError, KeyError, TypeError):
        return [Finding(WARN, "proxy", f"{url} answers, but not like the engage redirector: "
                        "proxy chain not checked")]


def ask(url: str, key: str, timeout: float) -> tuple[int, bytes, str]:
    """GET URL with the API key and a forged X-Forwarded-For: (status, body, our address)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    source = (LOOPBACK_SOURCE, 0) if _loopback(host, port) else None
    connection: http.client.HTTPConnection
    if https:
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, source_address=source,
                                                 context=ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout, source_address=source)
    try:
        connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""),
                           headers={"Authorization": key, "X-Forwarded-For": FORGED,
                                    "User-Agent": "engage-doctor"})
        own = connection.sock.getsockname()[0] if connection.sock else ""
        response = connection.getresponse()
        return response.status, response.read(MAX_ANSWER), own
    finally:
        connection.close()


def _loopback(host: str, port: int) -> bool:
    try:
        found = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(item[4][0]).is_loopback for item in found)


def judge(results: dict[str, Any], own: str, settings: config.Settings) -> Finding:
    """The verdict on one answer of the client-address endpoint; OWN is our address."""
    client, peer = str(results["client_address"]), str(results["peer_address"])
    hops = int(results["proxy_hops"])
    header = str(results["x_forwarded_for"])
    chain = [entry.strip() for entry in header.split(",") if entry.strip()]
    added = chain[chain.index(FORGED) + 1:] if FORGED in chain else chain
    seen = (f"(this request from {own} arrived from {peer} with X-Forwarded-For: "
            f"{header or 'none'}; the doctor sent {FORGED} in it)")
    if client == FORGED:
        return _forged(added, hops, peer, own, seen, settings)
    if client == own or (added and hops == len(added) and client == added[0]):
        nat = "" if client == own else f" (this host reaches it as {client}, through a NAT)"
        return Finding(OK, "proxy", f"the redirector sees clients' own addresses through "
                       f"{settings.tracking_url}: proxy_hops = {hops} matches the proxies in "
                       f"front{nat}")
    shared = (f"the redirector takes every client to be {client}, a proxy: all clients share "
              f"one click rate-limit bucket (past {settings.rate_limit} clicks in "
              f"{settings.rate_limit_window} s every click gets 403) and events record the "
              "proxy's address")
    if len(added) > hops:
        return Finding(ERROR, "proxy", f"{shared}: [web] proxy_hops = {hops}, but "
                       f"{_proxies(len(added))} to X-Forwarded-For {seen}",
                       _hops_fix(settings, len(added)))
    if not added and client == peer and _local(peer):
        return Finding(ERROR, "proxy", f"{shared}. The proxy in front sends no X-Forwarded-For "
                       f"{seen}", (f"in the engage-redirector nginx site, in the server block: "
                                   f"{XFF_LINE}", "nginx -t", "systemctl reload nginx",
                                   *_hops_fix(settings, 1)))
    return Finding(WARN, "proxy", f"the redirector sees this host as {client}, but it connected "
                   f"from {own} {seen}: right if a NAT is between them, otherwise compare "
                   f"[web] proxy_hops ({hops}) with the proxies in front")


def _forged(added: list[str], hops: int, peer: str, own: str, seen: str,
            settings: config.Settings) -> Finding:
    forged = (f"the redirector took the forged {FORGED} for this client's address, so any "
              "client can forge its address, dodge the click rate limit and falsify events")
    if added:
        return Finding(ERROR, "proxy", f"{forged}: [web] proxy_hops = {hops}, but only "
                       f"{_proxies(len(added))} to X-Forwarded-For {seen}",
                       _hops_fix(settings, len(added)))
    if peer == own:
        return Finding(ERROR, "proxy", f"{forged}: nothing stands between clients and gunicorn, "
                       f"yet [web] proxy_hops = {hops} {seen}", _hops_fix(settings, 0))
    return Finding(ERROR, "proxy", f"{forged}: the proxy in front ({peer}) passes the client's "
                   f"X-Forwarded-For on instead of adding the address it sees {seen}",
                   (f"in the engage-redirector nginx site, in the server block: {XFF_LINE}",
                    "nginx -t", "systemctl reload nginx"))


def _hops_fix(settings: config.Settings, hops: int) -> tuple[str, str]:
    return (f"in {settings.source}: [web] proxy_hops = {hops}",
            "systemctl restart engage-redirector")


def _local(address: str) -> bool:
    """A proxy on this machine or a private network (not a NAT seen from outside)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return parsed.is_loopback or parsed.is_private


def _proxies(number: int) -> str:
    return "1 proxy adds" if number == 1 else f"{number} proxies add"
