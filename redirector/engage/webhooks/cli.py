"""``engage-webhooks``: manage SparkPost-style webhooks and run their delivery worker.

Sub-commands: create, list, update, delete, batches, dead-letters, replay, discard,
run. Creating a webhook (or changing where or how it is delivered) first checks that the
target resolves to public addresses only (unless ``[webhooks] allow_private_targets``),
then sends SparkPost's validation ping and refuses the target unless it answers 2xx.
Exit codes: 0 done, 1 refused or not found, 2 bad usage, 78 bad settings. Secrets may
be given as ``env:NAME`` to keep them out of the process list and shell history.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Callable, overload

import redis

from engage import settings as settings_mod
from engage.logsetup import configure_logging
from engage.store.redisconn import connect
from engage.webhooks import config, deliver, signature, targets
from engage.webhooks.cliargs import parse_args
from engage.webhooks.config import ConfigError, Webhook
from engage.webhooks.store import NotFound, WebhookStore

DELIVERY_FIELDS = ("target", "auth_type", "auth_credentials", "auth_request_details",
                   "custom_headers", "signing_secret", "format", "signature_scheme")


class Refused(Exception):
    """The command cannot be carried out; the message says why (exit 1)."""


@overload
def _secret(value: str) -> str: ...
@overload
def _secret(value: None) -> None: ...
def _secret(value: str | None) -> str | None:
    if value is not None and value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise Refused(f"environment variable {name} is not set")
        return os.environ[name]
    return value


# --------------------------------------------------------------------------- definitions

def _auth_fields(args: argparse.Namespace, current: Webhook | None) -> dict[str, Any]:
    auth_type = args.auth or (current.auth_type if current else "none")
    fields: dict[str, Any] = {"auth_type": auth_type}
    if auth_type == "basic":
        creds = dict(current.auth_credentials) if current else {}
        if args.username is not None:
            creds["username"] = args.username
        if args.password is not None:
            creds["password"] = _secret(args.password)
        fields.update(auth_credentials=creds, auth_request_details={})
    elif auth_type == "oauth2":
        details = dict(current.auth_request_details) if current else {}
        body = dict(details.get("body", {}))
        for key, value in (("client_id", args.client_id), ("scope", args.scope),
                           ("client_secret", _secret(args.client_secret))):
            if value is not None:
                body[key] = value
        details = {"url": args.token_url or details.get("url", ""), "body": body}
        fields.update(auth_request_details=details, auth_credentials={})
    else:
        fields.update(auth_credentials={}, auth_request_details={})
    return fields


def _changes(args: argparse.Namespace, current: Webhook | None) -> dict[str, Any]:
    changes: dict[str, Any] = _auth_fields(args, current)
    for name in ("name", "target", "events", "format", "signature_scheme"):
        if getattr(args, name, None) is not None:
            changes[name] = getattr(args, name)
    if args.header is not None:
        changes["custom_headers"] = dict(args.header)
    elif getattr(args, "no_headers", False):
        changes["custom_headers"] = {}
    if args.sign:
        scheme = changes.get("signature_scheme") or (current.signature_scheme if current
                                                     else "standard")
        changes["signing_secret"] = (signature.new_secret() if scheme == "standard"
                                     else secrets.token_urlsafe(32))
    elif args.signing_secret is not None:
        changes["signing_secret"] = _secret(args.signing_secret)
    elif getattr(args, "no_signature", False):
        changes["signing_secret"] = ""
    return changes


def _ping(hook: Webhook, settings: settings_mod.Settings) -> None:
    """The target (and token endpoint) must be allowed (engage.webhooks.targets), then
    answer the validation ping."""
    allow = settings.webhook_allow_private_targets
    urls = [hook.target] + ([str(hook.auth_request_details.get("url", ""))]
                            if hook.auth_type == "oauth2" else [])
    for url in urls:
        try:
            targets.check_target(url, allow)
        except OSError as exc:
            raise Refused(f"target {url} refused: {exc}") from None
    answer = deliver.ping(hook, settings.webhook_timeout, allow)
    if not answer.ok:
        reason = f"answered HTTP {answer.status}" if answer.status else answer.error
        raise Refused(f"target {hook.target} refused the validation ping: {reason} "
                      "(it must answer 2xx)")


def cmd_create(args: argparse.Namespace, store: WebhookStore, settings: settings_mod.Settings
               ) -> int:
    if not args.target:
        raise Refused("--target is required")
    if args.events is None:  # initial_open is asked for by name (anymail: "unknown")
        args.events = config.DEFAULT_EVENTS
    hook = config.validate(Webhook(id=secrets.token_hex(8), name=args.name, target=args.target,
                                   active=not args.inactive, created=time.time(),
                                   **{k: v for k, v in _changes(args, None).items()
                                      if k not in ("name", "target")}))
    _ping(hook, settings)
    store.create(hook)
    print(hook.id)
    if args.sign:
        print(f"signing secret (shown once): {hook.signing_secret}")
    return 0


def cmd_update(args: argparse.Namespace, store: WebhookStore, settings: settings_mod.Settings
               ) -> int:
    current = store.get(args.id)
    changes = _changes(args, current)
    if args.active is not None:
        changes["active"] = args.active
    hook = current.with_changes(**changes)
    if any(getattr(hook, f) != getattr(current, f) for f in DELIVERY_FIELDS):
        _ping(hook, settings)
    store.update(hook, current)
    print(f"updated {hook.id}")
    if args.sign:
        print(f"signing secret (shown once): {hook.signing_secret}")
    return 0


def cmd_list(args: argparse.Namespace, store: WebhookStore, _: settings_mod.Settings) -> int:
    hooks = store.all()
    if args.json:
        print(json.dumps([hook.public() for hook in hooks], indent=2, allow_nan=False))
        return 0
    rows = [(h.id, h.name, "yes" if h.active else "no", ",".join(h.events), h.auth_type,
             h.signature_scheme if h.signing_secret else "no", h.target) for h in hooks]
    _table(("ID", "NAME", "ACTIVE", "EVENTS", "AUTH", "SIGNED", "TARGET"), rows)
    return 0


def cmd_delete(args: argparse.Namespace, store: WebhookStore, _: settings_mod.Settings) -> int:
    store.delete(args.id)
    print(f"deleted {args.id}")
    return 0


# --------------------------------------------------------------------------- status

def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def cmd_batches(args: argparse.Namespace, store: WebhookStore, _: settings_mod.Settings) -> int:
    hooks = [store.get(args.id)] if args.id else store.all()
    for hook in hooks:
        print(f"== {hook.id} {hook.name} -> {hook.target}")
        pending = store.pending(hook.id)
        print(f"pending batches: {len(pending)}")
        if pending:
            _table(("BATCH", "SIZE", "ATTEMPTS", "NEXT ATTEMPT (UTC)", "FIRST TRY (UTC)"),
                   [(b.id, b.size, b.attempts, _when(due), _when(b.created_ms / 1000))
                    for b, due in pending])
        _table(("TIME (UTC)", "BATCH", "SIZE", "ATTEMPT", "CODE", "LATENCY MS", "OUTCOME",
                "ERROR"),
               [(_when(a.when), a.batch, a.size, a.attempt, a.code or "-", a.latency_ms,
                 a.outcome, a.error) for a in store.attempts(hook.id, args.limit)])
    return 0


def cmd_dead_letters(args: argparse.Namespace, store: WebhookStore, _: settings_mod.Settings
                     ) -> int:
    rows = [(d["id"], d["webhook"], d["batch"], d["size"], d["attempts"], d["code"], d["error"],
             _when(float(d["parked"]))) for d in store.dead_letters(args.webhook)]
    _table(("ID", "WEBHOOK", "BATCH", "SIZE", "ATTEMPTS", "LAST CODE", "ERROR", "PARKED (UTC)"),
           rows)
    return 0


def _dead_ids(args: argparse.Namespace, store: WebhookStore) -> list[str]:
    if args.all == bool(args.ids):
        raise Refused("give dead-letter ids or --all")
    return list(args.ids) or [d["id"] for d in store.dead_letters(args.webhook)]


def cmd_replay(args: argparse.Namespace, store: WebhookStore, _: settings_mod.Settings) -> int:
    for dead_id in _dead_ids(args, store):
        batch_id = store.replay(dead_id)
        print(f"replaying {dead_id} as batch {batch_id}")
    return 0


def cmd_discard(args: argparse.Namespace, store: WebhookStore, _: settings_mod.Settings) -> int:
    for dead_id in _dead_ids(args, store):
        store.discard(dead_id)
        print(f"discarded {dead_id}")
    return 0


def cmd_run(_: argparse.Namespace, store: WebhookStore, settings: settings_mod.Settings) -> int:
    from engage.webhooks.worker import Worker

    worker = Worker(store.client, settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop.set())
    worker.run()
    return 0


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


COMMANDS: dict[str, Callable[[argparse.Namespace, WebhookStore, settings_mod.Settings], int]] = {
    "create": cmd_create, "list": cmd_list, "update": cmd_update, "delete": cmd_delete,
    "batches": cmd_batches, "dead-letters": cmd_dead_letters, "replay": cmd_replay,
    "discard": cmd_discard, "run": cmd_run,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_mod.load_or_exit("engage-webhooks", args.config)
    if args.command == "check-config":
        print(settings_mod.describe(settings))
        return 0
    configure_logging(settings.log_level)
    store = WebhookStore(connect(settings.redis_url), settings.key_prefix,
                         settings.webhook_status_retention)
    try:
        return COMMANDS[args.command](args, store, settings)
    except (Refused, ConfigError) as exc:
        print(f"engage-webhooks: {exc}", file=sys.stderr)
    except NotFound as exc:
        print(f"engage-webhooks: not found: {exc.args[0]}", file=sys.stderr)
    except redis.RedisError as exc:
        print(f"engage-webhooks: redis: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
