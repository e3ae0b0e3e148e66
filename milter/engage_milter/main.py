"""``engage-milter [--config PATH]``: run the tracking milter in the foreground."""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Optional

import redis

from engage import extras
from engage import settings as settings_mod
from engage.logsetup import configure_logging
from engage.store.links import LinkStore
from engage.store.redisconn import connect

log = logging.getLogger("engage_milter")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="engage-milter",
        description="Milter that strips X-MSYS-API and rewrites messages for open and "
                    "click tracking. Runs in the foreground and logs to stderr.",
        epilog="Environment: ENGAGE_CONFIG, ENGAGE_MILTER_SOCKET, ENGAGE_REDIS_URL, "
               "ENGAGE_KEY_PREFIX, ENGAGE_TRACKING_URL, ENGAGE_LOG_LEVEL, ... override the file.",
    )
    parser.add_argument("--config", help=f"settings file (default {settings_mod.DEFAULT_CONFIG})")
    parser.add_argument("--check-config", action="store_true",
                        help="validate the settings, print them (without secrets) and exit")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    settings = settings_mod.load_or_exit("engage-milter", args.config)
    if args.check_config:
        print(settings_mod.describe(settings))
        return 0
    try:
        from .filter import run  # imports pymilter's C module only when serving
    except ModuleNotFoundError as exc:  # a pip install without the milter extra
        raise extras.missing("engage-milter", exc) from None
    configure_logging(settings.log_level)

    client = connect(settings.redis_url)
    try:
        client.ping()
    except redis.RedisError as exc:
        log.warning("link store not reachable yet (%s); messages are answered per "
                    "on_store_error=%s until it is", exc, settings.on_store_error)
    store = LinkStore(client, settings.key_prefix, settings.link_retention_days,
                      settings.metrics_retention_days, durable=settings.wait_aof,
                      record_retention_days=settings.record_retention_days)
    log.info("engage-milter listening on %s, config %s, tracking %s", settings.milter_socket,
             settings.source, settings.tracking_url)
    run(settings, store)
    log.info("engage-milter stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
