"""``engage migrate-layout``: move layout-1 data (one slot, untagged key names) into the
24 shards of layout 2 (issue 19), then tell the redirectors to stop looking in layout 1.

Moves message records, their status hashes, templates (a copy into each shard that has a
message of theirs) and the hourly aggregates (engage.admin.migrate_moves says how each
move survives a crash). The layout-1 events stream, its indexes, verdict overrides and
webhook queues are not moved: every reader takes them as one more shard until [events]
retention_days trims them. Safe while the services run, once every milter and redirector
runs the layout-2 code; an interrupted run is finished by running it again, which moves
nothing twice. Sets ``{prefix}layout`` to "2" once layout 1 holds none of what it moves.
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis

from engage import settings as settings_mod
from engage.admin import purge
from engage.admin.migrate_moves import Moved, Mover
from engage.admin.purge import PurgeError, match_pattern
from engage.store import keys
from engage.store.redisconn import connect

BATCH = 500
MOVED = ("message", "status", "template", "aggregates", "recipient domains")
NAMES = {"message": "message records", "status": "status hashes", "template": "templates",
         "aggregates": "aggregate hashes", "recipient domains": "recipient domain sets"}


def census(mover: Mover) -> Counter[str]:
    """Layout-1 keys under the source prefix, by family (one SCAN pass, in chunks)."""
    found: Counter[str] = Counter()
    for names in mover.scan(mover.source, "*"):
        for name in names:
            family = keys.family_of(mover.source, name)
            if family and family.sharded and keys.shard_of_key(mover.source, name) == keys.LAYOUT1:
                found[family.name] += 1
    return found


def copy_webhooks(client: Any, source: str, prefix: str) -> int:
    """Under another prefix only: the webhook definitions (the same in both layouts, so
    not migrated otherwise) are copied, SET NX and SADD, so that a rerun changes nothing;
    the old ones stay for ``engage purge-data`` with the old prefix. How many were new."""
    if source == prefix:
        return 0
    ids = sorted(client.smembers(keys.webhook_ids(source)))
    pipe = client.pipeline(transaction=False)
    for hook in ids:
        pipe.get(keys.webhook(source, hook.decode()))
    found = [(hook, value) for hook, value in zip(ids, pipe.execute() if ids else []) if value]
    pipe = client.pipeline(transaction=False)
    for hook, value in found:
        pipe.set(keys.webhook(prefix, hook.decode()), value, nx=True)
        pipe.sadd(keys.webhook_ids(prefix), hook)
    return sum(bool(written) for written in (pipe.execute() if found else [])[::2])


def migrate(client: Any, source: str, prefix: str, batch: int = BATCH,
            say: Callable[[str], None] = print) -> tuple[Moved, Counter[str], bool]:
    """Every move, in order (templates last: messages need them until they have moved),
    then the census; marks layout 2 when nothing is left to move. (moved, left, marked)."""
    mover = Mover(client, source, prefix, batch)
    steps: tuple[tuple[str, str, Callable[[], None]], ...] = (
        ("resumed", "staging copies of an interrupted run merged", mover.sweep),
        ("messages", "message records", mover.messages),
        ("statuses", "status hashes", mover.statuses),
        ("aggregates", "aggregate hashes and sets", mover.aggregates),
        ("templates", "templates (layout-1 copies deleted)", mover.templates))
    for field, text, step in steps:
        started = time.monotonic()
        step()
        say(f"  {text}: {getattr(mover.moved, field)} ({time.monotonic() - started:.2f} s)")
    if source != prefix:
        say(f"  webhook definitions copied: {copy_webhooks(client, source, prefix)}")
    left = census(mover)
    marked = not any(left[family] for family in MOVED)
    if marked:
        client.set(keys.layout(prefix), str(keys.LAYOUT))
    return mover.moved, left, marked


def describe_left(left: Counter[str], events: int, retention_days: int, source: str,
                  prefix: str) -> str:
    """What stays in layout 1 on purpose: read as one more shard until it expires; under
    another prefix than the services' it is not read at all."""
    kept = [f"{count} {name}" for name, count in sorted(left.items()) if name not in MOVED]
    if not kept and not events:
        return "layout 1 holds no events, indexes or webhook queues"
    what = (f"the layout-1 events stream ({events} events), " + (", ".join(kept) or "no other keys")
            + " (keys by family)")
    if source == prefix:
        return (f"not moved, read as one more shard until [events] retention_days "
                f"({retention_days}) trims them: {what}")
    return (f"not moved, and not read under {prefix!r}: {what}. Once nothing is left to move "
            f"and their events are not wanted any more: ENGAGE_KEY_PREFIX='{source}' engage "
            "purge-data")


# ------------------------------------------------------------------ the command
def add_parser(sub: Any) -> None:
    command = sub.add_parser(
        "migrate-layout", help="move layout-1 links and metrics into the shards of layout 2",
        description="Move the data engage wrote before version 2 of its Redis layout (one "
        "hash slot, key names without a shard tag) into the 24 shards of layout 2: message "
        "records, their status hashes, templates (a copy into each shard that has a message "
        "of theirs) and the hourly metrics aggregates. Then set the key <prefix>layout to 2, "
        "so that the redirectors stop looking in layout 1. The layout-1 events "
        "stream and its indexes are not moved: they are read as one more shard until "
        "[events] retention_days trims them. Safe while the services run; an interrupted "
        "run is finished by running it again, which moves nothing twice.",
        epilog="Upgrade every engage-milter and engage-redirector first: an old milter "
        "still writes layout 1. Keeps each key's expiry. On a Redis Cluster whose old prefix "
        "had a hash tag: --from-prefix '{engage}:'. docs/operations.md, scale-out.")
    command.add_argument("--config", help=f"settings file (default {settings_mod.DEFAULT_CONFIG})")
    command.add_argument("--from-prefix", metavar="PREFIX",
                         help="the key prefix layout 1 was written under (default [redis] "
                         "key_prefix; on a cluster the old one with its hash tag, e.g. {engage}:)")
    command.add_argument("--dry-run", action="store_true",
                         help="count what would move, move nothing")
    command.add_argument("--batch", type=_batch, default=BATCH, metavar="N",
                         help=f"keys per SCAN and per pipeline (default {BATCH})")


def _batch(text: str) -> int:
    return purge._batch(text, 10_000)  # a pipeline per chunk: templates ask 24 keys each


def run(args: Any) -> int:
    """Exit 0 done (or nothing to do), 1 Redis failed or keys were left, 2 refused."""
    settings = settings_mod.load_or_exit("engage migrate-layout", args.config)
    prefix = settings.key_prefix
    source = prefix if args.from_prefix is None else args.from_prefix
    client = connect(settings.redis_url, timeout=30.0)
    try:
        match_pattern(source)
        mover = Mover(client, source, prefix, args.batch)
        events = int(client.xlen(keys.events(source, keys.LAYOUT1)))
        if args.dry_run:
            left = census(mover)
            moving = ", ".join(f"{left[f]} {NAMES[f]}" for f in MOVED)
            print(f"would move from layout 1 under {source!r} to layout 2 under {prefix!r}: "
                  f"{moving}\n{describe_left(left, events, settings.events_retention_days, source, prefix)}")
            return 0
        print(f"moving layout 1 under {source!r} into the {keys.SHARDS} shards of layout 2 "
              f"under {prefix!r}:")
        moved, left, marked = migrate(client, source, prefix, args.batch)
    except PurgeError as exc:
        print(f"engage migrate-layout: {exc}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:
        print(f"engage migrate-layout: redis failed: {exc} (nothing is moved twice: run it "
              "again to finish)", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(describe_left(left, events, settings.events_retention_days, source, prefix))
    if marked:
        print(f"layout 1 holds nothing more to move: {keys.layout(prefix)} = {keys.LAYOUT}, "
              "the redirectors stop looking there")
        return 0
    still = ", ".join(f"{left[f]} {NAMES[f]}" for f in MOVED if left[f])
    print(f"engage migrate-layout: still in layout 1: {still} ({moved.changed} changed while "
          "being copied; others written meanwhile by a milter that still writes layout 1?): "
          "run it again", file=sys.stderr)
    return 1
