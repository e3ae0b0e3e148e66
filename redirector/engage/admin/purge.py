"""Delete every key engage wrote (``engage purge-data``), whatever bytes its name holds.

Every engage key starts with ``[redis] key_prefix``; nothing else is touched. Keys are
found with SCAN (on a Redis Cluster, on every master) and deleted with UNLINK a batch
at a time (on a cluster redis-py splits a batch by slot), so memory stays bounded by one
batch and the server frees values in the background. Key names are bytes end to end:
an apostrophe, a space, a newline or invalid UTF-8 in a name (recipient data) is just
another byte, unlike ``redis-cli --scan | xargs redis-cli del``.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import redis

from engage import settings as settings_mod
from engage.store.redisconn import connect, scan_keys

BATCH = 500
SAMPLES = 3


class PurgeError(ValueError):
    """A purge that must not run (an empty prefix would match every key)."""


@dataclass
class Census:
    """What a purge would delete: how many keys, and a few of their names."""

    keys: int = 0
    samples: list[bytes] = field(default_factory=list)


def match_pattern(prefix: str) -> str:
    """SCAN's MATCH for names starting with ``prefix`` (glob characters escaped)."""
    if not prefix:
        raise PurgeError("[redis] key_prefix is empty: engage's keys cannot be told apart "
                         "from others in this database")
    return re.sub(r"([\\*?\[\]])", r"\\\1", prefix) + "*"


def _ours(keys: list[bytes], prefix: bytes) -> list[bytes]:
    return [key for key in keys if key.startswith(prefix)]


def census(client: Any, prefix: str, batch: int = BATCH) -> Census:
    """Count the keys a purge would delete (one SCAN pass, nothing deleted)."""
    found = Census()
    raw = prefix.encode()
    for keys in scan_keys(client, match_pattern(prefix), batch):
        ours = _ours(keys, raw)
        found.keys += len(ours)
        found.samples += ours[:SAMPLES - len(found.samples)]
    return found


def purge(client: Any, prefix: str, batch: int = BATCH) -> tuple[int, float]:
    """UNLINK every key named ``prefix``...; (keys deleted, seconds)."""
    started = time.monotonic()
    raw = prefix.encode()
    deleted = 0
    for keys in scan_keys(client, match_pattern(prefix), batch):
        ours = _ours(keys, raw)
        if ours:
            deleted += int(client.unlink(*ours))
    return deleted, time.monotonic() - started


# ------------------------------------------------------------------ the command
def add_parser(sub: Any) -> None:
    command = sub.add_parser(
        "purge-data", help="delete every engage key from Redis (links, events, metrics, ...)",
        description="Delete every Redis key whose name starts with [redis] key_prefix: "
        "links (tracked links in mail already sent then answer 404), events, metrics, "
        "verdicts, webhooks and their queues. Other keys are left alone. Asks first, "
        "showing how many keys match, unless --yes.",
        epilog="Stop engage-milter, engage-redirector and engage-webhooks first: keys they "
        "write meanwhile are reported and left. On a Redis Cluster every master is "
        "scanned. ENGAGE_* environment variables override the settings file.")
    command.add_argument("--config", help=f"settings file (default {settings_mod.DEFAULT_CONFIG})")
    command.add_argument("--yes", action="store_true", help="do not ask")
    command.add_argument("--batch", type=_batch, default=BATCH, metavar="N",
                         help=f"keys per SCAN and UNLINK (default {BATCH})")


def _batch(text: str, most: int = 100_000) -> int:
    """A --batch value (also engage migrate-layout's, with its own ``most``)."""
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise argparse.ArgumentTypeError(f"expected 1 to {most}, got {text!r}")
    return int(text)


def run(args: Any, redacted: Callable[[str], str]) -> int:
    """The command: count, ask, purge, and a last look for keys written meanwhile.
    ``redacted`` shows a Redis URL without its password. Exit 0 done, 1 Redis failed or
    keys are left, 2 not confirmed or refused."""
    settings = settings_mod.load_or_exit("engage purge-data", args.config)
    where = f"{redacted(settings.redis_url)} (prefix {settings.key_prefix!r})"
    client = connect(settings.redis_url, timeout=30.0)
    try:
        if not args.yes:
            found = census(client, settings.key_prefix, args.batch)
            if not found.keys:
                print(f"no engage keys in {where}")
                return 0
            if not _confirmed(found, where):
                return 2
        deleted, seconds = purge(client, settings.key_prefix, args.batch)
        left = census(client, settings.key_prefix, args.batch).keys
    except PurgeError as exc:
        print(f"engage purge-data: {exc}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:
        print(f"engage purge-data: redis failed: {exc} (run it again to finish)", file=sys.stderr)
        return 1
    print(f"deleted {deleted} keys from {where} in {seconds:.2f} s")
    if left:
        print(f"engage purge-data: {left} keys appeared meanwhile: a service still writes; stop "
              "engage-milter, engage-redirector and engage-webhooks and run it again",
              file=sys.stderr)
        return 1
    return 0


def _confirmed(found: Census, where: str) -> bool:
    names = ", ".join(repr(name)[1:] for name in found.samples)
    print(f"{found.keys} keys in {where}, e.g. {names}")
    if not sys.stdin.isatty():
        print("engage purge-data: standard input is not a terminal: pass --yes", file=sys.stderr)
        return False
    return input("delete them all? type yes: ").strip().lower() == "yes"
