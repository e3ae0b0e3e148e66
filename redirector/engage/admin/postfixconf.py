"""What Postfix's configuration says about milters, read with postconf(1), never parsed by hand.

``read(postconf, config_dir)`` returns the expanded ``smtpd_milters`` and
``non_smtpd_milters`` lists (``{ socket, option=value }`` groups reduced to their socket),
``milter_default_action``, ``queue_directory`` and whether a public smtpd runs chrooted
(then an absolute unix: path is looked up under the queue directory). ``refers_to``
decides whether a Postfix milter entry points at our socket; ``looks_like_dkim_signer``
recognises OpenDKIM, dkimpy-milter and rspamd by name or usual port.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

from engage.admin.milterprobe import LOOPBACK_NAMES, WILDCARD_HOSTS, Address

PARAMETERS = ("smtpd_milters", "non_smtpd_milters", "milter_default_action", "queue_directory")
DKIM_WORDS = re.compile(r"dkim|rspamd", re.IGNORECASE)
DKIM_PORTS = {8891, 8892, 11332, 12301}  # OpenDKIM, dkimpy-milter, rspamd proxy, OpenDKIM howtos


class PostconfError(Exception):
    """postconf could not be run or failed; the message has its output."""


@dataclass(frozen=True)
class PostfixMilters:
    smtpd: tuple[str, ...]
    non_smtpd: tuple[str, ...]
    default_action: str
    queue_directory: str
    chrooted_smtpd: bool


def _run(postconf: str, config_dir: str | None, *args: str) -> str:
    argv = [postconf, *(["-c", config_dir] if config_dir else []), *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except OSError as exc:
        raise PostconfError(f"{' '.join(argv)}: {exc}") from None
    if done.returncode != 0:
        raise PostconfError(f"{' '.join(argv)} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def read(postconf: str, config_dir: str | None = None) -> PostfixMilters:
    values = dict.fromkeys(PARAMETERS, "")
    for line in _run(postconf, config_dir, "-x", *PARAMETERS).splitlines():
        name, sep, value = line.partition(" = ")
        if sep and name in values:
            values[name] = value.strip()
    master = _run(postconf, config_dir, "-M")
    return PostfixMilters(split_milters(values["smtpd_milters"]),
                          split_milters(values["non_smtpd_milters"]),
                          values["milter_default_action"], values["queue_directory"],
                          smtpd_chrooted(master))


def split_milters(value: str) -> tuple[str, ...]:
    """'inet:a:1, { unix:/b, connect_timeout=5s } c' -> ('inet:a:1', 'unix:/b', 'c')."""
    entries: list[str] = []
    for group in re.findall(r"\{[^}]*\}|[^\s,{}]+", value):
        if group.startswith("{"):
            first = group.strip("{} \t").split(",")[0].strip()
            if first:
                entries.append(first)
        else:
            entries.append(group)
    return tuple(entries)


def smtpd_chrooted(master_cf: str) -> bool:
    """True when an inet service running smtpd has 'y' in master.cf's chroot column."""
    for line in master_cf.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[1] == "inet" and fields[7] == "smtpd" and fields[4] == "y":
            return True
    return False


def parse_entry(entry: str) -> Address | None:
    """Postfix syntax (inet:HOST:PORT, inet:[v6]:PORT, unix:/path, local:/path) -> Address."""
    kind, _, rest = entry.partition(":")
    if kind in ("unix", "local") and rest:
        return Address("unix", path=rest)
    if kind == "inet":
        host, _, port = rest.rpartition(":")
        if port.isdigit():
            return Address("inet", host.strip("[]"), int(port))
    return None


def refers_to(entry: str, ours: Address, milters: PostfixMilters) -> bool:
    theirs = parse_entry(entry)
    if theirs is None:
        return False
    if ours.family == "unix" or theirs.family == "unix":
        if theirs.family != ours.family:
            return False
        return os.path.normpath(ours.path) in _unix_candidates(theirs.path, milters)
    if theirs.port != ours.port:
        return False
    if ours.host in WILDCARD_HOSTS or theirs.host == ours.host:
        return True
    return _loopback(theirs.host) and _loopback(ours.host)


def _loopback(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.startswith("127.")


def _unix_candidates(path: str, milters: PostfixMilters) -> set[str]:
    """Where Postfix looks for a unix: path: as given, or under the queue directory when
    smtpd is chrooted (or the path is relative)."""
    spool = milters.queue_directory or "/var/spool/postfix"
    if not path.startswith("/"):
        return {os.path.normpath(os.path.join(spool, path))}
    if milters.chrooted_smtpd:
        return {os.path.normpath(spool + path)}
    return {os.path.normpath(path)}


def looks_like_dkim_signer(entry: str) -> bool:
    theirs = parse_entry(entry)
    return bool(DKIM_WORDS.search(entry)) or (theirs is not None and theirs.port in DKIM_PORTS)
