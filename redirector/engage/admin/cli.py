"""``engage``: the administrator's command. ``engage doctor`` checks a live installation;
``engage forget <address>`` erases a recipient (engage.erasure.forget).
``engage verdicts`` recomputes verdicts and checks their rules (engage.verdicts.cli).
``engage dashboard-user NAME`` prints a ``[dashboard] users`` entry for a new password.
``engage metrics rebuild`` recomputes the metrics aggregates of a window from the raw events;
``engage metrics fold`` folds closed hours now (engage.metrics.fold).
``engage purge-data`` deletes every engage key from Redis (engage.admin.purge).
``engage migrate-layout`` moves layout-1 data into the shards of layout 2 (engage.admin.migrate).
``engage api-key new`` prints a new events API key.

Exit codes: 0 fine (warnings allowed unless --strict), 1 something is wrong, 2 bad usage.
Imports neither Flask nor pymilter, so it runs on every engage host.
"""
from __future__ import annotations

import argparse
import getpass
import json
import secrets
import sys
import time
from collections.abc import Sequence

import redis

from engage import settings as settings_mod
from engage.admin import doctor, migrate, purge
from engage.dashboard.passwords import make_hash
from engage.erasure.forget import Forgetter, Summary
from engage.erasure.scrub import Address
from engage.metrics import fold
from engage.metrics import rebuild as metricsrebuild
from engage.store.events import EventError
from engage.store.redisconn import connect
from engage.verdicts import cli as verdictscli

MIN_PASSWORD = 8
API_KEY_BYTES = 32  # 256 bits, 43 characters of base64url


def _topics(text: str) -> frozenset[str]:
    topics = frozenset(t.strip() for t in text.split(",") if t.strip())
    unknown = topics - set(doctor.TOPICS)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown check {', '.join(sorted(unknown))} (choose from {', '.join(doctor.TOPICS)})")
    return topics


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="engage", description="Administer an engage installation (open and click "
        "tracking for Postfix and Sendmail).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = sub.add_parser(
        "doctor", help="check the live installation and say what is wrong",
        description="Check the live installation: the settings; Redis (reachable, persistence "
        "on, no eviction of links, a replica in a Cluster); the milter socket (answers, usable "
        "by Postfix); Postfix's milter settings as Postfix reads them (every milter of "
        "smtpd_milters and non_smtpd_milters answers, engage ahead of any DKIM signer, no "
        "inline comment, a valid milter_default_action); every tracking URL (resolves, TLS "
        "certificate, the redirector's /healthz answers through it); the nginx site; the "
        "client address the redirector derives through the proxies; with --probe, a real "
        "message through Postfix. Prints one finding per line (ok, WARN, ERROR, skip), each "
        "problem with its fix; exits 1 on any ERROR.",
        epilog="Run it as root (it reads the settings and Postfix's configuration). On a host "
        "that only runs the redirector: engage doctor --skip milter,postfix. ENGAGE_* "
        "environment variables override the settings file, as for the services.")
    check.add_argument("--config", help=f"settings file (default {settings_mod.DEFAULT_CONFIG})")
    check.add_argument("--postfix-config", metavar="DIR",
                       help="Postfix configuration directory (default: postconf's, /etc/postfix)")
    check.add_argument("--skip", type=_topics, default=frozenset(), metavar="CHECK[,CHECK]",
                       help=f"leave out checks: {', '.join(doctor.TOPICS[1:])}")
    check.add_argument("--mta-user", default="postfix",
                       help="the user the MTA connects to the milter as (default postfix)")
    check.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                       help="per network check (default 5)")
    check.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    check.add_argument("--probe", metavar="ADDRESS",
                       help="also send one real tracked message to ADDRESS through the local "
                       "Postfix and check that engage tracked it")
    check.add_argument("--probe-from", metavar="ADDRESS",
                       help="the probe's sender (default engage-doctor@this host's name)")
    check.add_argument("--smtp", default=doctor.DEFAULT_SMTP, metavar="HOST:PORT",
                       help=f"where the probe is submitted (default {doctor.DEFAULT_SMTP})")
    check.add_argument("--nginx-dir", default="/etc/nginx", metavar="DIR",
                       help="nginx's configuration directory (default /etc/nginx)")
    check.add_argument("--service-user", default="engage",
                       help="the user the engage services run as (default engage)")
    forget = sub.add_parser(
        "forget", help="erase a recipient address from Redis (GDPR erasure)",
        description="Erase ADDRESS (any case): delete every event that mentions it, with its "
        "index entries, verdict overrides and copies in webhook queues and dead letters; "
        "rewrite the message records of its messages without address, sender, subject, "
        "Message-ID, queue id or metadata, and cut it out of link URLs, so every link keeps "
        "redirecting. Aggregate counts stay. Safe while the services run; running it again "
        "finds nothing to do.",
        epilog="Reads every key once (SCAN) and every event once, in chunks. ENGAGE_* "
        "environment variables override the settings file. The same as POST "
        "/api/v1/recipients/forget.")
    forget.add_argument("address", type=_address, help="the recipient's email address")
    forget.add_argument("--config", help=f"settings file (default {settings_mod.DEFAULT_CONFIG})")
    forget.add_argument("--json", action="store_true", help="print the summary as JSON")
    verdictscli.add_parser(sub)
    _metrics_parser(sub)
    _dashboard_user_parser(sub)
    purge.add_parser(sub)
    migrate.add_parser(sub)
    _api_key_parser(sub)
    return parser.parse_args(argv)


def _address(text: str) -> Address:
    try:
        return Address.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def describe(address: Address, summary: Summary) -> str:
    """The summary for a person: what changed, what was read, what was left."""
    read = (f"read {summary.keys_scanned} keys and {summary.events_scanned} events "
            f"in {summary.seconds:.2f} s")
    lines = [f"nothing to forget for {address.text} ({read})"] if not summary.changed else [
        f"forgot {address.text}:",
        f"  events deleted: {summary.events} (index entries {summary.index_entries}, "
        f"index keys {summary.index_keys}, verdict overrides {summary.verdicts})",
        f"  message records scrubbed: {summary.messages}, templates: {summary.templates}, "
        f"aggregate fields: {summary.aggregate_fields}",
        f"  webhook batches rewritten: {summary.webhook_batches}, "
        f"dead letters: {summary.dead_letters}",
        f"  {read}"]
    if summary.unknown_keys:
        lines.append("ERROR: incomplete: these keys belong to no engage key family, so "
                     "forget cannot tell whether they hold the address; they were left as "
                     "they are (look at them, delete them or report a bug): "
                     + " ".join(summary.unknown_keys))
    if summary.uncompacted:
        lines.append("WARNING: not compacted, for lack of room below the events high-water "
                     "mark: " + " ".join(summary.uncompacted) + ". The deleted events are gone "
                     "from every answer, but their bytes stay in Redis's memory, snapshots and "
                     "AOF until retention trims them ([events] retention_days)")
    return "\n".join(lines)


def run_forget(args: argparse.Namespace) -> int:
    settings = settings_mod.load_or_exit("engage forget", args.config)
    client = connect(settings.redis_url)
    try:
        summary = Forgetter(client, settings.key_prefix,
                            high_water=settings.events_high_water).forget(args.address)
    except redis.RedisError as exc:
        print(f"engage forget: redis failed: {exc} (nothing is half-done that a second "
              "run does not finish: run it again)", file=sys.stderr)
        return 1
    print(json.dumps(summary.as_dict(), allow_nan=False) if args.json else describe(args.address, summary))
    return 1 if summary.unknown_keys else 0


def _hour(text: str) -> int:
    hour = metricsrebuild.parse_hour(text)
    if hour is None:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DDTHH:MM (UTC), got {text!r}")
    return hour


def _metrics_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    metrics = sub.add_parser("metrics", help="maintain the metrics aggregates")
    actions = metrics.add_subparsers(dest="action", required=True, metavar="ACTION")
    rebuild = actions.add_parser(
        "rebuild", help="recompute the aggregates of a window from the raw events",
        description="Recompute the opens/clicks aggregates of the whole UTC hours from FROM "
        "to TO (exclusive) from the raw events, applying the verdict overrides; sent counts "
        "are kept. Raw events older than [events] retention_days are gone: such a window is "
        "refused. The current hour is left to the live counters.")
    rebuild.add_argument("--from", dest="start", type=_hour, required=True,
                         metavar="YYYY-MM-DDTHH:MM", help="first hour (UTC; minutes ignored)")
    rebuild.add_argument("--to", dest="end", type=_hour, metavar="YYYY-MM-DDTHH:MM",
                         help="end, exclusive (UTC; default: the start of the current hour)")
    rebuild.add_argument("--config", help=f"settings file (default {settings_mod.DEFAULT_CONFIG})")
    folding = actions.add_parser(
        "fold", help="fold closed hours into one bucket each now",
        description="Merge the shards' buckets of closed hours into one per hour (the "
        "webhooks worker does it every minute). With --from, from that hour on (hours "
        "written late), else from where the last fold stopped.")
    folding.add_argument("--from", dest="start", type=_hour, metavar="YYYY-MM-DDTHH:MM")
    folding.add_argument("--hours", type=int, default=fold.FOLD_HOURS,
                         help=f"hours at most (default {fold.FOLD_HOURS})")
    folding.add_argument("--config", help=f"settings file (default {settings_mod.DEFAULT_CONFIG})")


def metrics_fold(args: argparse.Namespace) -> int:
    settings = settings_mod.load_or_exit("engage", args.config)
    try:
        report = fold.run(connect(settings.redis_url, timeout=30.0), settings.key_prefix,
                          time.time(), settings.metrics_retention_days, args.hours, args.start)
    except (redis.RedisError, EventError) as exc:
        print(f"engage: fold failed (run it again to finish): {exc}", file=sys.stderr)
        return 1
    print(f"folded {report.hours} hours ({report.buckets} shard buckets merged); "
          + ("paused by a rebuild" if report.paused else f"next: {report.next_hour}:00Z"))
    return 0


def metrics_rebuild(args: argparse.Namespace) -> int:

    settings = settings_mod.load_or_exit("engage", args.config)
    now = time.time()
    client = connect(settings.redis_url, timeout=30.0)
    try:
        report = metricsrebuild.rebuild(client, settings.key_prefix, args.start,
                                        int(now) if args.end is None else args.end,
                                        settings.metrics_retention_days, now)
    except metricsrebuild.RebuildError as exc:
        print(f"engage: {exc}", file=sys.stderr)
        return 1
    except redis.RedisError as exc:
        print(f"engage: rebuild failed: {exc}", file=sys.stderr)
        return 1
    print(f"rebuilt {report.hours} hours ({report.first_hour}:00Z to {report.last_hour}:59Z) "
          f"from {report.events} events, {report.overrides} verdict overrides applied, "
          f"{report.flags_fixed} message flags corrected")
    return 0


def _dashboard_user_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = sub.add_parser(
        "dashboard-user", help="print a [dashboard] users entry (name:password hash)",
        description="Ask for a password (twice) and print NAME:HASH, the entry to add to "
        "[dashboard] users in the settings file (entries are separated by commas). The "
        "password itself is stored nowhere.")
    user.add_argument("name", help="the login name (letters, digits, ._@+-)")
    user.add_argument("--password-stdin", action="store_true",
                      help="read the password from the first line of standard input")
    user.add_argument("--method", choices=("scrypt", "pbkdf2"), default="scrypt",
                      help="hash function (default scrypt)")


def dashboard_user(args: argparse.Namespace) -> int:
    if not settings_mod.USER_NAME.fullmatch(args.name):
        print("engage: the name may hold letters, digits and ._@+- only", file=sys.stderr)
        return 2
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("engage: the passwords differ", file=sys.stderr)
            return 1
    if len(password) < MIN_PASSWORD:
        print(f"engage: use at least {MIN_PASSWORD} characters", file=sys.stderr)
        return 1
    print(f"{args.name}:{make_hash(password, args.method)}")
    return 0


def _api_key_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    keys = sub.add_parser("api-key", help="make an events API key")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser(
        "new", help="print a new random API key",
        description=f"Print a new random key ({API_KEY_BYTES * 8} bits, base64url) for "
        "[api] keys in the settings file (keys are separated by commas), then restart "
        "engage-redirector. The key is stored nowhere else.")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "api-key":
        print(secrets.token_urlsafe(API_KEY_BYTES))
        return 0
    if args.command == "purge-data":
        return purge.run(args, doctor.redacted)
    if args.command == "forget":
        return run_forget(args)
    if args.command == "migrate-layout":
        return migrate.run(args)
    if args.command == "verdicts":
        return verdictscli.run(args)
    if args.command == "metrics":
        return metrics_fold(args) if args.action == "fold" else metrics_rebuild(args)
    if args.command == "dashboard-user":
        return dashboard_user(args)
    options = doctor.Options(config=args.config, postfix_config=args.postfix_config,
                             skip=args.skip, timeout=args.timeout, mta_user=args.mta_user,
                             service_user=args.service_user, nginx_dir=args.nginx_dir,
                             probe=args.probe, probe_from=args.probe_from, smtp=args.smtp)
    findings = doctor.run(options)
    print(doctor.render(findings))
    return doctor.exit_status(findings, args.strict)


if __name__ == "__main__":
    sys.exit(main())
