"""Settings for every engage process: one INI file plus ENGAGE_* environment overrides.

Each key is declared once, as a field of ``Settings``: section, key, default, parser,
environment variable and a one-line doc (etc/engage/engage.conf documents it at length;
a test keeps the two in step). Loaded once, validated, frozen. A bad value raises
SettingsError whose text is ``file: [section] key: reason``; entry points turn it into
exit code 78 (EX_CONFIG). Environment variables win over the file so containers and
tests need no file at all.
"""
from __future__ import annotations

import configparser
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Callable, TypeVar
from urllib.parse import urlsplit

from engage.settings import parsers as parse
from engage.settings.declared import (
    ApiKeys,
    DashboardKeys,
    EventsKeys,
    LogKeys,
    MetricsKeys,
    MilterKeys,
    PrivacyKeys,
    RedisKeys,
    TrackingKeys,
    VerdictsKeys,
    WebhooksKeys,
    WebKeys,
)
from engage.settings.parsers import USER_NAME

__all__ = ["DEFAULT_CONFIG", "EX_CONFIG", "USER_NAME", "Settings", "SettingsError", "describe", "mask_url",
           "load", "load_or_exit"]

DEFAULT_CONFIG = "/etc/engage/engage.conf"
EX_CONFIG = 78

T = TypeVar("T")


class SettingsError(Exception):
    """A setting that cannot be used; the message names file, section and key."""


@dataclass(frozen=True)
class Settings(LogKeys, DashboardKeys, MetricsKeys, VerdictsKeys, PrivacyKeys, WebhooksKeys,
               EventsKeys, WebKeys, ApiKeys, TrackingKeys, RedisKeys, MilterKeys):
    """Every setting at its value (bases in reverse so fields keep the file's order)."""

    source: str = "(defaults)"

    def tracking_url_for(self, sender_domain: str) -> str:
        """The tracking base URL for a From: domain (custom tracking domains first)."""
        return by_domain(self.tracking_domains, sender_domain) or self.tracking_url

    def open_tracking_for(self, sender_domain: str) -> bool | None:
        """The operator's ``[open_tracking]`` word for a From: domain (or a parent domain),
        None when it has none."""
        return by_domain(self.open_tracking_domains, sender_domain)


def by_domain(entries: Mapping[str, T], domain: str) -> T | None:
    """The entry for ``domain`` or its nearest parent domain (news.example.com, then
    example.com, then com), None when there is none."""
    domain = domain.lower()
    while domain:
        if domain in entries:
            return entries[domain]
        domain = domain.partition(".")[2]
    return None


# (section, key, field name, parser), in declaration order; (section, key) -> variable.
SCHEMA: tuple[tuple[str, str, str, Callable[[str], object]], ...] = tuple(
    (f.metadata["setting"].section, f.metadata["setting"].key, f.name, f.metadata["setting"].parse)
    for f in fields(Settings) if "setting" in f.metadata)
ENV_OVERRIDES: dict[tuple[str, str], str] = {
    (f.metadata["setting"].section, f.metadata["setting"].key): f.metadata["setting"].env
    for f in fields(Settings) if "setting" in f.metadata and f.metadata["setting"].env}
DOMAIN_SECTIONS = ("tracking_domains", "open_tracking")  # keys are From: domains
KNOWN_SECTIONS = {section for section, *_ in SCHEMA} | set(DOMAIN_SECTIONS)


def load(path: str | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the file (optional when missing and not asked for), apply ENGAGE_* overrides."""
    env = os.environ if environ is None else environ
    explicit = path or env.get("ENGAGE_CONFIG")
    source = explicit or DEFAULT_CONFIG
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(source, encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        if explicit:
            raise SettingsError(f"{source}: file not found") from None
        source = "(defaults)"
    except (configparser.Error, UnicodeDecodeError, OSError) as exc:
        raise SettingsError(f"{source}: {exc}") from None
    values: dict[str, object] = {"source": source}
    _check_unknown(parser, source)
    for section, key, name, parse_value in SCHEMA:
        env_name = ENV_OVERRIDES.get((section, key))
        if env_name and env.get(env_name) is not None:
            raw, where = env[env_name], f"environment {env_name}"
        elif parser.has_option(section, key):
            raw, where = parser.get(section, key), f"{source}: [{section}] {key}"
        else:
            continue
        try:
            values[name] = parse_value(raw)
        except ValueError as exc:
            raise SettingsError(f"{where}: {exc}") from None
    values["tracking_domains"] = _domain_section(parser, source, "tracking_domains",
                                                 parse.parse_http_url)
    values["open_tracking_domains"] = _domain_section(parser, source, "open_tracking",
                                                      parse.parse_bool)
    _check_cluster_prefix(values, source)
    if values.get("dashboard_enabled") and not values.get("dashboard_users"):
        raise SettingsError(f"{source}: [dashboard] users: enabled = yes needs at least one "
                            "user (make one with: engage dashboard-user NAME)")
    return Settings(**values)  # type: ignore[arg-type]  # each value is its SCHEMA parser's result


def _check_cluster_prefix(values: Mapping[str, object], source: str) -> None:
    """On a Redis Cluster each of engage's 24 shards must be one slot. Redis hashes a key
    whose first ``{`` is followed by ``}`` (an empty tag) whole, shard tag and all, so
    such a prefix would spread one message's keys over many slots (its scripts refused)."""
    url = str(values.get("redis_url", Settings.redis_url))
    prefix = str(values.get("key_prefix", Settings.key_prefix))
    opening = prefix.find("{")
    if (urlsplit(url).scheme.endswith("+cluster") and opening >= 0
            and prefix[opening + 1:opening + 2] == "}"):
        raise SettingsError(f"{source}: [redis] key_prefix: {prefix!r} starts a hash tag that "
                            "is empty; on a Redis Cluster Redis would then hash whole keys and "
                            "a message's keys would not share a slot: use engage: (or {engage}: "
                            "for every key in one slot)")


def load_or_exit(program: str, path: str | None = None) -> Settings:
    """load() for an entry point: a bad setting ends the process with exit code 78 and
    ``program: file: [section] key: reason`` on stderr."""
    try:
        return load(path)
    except SettingsError as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        raise SystemExit(EX_CONFIG) from None


def _check_unknown(parser: configparser.ConfigParser, source: str) -> None:
    known_keys = {(section, key) for section, key, *_ in SCHEMA}
    for section in parser.sections():
        if section not in KNOWN_SECTIONS:
            raise SettingsError(f"{source}: [{section}]: unknown section")
        if section in DOMAIN_SECTIONS:
            continue
        for key in parser.options(section):
            if (section, key) not in known_keys:
                raise SettingsError(f"{source}: [{section}] {key}: unknown key")


def _domain_section(parser: configparser.ConfigParser, source: str, section: str,
                    parse: Callable[[str], T]) -> dict[str, T]:
    """A section whose keys are From: domains ([tracking_domains], [open_tracking])."""
    if not parser.has_section(section):
        return {}
    domains = {}
    for domain, text in parser.items(section):
        try:
            domains[domain.lower()] = parse(text)
        except ValueError as exc:
            raise SettingsError(f"{source}: [{section}] {domain}: {exc}") from None
    return domains


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``: in the user part (``redis://:pw@``,
    ``rediss://user:pw@``, also with a raw ``@`` in the password) and in a ``password=``
    query parameter (``unix:///run/redis.sock?password=pw``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    if "?" in authority:  # no path: the query follows the host
        authority, mark, query = authority.partition("?")
        slash, tail = "", mark + query
    user, at, host = authority.rpartition("@")
    if at and ":" in user:
        authority = f"{user.partition(':')[0]}:***@{host}"
    tail = re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", tail)
    return f"{scheme}://{authority}{slash}{tail}"


def describe(settings: Settings) -> str:
    """The effective settings as INI text: API keys, the URL signing key, password hashes
    and passwords in URLs masked (for --check-config)."""
    lines = [f"# effective settings from {settings.source}"]
    for section, key, name, _ in SCHEMA:
        value = getattr(settings, name)
        if name == "api_keys":
            value = f"({len(value)} keys)"
        elif name == "url_signing_key":
            value = "(set)" if value else ""
        elif name == "dashboard_users":
            value = ", ".join(user for user, _ in value)  # never the hashes
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, tuple):
            value = ", ".join(value)
        elif isinstance(value, str):
            value = mask_url(value)
        lines.append(f"{section}.{key} = {value}")
    lines += [f"tracking_domains.{d} = {mask_url(u)}"
              for d, u in sorted(settings.tracking_domains.items())]
    lines += [f"open_tracking.{d} = {'yes' if on else 'no'}"
              for d, on in sorted(settings.open_tracking_domains.items())]
    return "\n".join(lines)
