"""``engage doctor``: check a live installation and say in plain words what is wrong.

Checks, in order: the settings (they load; the engage user may read the file); Redis
(reachable, a writable primary, persistence on, a maxmemory-policy that never evicts
links); the milter (answers the milter protocol on its socket, asks to change headers and
bodies, a unix socket is usable by Postfix's user); Postfix (smtpd_milters holds us, ahead
of any DKIM signer; chroot and unix sockets); every tracking URL (its host resolves and
/healthz answers through it, certificate checked for https). Each finding is ok, warn,
error or skip; errors make the exit status 1. Imports neither Flask nor pymilter.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import ssl
import textwrap
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis

from engage import settings as config
from engage.admin import postfixconf
from engage.admin.milterprobe import Address, ProbeError, connect_host, parse_socket, probe, user_may
from engage.store.redisconn import connect, hash_tag, is_cluster

OK, WARN, ERROR, SKIP = "ok", "warn", "error", "skip"
TOPICS = ("config", "redis", "milter", "postfix", "tracking")
SERVICE_USER = "engage"
SMFIF_CHGBODY, SMFIF_CHGHDRS = 0x02, 0x10
POSTCONF_FALLBACK = "/usr/sbin/postconf"


@dataclass(frozen=True)
class Finding:
    level: str
    topic: str
    text: str


@dataclass(frozen=True)
class Options:
    config: str | None = None
    postfix_config: str | None = None
    postconf: str = "postconf"
    skip: frozenset[str] = field(default_factory=frozenset)
    timeout: float = 5.0
    mta_user: str = "postfix"


def run(options: Options) -> list[Finding]:
    """Every check, in order; later checks are skipped when the settings do not load."""
    settings, findings = check_config(options)
    for topic, check in CHECKS:
        if topic in options.skip:
            findings.append(Finding(SKIP, topic, "skipped (--skip)"))
        elif settings is None:
            findings.append(Finding(SKIP, topic, "not checked: the settings do not load"))
        else:
            findings += check(settings, options)
    return findings


# ------------------------------------------------------------------------------ settings

def check_config(options: Options) -> tuple[config.Settings | None, list[Finding]]:
    try:
        settings = config.load(options.config)
    except config.SettingsError as exc:
        return None, [Finding(ERROR, "config", f"the settings do not load: {exc}")]
    if settings.source == "(defaults)":
        return settings, [Finding(WARN, "config", f"there is no {config.DEFAULT_CONFIG}: "
                                  "running on built-in defaults")]
    findings = [Finding(OK, "config", f"{settings.source} is valid")]
    problem = _service_user_problem(settings.source)
    if problem:
        findings.append(Finding(ERROR, "config", f"{problem}: the engage services run as user "
                                f"{SERVICE_USER} and stop with exit code 78. Fix: chgrp "
                                f"{SERVICE_USER} {settings.source}; chmod 640 {settings.source}"))
    return settings, findings


def _service_user_problem(path: str) -> str | None:
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return None  # not a package installation: nothing to say about its user
    return user_may(SERVICE_USER, path, os.R_OK)


# ------------------------------------------------------------------------------ Redis

def check_redis(settings: config.Settings, options: Options) -> list[Finding]:
    where = config.mask_url(settings.redis_url)
    client = connect(settings.redis_url, timeout=options.timeout)
    try:
        node, cluster = _cluster(client, settings) if is_cluster(client) else (client, [])
        info = node.info()
        version = info.get("redis_version", "?")
        findings = [Finding(OK, "redis", f"Redis {version} answers at {where}")] + cluster
        if info.get("role", "master") != "master":
            findings.append(Finding(ERROR, "redis", f"Redis at {where} is a read-only replica: "
                                    "point [redis] url at the primary"))
        if info.get("cluster_enabled") and not cluster:
            findings.append(Finding(ERROR, "redis", f"Redis at {where} is a Redis Cluster node: "
                                    "write [redis] url as redis+cluster://host:port and give "
                                    "key_prefix a hash tag ({engage}:)"))
        findings += _persistence(node, info) + _eviction(node, settings)
        return findings + _memory(node, settings)
    except redis.AuthenticationError as exc:
        return [Finding(ERROR, "redis", f"Redis at {where} refuses the password in [redis] "
                        f"url: {exc}")]
    except redis.RedisError as exc:
        return [Finding(ERROR, "redis", f"cannot reach Redis at {where}: {str(exc).rstrip('.')}. "
                        "Is redis-server running (systemctl status redis-server)? Tracking "
                        "needs it: the milter tempfails mail and clicks get 503 while it is away")]
    finally:
        client.close()


def _cluster(client: Any, settings: config.Settings) -> tuple[redis.Redis[bytes], list[Finding]]:
    """The master that holds every engage key (the prefix's hash tag names one slot), and
    what to say about the cluster; the other checks then look at that master."""
    state = client.cluster_info().get("cluster_state", "?")
    masters = len(client.get_primaries())
    tag, prefix = hash_tag(settings.key_prefix), settings.key_prefix
    node = client.get_node_from_key(prefix)
    level = OK if state == "ok" and tag else ERROR
    text = (f"Redis Cluster of {masters} masters, cluster_state {state}; key_prefix {prefix!r}"
            + (f" has the hash tag {{{tag}}}: every engage key is in slot "
               f"{client.keyslot(prefix)}, on {node.host}:{node.port}" if tag else
               " has no hash tag: engage's scripts need every key in one slot"))
    return client.get_redis_connection(node), [Finding(level, "redis", text)]


def _config_get(client: redis.Redis[bytes], name: str) -> str | None:
    """CONFIG GET name, or None when CONFIG is renamed away or not allowed (managed Redis)."""
    try:
        value = client.config_get(name).get(name)
    except redis.ResponseError:
        return None
    return value.decode() if isinstance(value, bytes) else value


def _persistence(client: redis.Redis[bytes], info: dict) -> list[Finding]:
    save = _config_get(client, "save")
    failures = [key for key in ("aof_last_write_status", "rdb_last_bgsave_status")
                if info.get(key, "ok") != "ok"]
    if failures:
        return [Finding(ERROR, "redis", f"Redis cannot write to disk ({failures[0]} is "
                        f"{info[failures[0]]}): check its log and free space")]
    if info.get("aof_enabled"):
        return [Finding(OK, "redis", "persistence on (AOF)")]
    if save:
        return [Finding(OK, "redis", f"persistence on (RDB snapshots, save {save}); AOF "
                        "(appendonly yes) loses fewer clicks and links on a crash")]
    if save is None:
        return [Finding(WARN, "redis", "cannot read Redis's CONFIG (renamed or not allowed): "
                        "persistence and maxmemory-policy not checked")]
    return [Finding(ERROR, "redis", "Redis keeps everything in memory only (no AOF, no RDB "
                    "snapshots): a restart loses every tracking link. Set appendonly yes in "
                    "/etc/redis/redis.conf")]


def _eviction(client: redis.Redis[bytes], settings: config.Settings) -> list[Finding]:
    policy = _config_get(client, "maxmemory-policy")
    if policy is None:
        return []
    limit = int(_config_get(client, "maxmemory") or 0)
    when = f"once it holds maxmemory ({limit} bytes)" if limit else "if it is given a maxmemory"
    if policy.startswith("allkeys-"):
        return [Finding(WARN, "redis", f"maxmemory-policy is {policy}: {when}, Redis deletes "
                        "tracking links to make room and clicks on them get 404. Set "
                        "maxmemory-policy noeviction (and watch the memory instead)")]
    if policy.startswith("volatile-") and settings.link_retention_days:
        return [Finding(WARN, "redis", f"maxmemory-policy is {policy}: {when}, Redis deletes "
                        "links before their link_retention_days are over. Set "
                        "maxmemory-policy noeviction")]
    return [Finding(OK, "redis", f"maxmemory-policy {policy} never evicts tracking links")]


# Redis's defaults for its compact encodings; lower values turn the small hashes (message
# status, aggregates) and sorted sets (event indexes) into structures 2-3x the size.
COMPACT_ENCODINGS = {"hash-max-listpack-entries": 128, "hash-max-listpack-value": 64,
                     "zset-max-listpack-entries": 128, "zset-max-listpack-value": 64}
# A message record's key is prefix + "m:" + 16 characters; up to 28 it fits jemalloc's
# 32-byte class (with the sds header), beyond it the 48-byte one: 16 bytes per message more.
LONGEST_CHEAP_PREFIX = 10


def _memory(client: redis.Redis[bytes], settings: config.Settings) -> list[Finding]:
    """Settings that make every tracked message cost more memory than it needs."""
    findings = []
    for name, default in COMPACT_ENCODINGS.items():
        value = _config_get(client, name)
        if value is not None and value.isdigit() and int(value) < default:
            findings.append(Finding(WARN, "redis", f"{name} is {value} (default {default}): "
                                    "message status hashes and event indexes take 2-3x the "
                                    f"memory. Set {name} {default} or more"))
    if len(settings.key_prefix) > LONGEST_CHEAP_PREFIX:
        findings.append(Finding(WARN, "redis", f"[redis] key_prefix {settings.key_prefix!r} is "
                                f"longer than {LONGEST_CHEAP_PREFIX} characters: every message "
                                "record key takes 16 bytes more (about 5% per message)"))
    if settings.link_retention_days:
        findings.append(Finding(OK, "redis", "link_retention_days is set: each message record "
                                "carries an expiry (Redis keeps about 30 bytes per key for it)"))
    return findings


# ------------------------------------------------------------------------------ milter

def check_milter(settings: config.Settings, options: Options) -> list[Finding]:
    address = parse_socket(settings.milter_socket)
    try:
        version, actions, _steps = probe(address, options.timeout)
    except ProbeError as exc:
        return [Finding(ERROR, "milter", f"the milter does not answer on {settings.milter_socket}: "
                        f"{exc}. Is engage-milter running (systemctl status engage-milter, "
                        "journalctl -u engage-milter)? Postfix tempfails mail meanwhile")]
    findings = [Finding(OK, "milter", f"the milter answers on {settings.milter_socket} "
                        f"(milter protocol {version})")]
    wanted = SMFIF_CHGBODY | SMFIF_CHGHDRS
    if actions & wanted != wanted:
        findings.append(Finding(ERROR, "milter", f"the milter on {settings.milter_socket} does "
                                "not ask to change headers and bodies: it is not engage-milter"))
    if address.family == "unix":
        findings += _unix_socket_access(address, options.mta_user)
    return findings


def _unix_socket_access(address: Address, user: str) -> list[Finding]:
    problem = user_may(user, address.path, os.R_OK | os.W_OK)
    if problem is None or problem.startswith("there is no user"):
        return []
    return [Finding(ERROR, "milter", f"{problem}: Postfix's smtpd (user {user}) gets "
                    "'Permission denied' and tempfails mail. Fix: adduser "
                    f"{user} {SERVICE_USER}, then restart Postfix (the engage-milter unit "
                    "makes the socket group engage, mode 0770)")]


# ------------------------------------------------------------------------------ Postfix

def postfix_syntax(address: Address, milters: postfixconf.PostfixMilters | None = None) -> str:
    """How smtpd_milters names our socket."""
    if address.family == "unix":
        spool = milters.queue_directory if milters else ""
        if milters and milters.chrooted_smtpd and spool and address.path.startswith(spool + "/"):
            return "unix:" + address.path[len(spool):]
        return f"unix:{address.path}"
    host = connect_host(address)
    return f"inet:[{host}]:{address.port}" if ":" in host else f"inet:{host}:{address.port}"


def check_postfix(settings: config.Settings, options: Options) -> list[Finding]:
    postconf = shutil.which(options.postconf) or (
        POSTCONF_FALLBACK if os.path.exists(POSTCONF_FALLBACK) else None)
    if postconf is None:
        return [Finding(SKIP, "postfix", "Postfix is not installed here (no postconf): "
                        "not checked")]
    try:
        milters = postfixconf.read(postconf, options.postfix_config)
    except postfixconf.PostconfError as exc:
        return [Finding(ERROR, "postfix", f"cannot read Postfix's settings: {exc}")]
    ours = parse_socket(settings.milter_socket)
    main_cf = os.path.join(options.postfix_config or "/etc/postfix", "main.cf")
    return (_smtpd_milters(milters, ours, main_cf) + _non_smtpd_milters(milters, ours, main_cf)
            + _default_action(milters, main_cf))


def _smtpd_milters(milters: postfixconf.PostfixMilters, ours: Address,
                   main_cf: str) -> list[Finding]:
    expected = postfix_syntax(ours, milters)
    mine = [i for i, entry in enumerate(milters.smtpd)
            if postfixconf.refers_to(entry, ours, milters)]
    if not mine:
        return [_not_in_postfix(milters, ours, main_cf, expected)]
    findings = [Finding(OK, "postfix", f"smtpd_milters in {main_cf} sends mail to engage "
                        f"({milters.smtpd[mine[0]]})")]
    signers = [e for e in milters.smtpd[:mine[0]] if postfixconf.looks_like_dkim_signer(e)]
    if signers:
        findings.append(Finding(ERROR, "postfix", f"smtpd_milters calls {signers[0]} (a DKIM "
                                "signer) before engage: the signature is made before engage "
                                "rewrites the links, so receivers find it broken. Put "
                                f"{expected} first in smtpd_milters, then postfix reload"))
    return findings


def _not_in_postfix(milters: postfixconf.PostfixMilters, ours: Address, main_cf: str,
                    expected: str) -> Finding:
    current = ", ".join(milters.smtpd) or "empty"
    outside = ours.family == "unix" and milters.chrooted_smtpd and any(
        postfixconf.parse_entry(e) == ours for e in milters.smtpd)
    if outside:
        spool = milters.queue_directory
        return Finding(ERROR, "postfix", f"Postfix's smtpd runs chrooted in {spool}, so it looks "
                       f"for unix:{ours.path} as {spool}{ours.path}. Put the socket under {spool} "
                       f"([milter] socket = unix:{spool}/engage/milter.sock, smtpd_milters = "
                       "unix:/engage/milter.sock) or use inet:8890@127.0.0.1")
    return Finding(ERROR, "postfix", f"Postfix does not send mail to engage: smtpd_milters in "
                   f"{main_cf} is {current}. Add {expected} (before any DKIM signer), then "
                   "postfix reload")


def _non_smtpd_milters(milters: postfixconf.PostfixMilters, ours: Address,
                       main_cf: str) -> list[Finding]:
    if any(postfixconf.refers_to(e, ours, milters) for e in milters.non_smtpd):
        return []
    return [Finding(WARN, "postfix", f"non_smtpd_milters in {main_cf} does not include engage: "
                    "mail submitted with sendmail(1) on this host is not tracked "
                    "(non_smtpd_milters = $smtpd_milters)")]


def _default_action(milters: postfixconf.PostfixMilters, main_cf: str) -> list[Finding]:
    if milters.default_action != "accept":
        return []
    return [Finding(WARN, "postfix", f"milter_default_action = accept in {main_cf}: while "
                    "engage is down mail goes out untracked (tempfail keeps it queued)")]


# ------------------------------------------------------------------------------ tracking URLs

def check_tracking(settings: config.Settings, options: Options) -> list[Finding]:
    urls = sorted({settings.tracking_url, *settings.tracking_domains.values()})
    findings: list[Finding] = []
    for url in urls:
        findings += _check_url(url, options.timeout)
    return findings


def _check_url(url: str, timeout: float) -> list[Finding]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                           type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return [Finding(ERROR, "tracking", f"{host} (tracking URL {url}) does not resolve: "
                        f"{exc.strerror}. Clicks and opens cannot reach the redirector: add a "
                        "DNS record for it")]
    findings = [_healthz(url, timeout)]
    if host in ("localhost", "::1") or host.startswith("127."):
        findings.append(Finding(WARN, "tracking", f"tracking URL {url} points at this machine: "
                                "recipients cannot reach it. Set [tracking] url to your public "
                                "tracking name"))
    elif parts.scheme == "http":
        findings.append(Finding(WARN, "tracking", f"tracking URL {url} is plain http: tracked "
                                "links are personal and clients warn about them. Set up TLS in "
                                "nginx and use https://"))
    return findings


def _healthz(url: str, timeout: float) -> Finding:
    target = f"{url}/healthz"
    request = urllib.request.Request(target, headers={"User-Agent": "engage-doctor"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return _health_answer(target, response.status, response.read(2048), response.geturl())
    except urllib.error.HTTPError as exc:
        return _health_answer(target, exc.code, exc.read(2048), target)
    except urllib.error.URLError as exc:
        return Finding(ERROR, "tracking", f"{target} cannot be fetched: {_why(exc.reason)}")
    except (OSError, ValueError) as exc:
        return Finding(ERROR, "tracking", f"{target} cannot be fetched: {exc}")


def _why(reason: object) -> str:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return (f"its TLS certificate is refused ({reason.verify_message}): the certificate "
                "in nginx must cover every tracking name")
    if isinstance(reason, ConnectionRefusedError):
        return ("connection refused: nothing listens there. Is nginx running with the "
                "engage-redirector site enabled (systemctl status nginx engage-redirector)?")
    return str(reason)


def _health_answer(target: str, status: int, body: bytes, final_url: str) -> Finding:
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    is_ours = isinstance(answer, dict) and "redis" in answer
    if status == 200 and is_ours:
        moved = "" if final_url == target else f" (after a redirect to {final_url})"
        return Finding(OK, "tracking", f"the redirector answers at {target}{moved}")
    if status == 503 and is_ours:
        return Finding(ERROR, "tracking", f"the redirector answers at {target} but cannot reach "
                       "Redis: clicks get 503 (check [redis] url and redis-server)")
    if status in (502, 504):
        return Finding(ERROR, "tracking", f"{target} answers {status}: the proxy cannot reach "
                       "gunicorn (systemctl status engage-redirector)")
    return Finding(ERROR, "tracking", f"{target} answers {status}, not like the engage "
                   "redirector: check nginx's server_name for this host and the URL's path")


CHECKS: tuple[tuple[str, Callable[[config.Settings, Options], list[Finding]]], ...] = (
    ("redis", check_redis), ("milter", check_milter), ("postfix", check_postfix),
    ("tracking", check_tracking))


# ------------------------------------------------------------------------------ report

LABELS = {OK: "ok", WARN: "WARN", ERROR: "ERROR", SKIP: "skip"}


def render(findings: list[Finding], width: int = 100) -> str:
    lines = []
    for finding in findings:
        head = f"{LABELS[finding.level]:<6} {finding.topic:<9} "
        lines.append(textwrap.fill(finding.text, width, initial_indent=head,
                                   subsequent_indent=" " * len(head), break_long_words=False,
                                   break_on_hyphens=False))
    errors = sum(f.level == ERROR for f in findings)
    warnings = sum(f.level == WARN for f in findings)
    if errors or warnings:
        lines.append(f"\n{_count(errors, 'error')}, {_count(warnings, 'warning')}.")
    else:
        lines.append("\nNo problems found.")
    return "\n".join(lines)


def _count(number: int, word: str) -> str:
    return f"{number} {word}" + ("" if number == 1 else "s")


def exit_status(findings: list[Finding], strict: bool = False) -> int:
    if any(f.level == ERROR for f in findings):
        return 1
    return 1 if strict and any(f.level == WARN for f in findings) else 0
