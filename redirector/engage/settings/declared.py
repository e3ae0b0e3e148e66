"""Every setting, declared once: section, key, default, parser, environment variable and
a one-line doc, as fields of one frozen dataclass per section (engage.settings.Settings
inherits them all). etc/engage/engage.conf documents each at length."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

from engage.settings import parsers as parse
from engage.store.pressure import DEFAULT_HIGH_WATER


class Key(NamedTuple):
    """How one setting is read: where in the file, which variable overrides it, its parser."""

    section: str
    key: str
    parse: Callable[[str], object]
    env: str | None
    doc: str


def setting(section: str, key: str, *, parse: Callable[[str], object], doc: str,
            env: str | None = None, default: Any = None,
            factory: Callable[[], Any] | None = None) -> Any:
    """A Settings field that is also a key of the file (the declaration in one place)."""
    meta = {"setting": Key(section, key, parse, env, doc)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)



@dataclass(frozen=True)
class MilterKeys:
    """[milter]"""

    milter_socket: str = setting(
        "milter", "socket", default="inet:8890@127.0.0.1", parse=parse.parse_socket,
        env="ENGAGE_MILTER_SOCKET", doc="Where the milter listens, in pymilter syntax")
    on_store_error: str = setting(
        "milter", "on_store_error", default="tempfail", parse=parse.parse_choice("tempfail", "accept"),
        env="ENGAGE_ON_STORE_ERROR", doc="What to do when the link store (Redis) cannot be written")
    max_metadata_bytes: int = setting(
        "milter", "max_metadata_bytes", default=1000, parse=parse.parse_int(0, 1_000_000),
        doc="X-MSYS-API metadata beyond this many bytes (JSON) is accepted but kept out of events")
    milter_timeout: int = setting(
        "milter", "timeout", default=600, parse=parse.parse_int(1, 3600),
        doc="Seconds libmilter waits on the MTA before giving up a connection")
    milter_workers: int = setting(
        "milter", "workers", factory=lambda: os.cpu_count() or 1, parse=parse.parse_workers,
        env="ENGAGE_MILTER_WORKERS", doc="Processes that rewrite messages, so the milter uses every core "
                                         "(libmilter's threads share one GIL)")
    rewrite_cache: int = setting(
        "milter", "rewrite_cache", default=16, parse=parse.parse_int(0, 4096),
        env="ENGAGE_REWRITE_CACHE", doc="Scans of the latest distinct bodies the milter keeps (0 = off)")
    split_recipients: bool = setting(
        "milter", "split_recipients", default=False, parse=parse.parse_bool,
        env="ENGAGE_SPLIT_RECIPIENTS", doc="One recipient per SMTP transaction, so every recipient gets links of its "
                                           "own and events carry its rcpt_to")
    plan_timeout: int = setting(
        "milter", "plan_timeout", default=30, parse=parse.parse_int(1, 3600),
        env="ENGAGE_PLAN_TIMEOUT", doc="Seconds a message's rewrite may take; then it goes out unchanged")


@dataclass(frozen=True)
class RedisKeys:
    """[redis]"""

    redis_url: str = setting(
        "redis", "url", default="redis://127.0.0.1:6379/0", parse=parse.parse_redis_url,
        env="ENGAGE_REDIS_URL", doc="The link store and event stream")
    key_prefix: str = setting(
        "redis", "key_prefix", default="engage:", parse=parse.parse_prefix,
        env="ENGAGE_KEY_PREFIX", doc="Prefix of every key engage writes")
    link_retention_days: int = setting(
        "redis", "link_retention_days", default=0, parse=parse.parse_int(0, 100_000),
        doc="Days a tracked link keeps working")
    record_retention_days: int = setting(
        "redis", "record_retention_days", default=0, parse=parse.parse_int(0, 100_000),
        env="ENGAGE_RECORD_RETENTION_DAYS",
        doc="Days a message's record (recipients, subject) is kept; its links keep working "
            "from the template after it, with events that name no recipient (0: as long as the links)")
    events_high_water: float = setting(
        "redis", "events_high_water", default=DEFAULT_HIGH_WATER, parse=parse.parse_float(0.1, 1.0),
        env="ENGAGE_EVENTS_HIGH_WATER", doc="Above this share of maxmemory the redirector records no events")
    wait_aof: bool = setting(
        "redis", "wait_aof", default=True, parse=parse.parse_bool,
        env="ENGAGE_WAIT_AOF", doc="The milter accepts a message once Redis confirms its links are on disk")


@dataclass(frozen=True)
class TrackingKeys:
    """[tracking]"""

    tracking_url: str = setting(
        "tracking", "url", default="http://127.0.0.1:8080", parse=parse.parse_http_url,
        env="ENGAGE_TRACKING_URL", doc="Base URL of the redirector as recipients see it")
    tracking_domains: Mapping[str, str] = field(default_factory=dict)
    open_tracking: bool = setting(
        "tracking", "open_tracking", default=True, parse=parse.parse_bool,
        env="ENGAGE_OPEN_TRACKING", doc="Insert open pixels unless X-MSYS-API options say otherwise")
    open_tracking_domains: Mapping[str, bool] = field(default_factory=dict)
    click_tracking: bool = setting(
        "tracking", "click_tracking", default=True, parse=parse.parse_bool,
        env="ENGAGE_CLICK_TRACKING", doc="Track clicks unless X-MSYS-API options say otherwise")
    track_text_links: bool = setting(
        "tracking", "track_text_links", default=True, parse=parse.parse_bool,
        env="ENGAGE_TRACK_TEXT_LINKS", doc="Also track http(s) URLs in text/plain parts, as SparkPost does")
    link_style: str = setting(
        "tracking", "link_style", default="short", parse=parse.parse_choice("short", "v1"),
        env="ENGAGE_LINK_STYLE", doc="Which URL family the milter writes into messages")


@dataclass(frozen=True)
class ApiKeys:
    """[api]"""

    api_keys: tuple[str, ...] = setting(
        "api", "keys", default=(), parse=parse.parse_keys,
        env="ENGAGE_API_KEYS", doc="API keys accepted in the Authorization header of the events API, comma-separated")
    api_max_scan: int = setting(
        "api", "max_scan", default=200_000, parse=parse.parse_int(1000, 100_000_000),
        doc="At most this many stream entries are scanned for one events API page")


@dataclass(frozen=True)
class WebKeys:
    """[web]"""

    rate_limit: int = setting(
        "web", "rate_limit", default=300, parse=parse.parse_int(0, 1_000_000),
        env="ENGAGE_RATE_LIMIT", doc="More than rate_limit requests from one client IP within rate_limit_window "
                                     "seconds get 403 (0 = no limit)")
    rate_limit_window: int = setting(
        "web", "rate_limit_window", default=60, parse=parse.parse_int(1, 86400),
        env="ENGAGE_RATE_LIMIT_WINDOW", doc="Seconds over which rate_limit counts one client's clicks")
    open_limit: int = setting(
        "web", "open_limit", default=1200, parse=parse.parse_int(0, 10_000_000),
        env="ENGAGE_OPEN_LIMIT", doc="Opens recorded per client network (IPv4 /24, IPv6 /64) per minute")
    open_repeat_window: int = setting(
        "web", "open_repeat_window", default=60, parse=parse.parse_int(0, 86400),
        env="ENGAGE_OPEN_REPEAT_WINDOW", doc="A repeated open from one network within it is counted, not recorded")
    proxy_hops: int = setting(
        "web", "proxy_hops", default=0, parse=parse.parse_int(0, 10),
        env="ENGAGE_PROXY_HOPS", doc="Proxies in front of the redirector whose X-Forwarded-For is trusted (nginx")
    geoip_db: str = setting(
        "web", "geoip_db", default="", parse=parse.parse_path,
        env="ENGAGE_GEOIP_DB", doc="A MaxMind GeoIP2/GeoLite2 City database")
    url_signing_key: str = setting(
        "web", "url_signing_key", default="", parse=parse.parse_signing_key,
        env="ENGAGE_URL_SIGNING_KEY", doc="Key for /v1/track/click/<id>?url=...&sig=")
    legacy_url_signatures: bool = setting(
        "web", "legacy_url_signatures", default=True, parse=parse.parse_bool,
        env="ENGAGE_LEGACY_URL_SIGNATURES", doc="Also accept the older URL-only sig of /v1/track/click")


@dataclass(frozen=True)
class EventsKeys:
    """[events]"""

    events_retention_days: int = setting(
        "events", "retention_days", default=10, parse=parse.parse_int(1, 3650),
        env="ENGAGE_EVENTS_RETENTION_DAYS", doc="Days raw events are kept (links keep working whatever this says)")


@dataclass(frozen=True)
class WebhooksKeys:
    """[webhooks]"""

    webhook_batch_size: int = setting(
        "webhooks", "batch_size", default=100, parse=parse.parse_int(1, 10_000),
        env="ENGAGE_WEBHOOK_BATCH_SIZE", doc="engage-webhooks")
    webhook_batch_interval: float = setting(
        "webhooks", "batch_interval", default=1.0, parse=parse.parse_float(0, 3600),
        env="ENGAGE_WEBHOOK_BATCH_INTERVAL", doc="Seconds a worker waits to fill a batch before sending it")
    webhook_timeout: float = setting(
        "webhooks", "timeout", default=10.0, parse=parse.parse_float(0.1, 300),
        env="ENGAGE_WEBHOOK_TIMEOUT", doc="Seconds to wait for the target (and for an OAuth2 token endpoint), as "
                                          "SparkPost")
    webhook_retry_base: float = setting(
        "webhooks", "retry_base", default=30.0, parse=parse.parse_float(0.01, 86400),
        env="ENGAGE_WEBHOOK_RETRY_BASE", doc="A batch that got no 2xx is retried after retry_base seconds, doubling "
                                             "up to retry_max, for retry_window seconds after its first attempt")
    webhook_retry_max: float = setting(
        "webhooks", "retry_max", default=3600.0, parse=parse.parse_float(0.01, 86400),
        env="ENGAGE_WEBHOOK_RETRY_MAX", doc="Longest wait in seconds between two tries of one batch")
    webhook_retry_window: float = setting(
        "webhooks", "retry_window", default=28800.0, parse=parse.parse_float(0, 7 * 86400),
        env="ENGAGE_WEBHOOK_RETRY_WINDOW", doc="Seconds a batch is retried before it is parked as a dead letter")
    webhook_status_retention: float = setting(
        "webhooks", "status_retention", default=86400.0, parse=parse.parse_float(60, 30 * 86400),
        env="ENGAGE_WEBHOOK_STATUS_RETENTION", doc="Seconds the status of each batch attempt is kept for \"engage- "
                                                   "webhooks batches\"")
    webhook_allow_private_targets: bool = setting(
        "webhooks", "allow_private_targets", default=False, parse=parse.parse_bool,
        env="ENGAGE_WEBHOOK_ALLOW_PRIVATE_TARGETS",
        doc="Let webhook targets and token URLs resolve to loopback, private or link-local addresses")


@dataclass(frozen=True)
class PrivacyKeys:
    """[privacy]"""

    ip_addresses: str = setting(
        "privacy", "ip_addresses", default="full", parse=parse.parse_choice("full", "truncated", "none"),
        env="ENGAGE_IP_ADDRESSES", doc="What the redirector stores and logs of the client's IP address (events, "
                                       "events API, webhooks, access log, rate-limit counters)")
    user_agents: str = setting(
        "privacy", "user_agents", default="keep", parse=parse.parse_choice("keep", "drop"),
        env="ENGAGE_USER_AGENTS", doc="keep or drop the User-Agent header (events and access log)")


@dataclass(frozen=True)
class VerdictsKeys:
    """[verdicts]"""

    verdict_rules: str = setting(
        "verdicts", "rules", default="", parse=parse.parse_path,
        env="ENGAGE_VERDICT_RULES", doc="Every open and click gets a verdict")
    verdict_extra_rules: tuple[str, ...] = setting(
        "verdicts", "extra_rules", default=(), parse=parse.parse_paths,
        env="ENGAGE_VERDICT_EXTRA_RULES", doc="Your own rules files, comma-separated absolute paths, read after "
                                              "rules and extending them (same format)")
    fast_click_seconds: float = setting(
        "verdicts", "fast_click_seconds", default=5.0, parse=parse.parse_float(0, 3600),
        doc="A click sooner than this many seconds after the milter took the message is a scanner, an open sooner "
            "than fast_open_seconds a prefetch (0 = off)")
    fast_open_seconds: float = setting(
        "verdicts", "fast_open_seconds", default=2.0, parse=parse.parse_float(0, 3600),
        doc="An open this soon after injection reads as a machine's")
    burst_links: int = setting(
        "verdicts", "burst_links", default=3, parse=parse.parse_int(0, 10_000),
        doc="Clicks on this many links of one message within a second read as a scanner")
    trap_link: bool = setting(
        "verdicts", "trap_link", default=False, parse=parse.parse_bool,
        env="ENGAGE_TRAP_LINK", doc="Add a hidden link no person can see or click; whoever follows it is a machine")
    trap_window: int = setting(
        "verdicts", "trap_window", default=30, parse=parse.parse_int(1, 86400),
        doc="Seconds after a trap hit in which the same client's clicks read as a machine's")


@dataclass(frozen=True)
class MetricsKeys:
    """[metrics]"""

    metrics_retention_days: int = setting(
        "metrics", "retention_days", default=400, parse=parse.parse_int(0, 3660),
        env="ENGAGE_METRICS_RETENTION_DAYS", doc="Days the hourly aggregates behind the metrics API "
                                                 "(/api/v1/metrics/...) are kept")


@dataclass(frozen=True)
class DashboardKeys:
    """[dashboard]"""

    dashboard_enabled: bool = setting(
        "dashboard", "enabled", default=False, parse=parse.parse_bool,
        env="ENGAGE_DASHBOARD_ENABLED", doc="The redirector's dashboard page at <tracking URL>/dashboard")
    dashboard_users: tuple[tuple[str, str], ...] = setting(
        "dashboard", "users", default=(), parse=parse.parse_users,
        env="ENGAGE_DASHBOARD_USERS", doc="Who may log in (HTTP Basic")


@dataclass(frozen=True)
class LogKeys:
    """[log]"""

    log_level: str = setting(
        "log", "level", default="INFO", parse=parse.parse_level,
        env="ENGAGE_LOG_LEVEL", doc="DEBUG, INFO, WARNING, ERROR or CRITICAL")


SECTIONS = (
    MilterKeys,
    RedisKeys,
    TrackingKeys,
    ApiKeys,
    WebKeys,
    EventsKeys,
    WebhooksKeys,
    PrivacyKeys,
    VerdictsKeys,
    MetricsKeys,
    DashboardKeys,
    LogKeys,
)
