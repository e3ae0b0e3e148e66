"""``engage verdicts``: recompute stored verdicts, check the rules files, try a request.

    engage verdicts recompute [--since ISO] [--dry-run]
    engage verdicts check
    engage verdicts classify --ip ADDRESS --ua USER-AGENT [--kind click] [--method HEAD] [--age S]

Exit codes: 0 done, 1 Redis unreachable, 2 bad usage, 78 bad settings or rules file.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import redis

from engage import settings as settings_mod
from engage.metrics import rebuild as metricsrebuild
from engage.store.redisconn import connect
from engage.store.trackevent import iso_time
from engage.verdicts import machines
from engage.verdicts.judge import thresholds
from engage.verdicts.recompute import Recomputed, parse_time, recompute
from engage.verdicts.rules import Facts, classify

PROGRAM = "engage verdicts"


def _iso(text: str) -> float:
    try:
        return parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ISO 8601, e.g. 2024-05-01T12:00:00Z, got {text!r}") from None


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "verdicts", help="recompute the verdicts of stored events, check the rules",
        description="Verdicts say who opened or clicked: human, scanner, privacy_proxy or "
        "prefetch (README: \"Verdicts: scanners, proxies and people\").")
    parser.add_argument("--config", help=f"settings file (default {settings_mod.DEFAULT_CONFIG})")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    again = actions.add_parser(
        "recompute", help="classify stored events again with the current rules",
        description="Classify the stored opens and clicks again with the current rules files "
        "and [verdicts] thresholds. Where a verdict changes, an override is stored in "
        "the verdicts hash of the event's shard (the events stream is never rewritten) and the events API shows it, "
        "with the stored verdict as engage.raw_verdict. Prints how many changed, from what to what.")
    again.add_argument("--since", type=_iso, metavar="ISO",
                       help="only events from this time (default: all within [events] retention_days)")
    again.add_argument("--dry-run", action="store_true", help="count the changes, write nothing")
    actions.add_parser("check", help="load the rules files and say what they hold")
    trial = actions.add_parser("classify", help="the verdict for a request you describe")
    trial.add_argument("--kind", choices=("click", "open", "initial_open"), default="click")
    trial.add_argument("--ip", default="", help="client address")
    trial.add_argument("--ua", default="", help="User-Agent")
    trial.add_argument("--method", default="GET")
    trial.add_argument("--age", type=float, default=None, metavar="SECONDS",
                       help="seconds since the message was injected")


def run(args: argparse.Namespace) -> int:
    settings = settings_mod.load_or_exit(PROGRAM, args.config)
    rules = machines.load_or_exit(PROGRAM, settings.verdict_rules, settings.verdict_extra_rules)
    if args.action == "check":
        print(f"ok: {rules.summary()}")
        return 0
    if args.action == "classify":
        facts = Facts(args.kind, args.method, args.ip, args.ua, args.age)
        verdict = classify(facts, rules, thresholds(settings))
        print(verdict.verdict + "".join(f"\n  {reason}" for reason in verdict.reasons))
        return 0
    client = connect(settings.redis_url, timeout=10.0)
    try:
        result = recompute(client, settings, rules, since=args.since, dry_run=args.dry_run)
        print(result.report())
        if result.changed and not result.dry_run:
            print(rebuild_metrics(client, settings, result, time.time()))
    except redis.RedisError as exc:
        print(f"{PROGRAM}: redis: {exc}", file=sys.stderr)
        return 1
    return 0


def rebuild_metrics(client: redis.Redis, settings: settings_mod.Settings,
                    result: Recomputed, now: float) -> str:
    """The aggregates counted the old verdicts: rebuild every whole hour from the first
    changed event on (one rebuild of every shard: a folded hour holds every shard's
    counts, engage.metrics.fold; the current hour is left to the live counters)."""
    if not result.firsts:
        return ""
    first = min(result.firsts.values()) // 1_000_000  # event_id: ms * 1000 + n
    try:
        report = metricsrebuild.rebuild(client, settings.key_prefix, first, int(now),
                                        settings.metrics_retention_days, now)
    except metricsrebuild.RebuildError as exc:
        return (f"metrics not rebuilt: {exc}; once the hour is over run: engage "
                f"metrics rebuild --from {iso_time(first)[:16]}")
    return (f"metrics rebuilt from {report.first_hour}:00Z in {report.shards} shards "
            f"({report.events} events, {report.overrides} overrides)")
