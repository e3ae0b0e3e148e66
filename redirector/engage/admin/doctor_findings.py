"""What every ``engage doctor`` check returns and is given: Finding and Options.

A Finding is one line of the report: its level (ok, warn, error, skip), its topic, the
cause in words with its effect on mail or data, and ``fix``: the steps that repair it, each
a shell command or an ``in FILE: [section] key = value`` edit, in the order to follow them
(the tests follow them literally). Standard library only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

OK, WARN, ERROR, SKIP = "ok", "warn", "error", "skip"
SERVICE_USER = "engage"
DEFAULT_SMTP = "127.0.0.1:25"


@dataclass(frozen=True)
class Finding:
    level: str
    topic: str
    text: str
    fix: tuple[str, ...] = ()


@dataclass(frozen=True)
class Options:
    config: str | None = None
    postfix_config: str | None = None
    postconf: str = "postconf"
    skip: frozenset[str] = field(default_factory=frozenset)
    timeout: float = 5.0
    mta_user: str = "postfix"
    service_user: str = SERVICE_USER
    nginx_dir: str = "/etc/nginx"
    probe: str | None = None         # --probe ADDRESS: send a tracked message there
    probe_from: str | None = None    # its sender (default engage-doctor@<this host>)
    smtp: str = DEFAULT_SMTP         # where the local Postfix takes mail
