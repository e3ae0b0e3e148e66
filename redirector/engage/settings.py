"""Settings for every engage process: one INI file plus ENGAGE_* environment overrides.

Loaded once, validated, frozen. A bad value raises SettingsError whose text is
``file: [section] key: reason``; entry points turn it into exit code 78 (EX_CONFIG).
Environment variables win over the file so containers and tests need no file at all.
"""
from __future__ import annotations

import configparser
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable, TypeVar
from urllib.parse import urlsplit

from engage.dashboard.passwords import parse_hash

DEFAULT_CONFIG = "/etc/engage/engage.conf"
EX_CONFIG = 78

T = TypeVar("T")

# (section, key) -> environment variable that overrides it.
ENV_OVERRIDES: dict[tuple[str, str], str] = {
    ("milter", "socket"): "ENGAGE_MILTER_SOCKET",
    ("redis", "url"): "ENGAGE_REDIS_URL",
    ("redis", "key_prefix"): "ENGAGE_KEY_PREFIX",
    ("tracking", "url"): "ENGAGE_TRACKING_URL",
    ("api", "keys"): "ENGAGE_API_KEYS",
    ("log", "level"): "ENGAGE_LOG_LEVEL",
    ("milter", "on_store_error"): "ENGAGE_ON_STORE_ERROR",
    ("milter", "workers"): "ENGAGE_MILTER_WORKERS",
    ("milter", "rewrite_cache"): "ENGAGE_REWRITE_CACHE",
    ("milter", "plan_timeout"): "ENGAGE_PLAN_TIMEOUT",
    ("milter", "split_recipients"): "ENGAGE_SPLIT_RECIPIENTS",
    ("tracking", "open_tracking"): "ENGAGE_OPEN_TRACKING",
    ("tracking", "click_tracking"): "ENGAGE_CLICK_TRACKING",
    ("tracking", "track_text_links"): "ENGAGE_TRACK_TEXT_LINKS",
    ("web", "rate_limit"): "ENGAGE_RATE_LIMIT",
    ("web", "rate_limit_window"): "ENGAGE_RATE_LIMIT_WINDOW",
    ("web", "proxy_hops"): "ENGAGE_PROXY_HOPS",
    ("web", "geoip_db"): "ENGAGE_GEOIP_DB",
    ("web", "url_signing_key"): "ENGAGE_URL_SIGNING_KEY",
    ("tracking", "link_style"): "ENGAGE_LINK_STYLE",
    ("events", "retention_days"): "ENGAGE_EVENTS_RETENTION_DAYS",
    ("webhooks", "batch_size"): "ENGAGE_WEBHOOK_BATCH_SIZE",
    ("webhooks", "batch_interval"): "ENGAGE_WEBHOOK_BATCH_INTERVAL",
    ("webhooks", "timeout"): "ENGAGE_WEBHOOK_TIMEOUT",
    ("webhooks", "retry_base"): "ENGAGE_WEBHOOK_RETRY_BASE",
    ("webhooks", "retry_max"): "ENGAGE_WEBHOOK_RETRY_MAX",
    ("webhooks", "retry_window"): "ENGAGE_WEBHOOK_RETRY_WINDOW",
    ("webhooks", "status_retention"): "ENGAGE_WEBHOOK_STATUS_RETENTION",
    ("privacy", "ip_addresses"): "ENGAGE_IP_ADDRESSES",
    ("privacy", "user_agents"): "ENGAGE_USER_AGENTS",
    ("verdicts", "rules"): "ENGAGE_VERDICT_RULES",
    ("verdicts", "extra_rules"): "ENGAGE_VERDICT_EXTRA_RULES",
    ("verdicts", "trap_link"): "ENGAGE_TRAP_LINK",
    ("metrics", "retention_days"): "ENGAGE_METRICS_RETENTION_DAYS",
    ("dashboard", "enabled"): "ENGAGE_DASHBOARD_ENABLED",
    ("dashboard", "users"): "ENGAGE_DASHBOARD_USERS",
}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
USER_NAME = re.compile(r"[\w.@+-]{1,64}")  # a dashboard login name
MILTER_SOCKET = re.compile(r"^(unix|local):/.+$|^inet6?:\d{1,5}(@[\w.:\[\]-]+)?$")


class SettingsError(Exception):
    """A setting that cannot be used; the message names file, section and key."""


@dataclass(frozen=True)
class Settings:
    milter_socket: str = "inet:8890@127.0.0.1"
    on_store_error: str = "tempfail"
    max_metadata_bytes: int = 1000
    milter_timeout: int = 600
    milter_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    rewrite_cache: int = 16
    plan_timeout: int = 30  # seconds a message's rewrite may take; then it goes out unchanged
    split_recipients: bool = False
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "engage:"
    link_retention_days: int = 0
    tracking_url: str = "http://127.0.0.1:8080"
    tracking_domains: Mapping[str, str] = field(default_factory=dict)
    open_tracking: bool = True
    open_tracking_domains: Mapping[str, bool] = field(default_factory=dict)
    click_tracking: bool = True
    track_text_links: bool = True
    link_style: str = "short"
    api_keys: tuple[str, ...] = ()
    api_max_scan: int = 200_000
    rate_limit: int = 300
    rate_limit_window: int = 60
    proxy_hops: int = 0
    geoip_db: str = ""
    url_signing_key: str = ""
    events_retention_days: int = 10
    webhook_batch_size: int = 100
    webhook_batch_interval: float = 1.0
    webhook_timeout: float = 10.0
    webhook_retry_base: float = 30.0
    webhook_retry_max: float = 3600.0
    webhook_retry_window: float = 28800.0
    webhook_status_retention: float = 86400.0
    ip_addresses: str = "full"
    user_agents: str = "keep"
    verdict_rules: str = ""  # "" = the list shipped with engage
    verdict_extra_rules: tuple[str, ...] = ()
    fast_click_seconds: float = 5.0
    fast_open_seconds: float = 2.0
    burst_links: int = 3
    trap_link: bool = False
    trap_window: int = 30
    metrics_retention_days: int = 400
    dashboard_enabled: bool = False
    dashboard_users: tuple[tuple[str, str], ...] = ()  # (name, password hash)
    log_level: str = "INFO"
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


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"expected yes/no/true/false/on/off, got {text!r}")


def _parse_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        number = int(text.strip())
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}")
        return number
    return parse


def _parse_float(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        number = float(text.strip())
        if not low <= number <= high:  # also refuses nan
            raise ValueError(f"must be between {low:g} and {high:g}")
        return number
    return parse


def _parse_workers(text: str) -> int:
    if text.strip().lower() == "auto":
        return os.cpu_count() or 1
    return _parse_int(0, 256)(text)


def _parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value
    return parse


def _parse_http_url(text: str) -> str:
    url = text.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL with a host, got {text!r}")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query or fragment")
    if re.search(r"[^A-Za-z0-9._~:/@!$()*+,;=%\[\]-]", url):
        raise ValueError("may hold only URL characters (no quotes, spaces, & or <>)")
    return url


def _parse_redis_url(text: str) -> str:
    url = text.strip()
    if urlsplit(url).scheme not in ("redis", "rediss", "unix", "redis+cluster",
                                    "rediss+cluster"):
        raise ValueError("must start with redis://, rediss://, unix:// or (Redis Cluster) "
                         "redis+cluster:// or rediss+cluster://")
    if urlsplit(url).scheme.endswith("+cluster") and urlsplit(url).path not in ("", "/", "/0"):
        raise ValueError("a Redis Cluster has database 0 only")
    return url


def _parse_socket(text: str) -> str:
    value = text.strip()
    if not MILTER_SOCKET.match(value):
        raise ValueError("must look like inet:PORT@HOST, inet6:PORT@HOST or unix:/path")
    return value


def _parse_level(text: str) -> str:
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def _parse_keys(text: str) -> tuple[str, ...]:
    return tuple(key.strip() for key in text.split(",") if key.strip())


def _parse_path(text: str) -> str:
    path = text.strip()
    if path and not os.path.isabs(path):
        raise ValueError("must be an absolute path (or empty)")
    return path


def _parse_paths(text: str) -> tuple[str, ...]:
    paths = tuple(path.strip() for path in text.split(",") if path.strip())
    for path in paths:
        if not os.path.isabs(path):
            raise ValueError(f"{path!r} must be an absolute path")
    return paths


def _parse_prefix(text: str) -> str:
    prefix = text.strip()
    if not re.fullmatch(r"[\w:.{}-]{0,64}", prefix):
        raise ValueError("letters, digits and :._-{} only, at most 64")
    return prefix


def _parse_signing_key(text: str) -> str:
    key = text.strip()
    if key and len(key) < 16:
        raise ValueError("must be at least 16 characters (or empty: broadcast mode off)")
    return key


def _parse_users(text: str) -> tuple[tuple[str, str], ...]:
    users: dict[str, str] = {}
    for entry in re.split(r"[,\s]+", text.strip()):
        if not entry:
            continue
        name, colon, stored = entry.partition(":")
        if not colon or not USER_NAME.fullmatch(name):
            raise ValueError(f"{entry[:20]!r}...: expected name:hash (letters, digits, ._@+- "
                             "in the name), from `engage dashboard-user NAME`")
        if name in users:
            raise ValueError(f"user {name!r} is listed twice")
        try:
            parse_hash(stored)
        except ValueError as exc:
            raise ValueError(f"user {name!r}: {exc}") from None
        users[name] = stored
    return tuple(users.items())


# (section, key, field name, parser)
SCHEMA: tuple[tuple[str, str, str, Callable[[str], object]], ...] = (
    ("milter", "socket", "milter_socket", _parse_socket),
    ("milter", "on_store_error", "on_store_error", _parse_choice("tempfail", "accept")),
    ("milter", "max_metadata_bytes", "max_metadata_bytes", _parse_int(0, 1_000_000)),
    ("milter", "timeout", "milter_timeout", _parse_int(1, 3600)),
    ("milter", "workers", "milter_workers", _parse_workers),
    ("milter", "rewrite_cache", "rewrite_cache", _parse_int(0, 4096)),
    ("milter", "plan_timeout", "plan_timeout", _parse_int(1, 3600)),
    ("milter", "split_recipients", "split_recipients", _parse_bool),
    ("redis", "url", "redis_url", _parse_redis_url),
    ("redis", "key_prefix", "key_prefix", _parse_prefix),
    ("redis", "link_retention_days", "link_retention_days", _parse_int(0, 100_000)),
    ("tracking", "url", "tracking_url", _parse_http_url),
    ("tracking", "open_tracking", "open_tracking", _parse_bool),
    ("tracking", "click_tracking", "click_tracking", _parse_bool),
    ("tracking", "track_text_links", "track_text_links", _parse_bool),
    ("tracking", "link_style", "link_style", _parse_choice("short", "v1")),
    ("api", "keys", "api_keys", _parse_keys),
    ("api", "max_scan", "api_max_scan", _parse_int(1000, 100_000_000)),
    ("web", "rate_limit", "rate_limit", _parse_int(0, 1_000_000)),
    ("web", "rate_limit_window", "rate_limit_window", _parse_int(1, 86400)),
    ("web", "proxy_hops", "proxy_hops", _parse_int(0, 10)),
    ("web", "geoip_db", "geoip_db", _parse_path),
    ("web", "url_signing_key", "url_signing_key", _parse_signing_key),
    ("events", "retention_days", "events_retention_days", _parse_int(1, 3650)),
    ("webhooks", "batch_size", "webhook_batch_size", _parse_int(1, 10_000)),
    ("webhooks", "batch_interval", "webhook_batch_interval", _parse_float(0, 3600)),
    ("webhooks", "timeout", "webhook_timeout", _parse_float(0.1, 300)),
    ("webhooks", "retry_base", "webhook_retry_base", _parse_float(0.01, 86400)),
    ("webhooks", "retry_max", "webhook_retry_max", _parse_float(0.01, 86400)),
    ("webhooks", "retry_window", "webhook_retry_window", _parse_float(0, 7 * 86400)),
    ("webhooks", "status_retention", "webhook_status_retention", _parse_float(60, 30 * 86400)),
    ("privacy", "ip_addresses", "ip_addresses", _parse_choice("full", "truncated", "none")),
    ("privacy", "user_agents", "user_agents", _parse_choice("keep", "drop")),
    ("verdicts", "rules", "verdict_rules", _parse_path),
    ("verdicts", "extra_rules", "verdict_extra_rules", _parse_paths),
    ("verdicts", "fast_click_seconds", "fast_click_seconds", _parse_float(0, 3600)),
    ("verdicts", "fast_open_seconds", "fast_open_seconds", _parse_float(0, 3600)),
    ("verdicts", "burst_links", "burst_links", _parse_int(0, 10_000)),
    ("verdicts", "trap_link", "trap_link", _parse_bool),
    ("verdicts", "trap_window", "trap_window", _parse_int(1, 86400)),
    ("metrics", "retention_days", "metrics_retention_days", _parse_int(0, 3660)),
    ("dashboard", "enabled", "dashboard_enabled", _parse_bool),
    ("dashboard", "users", "dashboard_users", _parse_users),
    ("log", "level", "log_level", _parse_level),
)
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
    for section, key, name, parse in SCHEMA:
        env_name = ENV_OVERRIDES.get((section, key))
        if env_name and env.get(env_name) is not None:
            raw, where = env[env_name], f"environment {env_name}"
        elif parser.has_option(section, key):
            raw, where = parser.get(section, key), f"{source}: [{section}] {key}"
        else:
            continue
        try:
            values[name] = parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{where}: {exc}") from None
    values["tracking_domains"] = _domain_section(parser, source, "tracking_domains",
                                                 _parse_http_url)
    values["open_tracking_domains"] = _domain_section(parser, source, "open_tracking",
                                                      _parse_bool)
    _check_cluster_prefix(values, source)
    if values.get("dashboard_enabled") and not values.get("dashboard_users"):
        raise SettingsError(f"{source}: [dashboard] users: enabled = yes needs at least one "
                            "user (make one with: engage dashboard-user NAME)")
    return Settings(**values)  # type: ignore[arg-type]


def _check_cluster_prefix(values: Mapping[str, object], source: str) -> None:
    """On a Redis Cluster every key engage writes must hash to one slot (its scripts and
    transactions touch several keys): the prefix must carry a hash tag."""
    url = str(values.get("redis_url", Settings.redis_url))
    prefix = str(values.get("key_prefix", Settings.key_prefix))
    tag = re.search(r"\{([^}]*)\}", prefix)  # Redis's rule: first "{", next "}", not empty
    if urlsplit(url).scheme.endswith("+cluster") and not (tag and tag.group(1)):
        raise SettingsError(f"{source}: [redis] key_prefix: {prefix!r} has no hash tag; on a "
                            "Redis Cluster use one, e.g. {engage}: (every key in one slot)")


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


def describe(settings: Settings) -> str:
    """The effective settings as INI text, API keys masked (for --check-config)."""
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
        lines.append(f"{section}.{key} = {value}")
    lines += [f"tracking_domains.{d} = {u}" for d, u in sorted(settings.tracking_domains.items())]
    lines += [f"open_tracking.{d} = {'yes' if on else 'no'}"
              for d, on in sorted(settings.open_tracking_domains.items())]
    return "\n".join(lines)
