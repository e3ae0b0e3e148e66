"""``engage doctor``: check a live installation and say in plain words what is wrong.

Checks, in order: the settings (they load; the service user may read the file; the
tracking URL is set); Redis (engage.admin.doctor_redis); the memory the configured
retention needs at the observed rates, and on a cluster which master holds what
(engage.admin.doctor_capacity); the milter (answers the milter protocol
on its socket, asks to change headers and bodies, a unix socket is usable by Postfix's
user); Postfix (engage.admin.doctor_postfix); every tracking URL (its host resolves, its TLS
certificate covers it (engage.admin.doctor_tls), /healthz answers through it); the nginx site
(engage.admin.doctor_nginx); the client address the redirector derives (engage.admin.doctor_proxy);
with --probe, a real message through Postfix (engage.admin.doctor_probe). Each finding is ok,
warn, error or skip, a problem with its cause, effect and fix; errors make the exit status
1. Imports neither Flask nor pymilter.
"""
from __future__ import annotations

import grp
import json
import os
import pwd
import socket
import textwrap
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

from engage import settings as config
from engage.admin import doctor_capacity, doctor_nginx, doctor_probe, doctor_proxy, doctor_tls
from engage.admin.doctor_findings import DEFAULT_SMTP, ERROR, OK, SKIP, WARN, Finding, Options
from engage.admin.doctor_postfix import check_postfix, postfix_syntax
from engage.admin.doctor_redis import check_redis, redacted
from engage.admin.milterprobe import Address, ProbeError, parse_socket, probe, user_may

__all__ = ["DEFAULT_SMTP", "ERROR", "OK", "SKIP", "WARN", "Finding", "Options", "ProbeError", "postfix_syntax",
           "redacted", "render", "run", "exit_status"]
TOPICS = ("config", "redis", "capacity", "milter", "postfix", "tracking", "nginx", "proxy", "probe")
SMFIF_CHGBODY, SMFIF_CHGHDRS = 0x02, 0x10


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
    path = settings.source if settings.source != "(defaults)" else config.DEFAULT_CONFIG
    if settings.source == "(defaults)":
        findings = [Finding(WARN, "config", f"there is no {path}: running on built-in defaults")]
    else:
        findings = [Finding(OK, "config", f"{path} is valid")]
    if settings.tracking_url == config.Settings.tracking_url:
        findings.append(Finding(ERROR, "config", f"engage is not configured yet: [tracking] url is "
                                f"not set in {path}, so the milter would rewrite links to "
                                f"{settings.tracking_url}, this machine's own loopback, which no "
                                "recipient can open",
                                (f"in {path}: [tracking] url = https://click.example.com (your "
                                 "public tracking name, served by nginx)",
                                 f"in {path}: [redis] url = redis://HOST:6379/0 (if Redis is "
                                 "not on this machine)",
                                 "systemctl restart engage-milter engage-redirector")))
    problem = _service_user_problem(settings.source, options.service_user)
    if problem:
        user = options.service_user
        group = grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
        folder = os.path.dirname(settings.source)
        fix = ((f"chgrp {group} {folder}", f"chmod g+x {folder}") if "cannot enter" in problem
               else (f"chgrp {group} {settings.source}", f"chmod 640 {settings.source}"))
        findings.append(Finding(ERROR, "config", f"{problem}: the engage services run as user "
                                f"{user}, so they cannot read their settings and stop at start "
                                "with exit code 78: no tracking, and mail waits (tempfail)",
                                (*fix, "systemctl restart engage-milter engage-redirector")))
    return settings, findings


def _service_user_problem(path: str, user: str) -> str | None:
    if path == "(defaults)":
        return None
    try:
        pwd.getpwnam(user)
    except KeyError:
        return None  # not a package installation: nothing to say about its user
    return user_may(user, path, os.R_OK)


# ------------------------------------------------------------------------------ milter

def check_milter(settings: config.Settings, options: Options) -> list[Finding]:
    address = parse_socket(settings.milter_socket)
    try:
        version, actions, _steps = probe(address, options.timeout)
    except ProbeError as exc:
        return [Finding(ERROR, "milter", f"the milter does not answer on {settings.milter_socket}: "
                        f"{exc}. engage-milter is stopped (or listens elsewhere): while it is "
                        "away Postfix refuses all mail it should pass through engage (451 4.7.1, "
                        "with milter_default_action = tempfail) or sends it untracked (accept)",
                        ("systemctl start engage-milter",
                         "journalctl -u engage-milter -n 50  (why it stopped)"))]
    findings = [Finding(OK, "milter", f"the milter answers on {settings.milter_socket} "
                        f"(milter protocol {version})")]
    wanted = SMFIF_CHGBODY | SMFIF_CHGHDRS
    if actions & wanted != wanted:
        findings.append(Finding(ERROR, "milter", f"the milter on {settings.milter_socket} does "
                                "not ask to change headers and bodies: it is not engage-milter"))
    if address.family == "unix":
        findings += _unix_socket_access(address, options)
    return findings


def _unix_socket_access(address: Address, options: Options) -> list[Finding]:
    user = options.mta_user
    problem = user_may(user, address.path, os.R_OK | os.W_OK)
    if problem is None or problem.startswith("there is no user"):
        return []
    return [Finding(ERROR, "milter", f"{problem}: Postfix's smtpd (user {user}) gets "
                    "'Permission denied' and refuses all mail (451 4.7.1). The engage-milter "
                    f"unit makes the socket group {options.service_user}, mode 0770",
                    (f"adduser {user} {options.service_user}", "postfix reload"))]


# ------------------------------------------------------------------------------ tracking URLs

def check_tracking(settings: config.Settings, options: Options) -> list[Finding]:
    if settings.tracking_url == config.Settings.tracking_url:
        return [Finding(SKIP, "tracking", "not checked: [tracking] url is not set")]
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
                        f"{exc.strerror}. Every tracked link and open pixel of mail sent now "
                        "points there: clicks fail and opens are lost",
                        (f"add a DNS record: {host} A (and AAAA) -> this server's public address",
                         f"check it: getent hosts {host}"))]
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
        text, fix = _why(exc.reason, url)
        return Finding(ERROR, "tracking", f"{target} cannot be fetched: {text}", fix)
    except (OSError, ValueError) as exc:
        text, fix = _why(exc, url)
        return Finding(ERROR, "tracking", f"{target} cannot be fetched: {text}", fix)


def _why(reason: object, url: str) -> tuple[str, tuple[str, ...]]:
    explained = doctor_tls.explain(reason, url)
    if explained:
        return explained
    if isinstance(reason, ConnectionRefusedError):
        return ("connection refused: nothing listens there, so every click and open fails. "
                "nginx is stopped (or, if the URL points at gunicorn itself, the redirector)",
                ("systemctl start nginx", "nginx -t  (if it does not start)",
                 "systemctl status engage-redirector"))
    return str(reason), ()


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
        return Finding(ERROR, "tracking", f"{target} answers {status}: nginx cannot reach "
                       "gunicorn, the redirector is stopped: every click and open fails",
                       ("systemctl start engage-redirector",
                        "journalctl -u engage-redirector -n 50  (why it stopped)"))
    return Finding(ERROR, "tracking", f"{target} answers {status}, not like the engage "
                   "redirector: no nginx site serves this name (is the engage-redirector site "
                   "enabled? see nginx below), or server_name or the URL's path is wrong")


CHECKS: tuple[tuple[str, Callable[[config.Settings, Options], list[Finding]]], ...] = (
    ("redis", check_redis), ("capacity", doctor_capacity.check_capacity),
    ("milter", check_milter), ("postfix", check_postfix), ("tracking", check_tracking),
    ("nginx", doctor_nginx.check_nginx), ("proxy", doctor_proxy.check_proxy),
    ("probe", doctor_probe.check_probe))


# ------------------------------------------------------------------------------ report

LABELS = {OK: "ok", WARN: "WARN", ERROR: "ERROR", SKIP: "skip"}


def render(findings: list[Finding], width: int = 100) -> str:
    lines = []
    for finding in findings:
        head = f"{LABELS[finding.level]:<6} {finding.topic:<9} "
        lines.append(textwrap.fill(finding.text, width, initial_indent=head,
                                   subsequent_indent=" " * len(head), break_long_words=False,
                                   break_on_hyphens=False))
        for number, step in enumerate(finding.fix):
            lines.append(" " * len(head) + ("Fix: " if number == 0 else "     ") + step)
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
