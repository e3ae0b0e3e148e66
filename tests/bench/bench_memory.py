#!/usr/bin/env python3
"""Redis memory per tracked message and per event, a script (not a test) that prints figures.

    python3 tests/bench/bench_memory.py [--messages 1000000] [--links 150] [--events N]
        [--event-messages 100000]

One campaign (one template of ``--links`` links) sent to ``--messages`` recipients, each
message registered through the real ``LinkStore.register`` (what the milter calls), into
a private redis-server with its default settings but ``--listpack-value``. Prints ``INFO memory`` before and
after and the bytes per message, and the size of one record's value. With ``--events``,
then that many click and open events of those messages (half each, built by the real
``build_event`` with the judge's verdict and appended by ``EventLog``, indexes and hourly
counters included) and the bytes per event. Messages and events spread over the 24 shards as in production.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "redirector"))
sys.path.insert(0, str(ROOT / "tests"))

import redis  # noqa: E402

from engage.store.events import EventLog, RequestFacts, build_event  # noqa: E402
from engage.store.links import (  # noqa: E402
    Link,
    LinkStore,
    MessageRecord,
    Resolved,
    Template,
    new_message_key,
)
from engage.verdicts.machines import load, rule_files, shipped_rules  # noqa: E402
from engage.verdicts.rules import Facts, Thresholds, classify, engage_object  # noqa: E402
from support.procs import RedisServer  # noqa: E402

MEMORY_FIELDS = ("used_memory", "used_memory_dataset", "mem_allocator")


def campaign_template(links: int) -> Template:
    return Template(
        links=tuple(Link(f"https://shop.example.com/products/item-{n}?utm_source=newsletter"
                         f"&utm_campaign=black-friday-2026", f"product-{n}") for n in range(links)),
        campaign_id="black-friday-2026", tags=("newsletter", "promo"),
        friendly_from="news@shop.example.com", sending_domain="shop.example.com")


def record_for(number: int, template_id: str) -> MessageRecord:
    """A typical per-recipient record: address, envelope, Message-ID, queue id, metadata."""
    return MessageRecord(
        rcpt_to=(f"customer{number:07d}@mail.example.net",),
        mail_from="bounces@shop.example.com", subject="Black Friday: 40% off everything",
        message_id=f"<20261129.{number:07d}.4f2a@shop.example.com>",
        queue_id=f"4Z{number:08X}", injection_time=1796000000 + number // 100,
        metadata={"user_id": f"{number:07d}"}, template_id=template_id)


def register_all(store: LinkStore, template: Template, first: int, count: int,
                 kept: list[tuple[str, int]], keep: int = 100_000) -> None:
    for number in range(first, first + count):
        key = new_message_key()
        store.register(key, template, record_for(number, template.template_id))
        if len(kept) < keep:
            kept.append((key, number))


AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/131.0.0.0 Safari/537.36")


APPLE_PROXY = "Mozilla/5.0"  # Apple Mail Privacy Protection's opens (machines.conf)


def append_events(client: redis.Redis, template: Template, messages: list[tuple[str, int]],
                  count: int) -> float:
    """``count`` events (clicks and opens alternately) of the given messages, each with
    the verdict the redirector's judge gives it (every fourth open through Apple's
    proxy): seconds taken."""
    log = EventLog(client)
    rules, limits = load(rule_files(shipped_rules(), ())), Thresholds()
    started = time.monotonic()
    batch, tokens = [], []
    for number in range(count):
        key, registered = messages[number % len(messages)]
        link = template.links[number % len(template.links)] if number % 2 else None
        resolved = Resolved(key, template, record_for(registered, template.template_id), link)
        kind = "click" if link else "open"
        ip, agent = f"198.51.{number % 250}.{number % 200}", AGENT
        if number % 8 == 0:
            ip, agent = f"17.58.{number % 250}.{number % 200}", APPLE_PROXY
        facts = Facts(kind, "GET", ip, agent, 3600.0)
        engage = engage_object(classify(facts, rules, limits), facts)
        batch.append(build_event(kind, resolved, RequestFacts(ip, agent, "en-US,en;q=0.9"),
                                 time.time(), engage))
        tokens.append(resolved)  # stored referring to its message, as the redirector does
        if len(batch) == 500:
            log.append_many(batch, resolved=tokens)
            batch, tokens = [], []
    log.append_many(batch, resolved=tokens)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--links", type=int, default=150)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--event-messages", type=int, default=100_000,
                        help="how many of the messages the events are spread over")
    parser.add_argument("--listpack-value", type=int, default=256,
                        help="Redis's hash-max-listpack-value (engage doctor advises 256; "
                             "Redis's default is 64)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="engage-bench-mem-") as workdir:
        server = RedisServer(Path(workdir)).start()
        try:
            client = redis.Redis.from_url(server.url)
            client.config_set("hash-max-listpack-value", options.listpack_value)
            template = campaign_template(options.links)
            store = LinkStore(client)
            before = client.info("memory")
            started = time.monotonic()
            share = options.messages // options.threads
            kept: list[tuple[str, int]] = []
            threads = [threading.Thread(target=register_all, args=(
                store, template, n * share,
                share if n < options.threads - 1 else options.messages - n * share, kept,
                options.event_messages))
                for n in range(options.threads)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
            after = client.info("memory")
            base = record_for(0, template.template_id)
            sample = record_for(1, template.template_id).to_text(base).encode()
            print(f"{options.messages} messages of one {options.links}-link campaign "
                  f"registered in {elapsed:.1f} s ({options.messages / elapsed:.0f}/s), "
                  f"{client.dbsize()} keys")
            for name in MEMORY_FIELDS:
                print(f"  INFO memory {name}: before {before[name]}  after {after[name]}")
            grown = after["used_memory"] - before["used_memory"]
            print(f"  one record value, against its bucket's base: {len(sample)} bytes "
                  f"(whole: {len(base.to_text().encode())}): {sample!r}")
            print(f"  template value: {len(template.to_json().encode())} bytes (stored once)")
            print(f"bytes per message: {grown / options.messages:.1f} "
                  f"(used_memory grew {grown / 2**20:.1f} MiB; target 150)")
            if options.events:
                seconds = append_events(client, template, kept, options.events)
                final = client.info("memory")["used_memory"]
                per_event = (final - after["used_memory"]) / options.events
                print(f"{options.events} events of {len(kept)} messages appended in "
                      f"{seconds:.1f} s ({options.events / seconds:.0f}/s)")
                print(f"bytes per event (stream entry, indexes, counters, status): "
                      f"{per_event:.1f} (target 500)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
