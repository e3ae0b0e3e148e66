"""What Postfix's configuration says about milters, read with postconf(1), never parsed by hand.

``read(postconf, config_dir)`` returns the ``smtpd_milters`` and ``non_smtpd_milters``
lists as Postfix reads them (``postconf -hx``: expanded, and a ``#`` in a value is part of
it; ``{ socket, option=value }`` groups reduced to their socket, their ``default_action``
kept), ``milter_default_action``, ``queue_directory``, the explicitly set parameters
(``postconf -n``, unexpanded) and whether a public smtpd and cleanup run chrooted
(then an absolute unix: path is looked up under the queue directory). ``refers_to``
decides whether a Postfix milter entry points at our socket; ``looks_like_dkim_signer``
recognises OpenDKIM, dkimpy-milter and rspamd by name or usual port.
"""
from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field

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
    actions: Mapping[str, str] = field(default_factory=dict)   # entry -> its default_action=
    explicit: Mapping[str, str] = field(default_factory=dict)  # postconf -n: name -> raw value
    chrooted_cleanup: bool = False                             # where non_smtpd_milters run


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
    lines = _run(postconf, config_dir, "-hx", *PARAMETERS).splitlines()
    values = dict(zip(PARAMETERS, [line.strip() for line in lines] + [""] * len(PARAMETERS)))
    explicit = {}
    for line in _run(postconf, config_dir, "-n").splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            explicit[name.strip()] = value.strip()
    master = _run(postconf, config_dir, "-M")
    smtpd, non_smtpd = values["smtpd_milters"], values["non_smtpd_milters"]
    return PostfixMilters(split_milters(smtpd), split_milters(non_smtpd),
                          values["milter_default_action"], values["queue_directory"],
                          smtpd_chrooted(master), {**milter_actions(non_smtpd),
                                                   **milter_actions(smtpd)},
                          explicit, chrooted(master, "cleanup"))


def _groups(value: str) -> list[tuple[str, str]]:
    """(socket, options text) per entry of a milter list."""
    entries = []
    for group in re.findall(r"\{[^}]*\}|[^\s,{}]+", value):
        if group.startswith("{"):
            first, _, rest = group.strip("{} \t").partition(",")
            if first.strip():
                entries.append((first.strip(), rest))
        else:
            entries.append((group, ""))
    return entries


def split_milters(value: str) -> tuple[str, ...]:
    """'inet:a:1, { unix:/b, connect_timeout=5s } c' -> ('inet:a:1', 'unix:/b', 'c')."""
    return tuple(entry for entry, _ in _groups(value))


def milter_actions(value: str) -> dict[str, str]:
    """Entries of a milter list that set their own default_action= -> that action."""
    actions = {}
    for entry, options in _groups(value):
        found = re.search(r"(?:^|[\s,])default_action\s*=\s*([^\s,]*)", options)
        if found:
            actions[entry] = found.group(1)
    return actions


def smtpd_chrooted(master_cf: str) -> bool:
    """True when an inet service running smtpd has 'y' in master.cf's chroot column."""
    return chrooted(master_cf, "smtpd", "inet")


def chrooted(master_cf: str, command: str, kind: str | None = None) -> bool:
    """True when a master.cf service running COMMAND (of type KIND) has 'y' for chroot."""
    for line in master_cf.splitlines():
        fields = line.split()
        if (len(fields) >= 8 and fields[7] == command and fields[4] == "y"
                and kind in (None, fields[1])):
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


def refers_to(entry: str, ours: Address, milters: PostfixMilters,
              chroot: bool | None = None) -> bool:
    """Does a milter ENTRY lead to our socket, for a daemon that is chrooted or not (by
    default: like smtpd)?"""
    theirs = parse_entry(entry)
    if theirs is None:
        return False
    if ours.family == "unix" or theirs.family == "unix":
        if theirs.family != ours.family:
            return False
        chrooted = milters.chrooted_smtpd if chroot is None else chroot
        return os.path.normpath(ours.path) == seen_path(theirs.path, milters, chrooted)
    if theirs.port != ours.port:
        return False
    if ours.host in WILDCARD_HOSTS or theirs.host == ours.host:
        return True
    return _loopback(theirs.host) and _loopback(ours.host)


def _loopback(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.startswith("127.")


def seen_path(path: str, milters: PostfixMilters, chroot: bool) -> str:
    """The file a Postfix daemon (chrooted or not) opens for a unix: milter PATH: daemons
    run in the queue directory, and a chrooted one sees it as /."""
    spool = milters.queue_directory or "/var/spool/postfix"
    if not path.startswith("/"):
        return os.path.normpath(os.path.join(spool, path))
    return os.path.normpath(spool + path) if chroot else os.path.normpath(path)


def looks_like_dkim_signer(entry: str) -> bool:
    theirs = parse_entry(entry)
    return bool(DKIM_WORDS.search(entry)) or (theirs is not None and theirs.port in DKIM_PORTS)
