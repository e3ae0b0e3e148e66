"""The command line of ``engage-webhooks`` (engage.webhooks.cli): sub-commands and options."""
from __future__ import annotations

import argparse
from collections.abc import Sequence

from engage import settings as settings_mod
from engage.store.events import TYPES
from engage.webhooks import config
from engage.webhooks.payload import FORMATS


def _events(text: str) -> tuple[str, ...]:
    return tuple(kind.strip() for kind in text.split(",") if kind.strip())


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def _delivery_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", help="URL that receives the POSTed batches")
    parser.add_argument("--format", choices=FORMATS,
                        help="sparkpost (default: msys batches) or events (one Resend-shaped "
                             "{type: email.opened|email.clicked, ...} object per POST)")
    parser.add_argument("--events", type=_events,
                        help=f"comma-separated event types, of {','.join(TYPES)} "
                             f"(default {','.join(config.DEFAULT_EVENTS)})")
    parser.add_argument("--auth", choices=config.AUTH_TYPES, help="authentication (default none)")
    parser.add_argument("--username", help="basic auth user name")
    parser.add_argument("--password", help="basic auth password (or env:NAME)")
    parser.add_argument("--token-url", help="oauth2: the token endpoint")
    parser.add_argument("--client-id", help="oauth2 client id")
    parser.add_argument("--client-secret", help="oauth2 client secret (or env:NAME)")
    parser.add_argument("--scope", help="oauth2: scope to ask for (optional)")
    parser.add_argument("--header", type=_header, action="append", metavar="'NAME: VALUE'",
                        help="custom header sent with every batch (repeatable; replaces them)")
    parser.add_argument("--signature", choices=config.SCHEMES, dest="signature_scheme",
                        help="standard (default: Standard Webhooks headers, as Svix and "
                             "Resend send) or engage (X-Engage-Signature)")
    parser.add_argument("--signing-secret",
                        help="the secret (standard: whsec_..., e.g. the one your Resend or "
                             "Svix receiver has) or env:NAME")
    parser.add_argument("--sign", action="store_true",
                        help="generate a signing secret (printed once)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="engage-webhooks",
        description="SparkPost-compatible event webhooks: manage them, and run the worker "
                    "that delivers their batches (`run`, in the foreground, logs to stderr).",
        epilog="Environment: ENGAGE_CONFIG, ENGAGE_REDIS_URL, ENGAGE_KEY_PREFIX, "
               "ENGAGE_WEBHOOK_* ... override the settings file. See README.md, section Webhooks.")
    parser.add_argument("--config", help=f"settings file (default {settings_mod.DEFAULT_CONFIG})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    create = sub.add_parser("create", help="add a webhook (after a successful validation ping)")
    create.add_argument("--name", required=True)
    _delivery_options(create)
    create.add_argument("--inactive", action="store_true", help="create it switched off")

    listing = sub.add_parser("list", help="show the webhooks (secrets masked)")
    listing.add_argument("--json", action="store_true", help="full definitions as JSON")

    update = sub.add_parser("update", help="change a webhook (pings again if delivery changes)")
    update.add_argument("id")
    update.add_argument("--name")
    _delivery_options(update)
    update.add_argument("--no-headers", action="store_true", help="remove every custom header")
    update.add_argument("--no-signature", action="store_true", help="stop signing batches")
    state = update.add_mutually_exclusive_group()
    state.add_argument("--active", dest="active", action="store_true", default=None)
    state.add_argument("--inactive", dest="active", action="store_false")

    delete = sub.add_parser("delete", help="remove a webhook, its queue and its status")
    delete.add_argument("id")

    batches = sub.add_parser("batches", help="pending batches and the attempts of the last 24 h")
    batches.add_argument("id", nargs="?", help="one webhook (default: all)")
    batches.add_argument("--limit", type=int, default=50, help="attempts shown per webhook")

    dead = sub.add_parser("dead-letters", help="batches parked after the retry window, "
                                                       "newest first (of every shard)")
    dead.add_argument("--webhook", help="only this webhook's")

    replay = sub.add_parser("replay", help="send dead letters again (same batch id)")
    replay.add_argument("ids", nargs="*", metavar="DEAD_LETTER_ID")
    replay.add_argument("--all", action="store_true", help="every dead letter (of --webhook)")
    replay.add_argument("--webhook", help="with --all: only this webhook's")

    discard = sub.add_parser("discard", help="drop dead letters for good")
    discard.add_argument("ids", nargs="*", metavar="DEAD_LETTER_ID")
    discard.add_argument("--all", action="store_true", help="every dead letter (of --webhook)")
    discard.add_argument("--webhook", help="with --all: only this webhook's")

    sub.add_parser("run", help="deliver batches (the worker), in the foreground")
    sub.add_parser("check-config", help="print the effective settings and exit")
    return parser.parse_args(argv)
