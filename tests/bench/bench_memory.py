#!/usr/bin/env python3
"""Redis memory per tracked message, a script (not a test) that prints figures.

    python3 tests/bench/bench_memory.py [--messages 1000000] [--links 150]

One campaign (one template of ``--links`` links) sent to ``--messages`` recipients, each
message registered through the real ``LinkStore.register`` (what the milter calls), into
a private redis-server with its default settings. Prints ``INFO memory`` before and
after and the bytes per message, and the size of one record's value.
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

from engage.store.links import Link, LinkStore, MessageRecord, Template, new_message_key  # noqa: E402
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


def register_all(store: LinkStore, template: Template, first: int, count: int) -> None:
    for number in range(first, first + count):
        store.register(new_message_key(), template, record_for(number, template.template_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--links", type=int, default=150)
    parser.add_argument("--threads", type=int, default=4)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="engage-bench-mem-") as workdir:
        server = RedisServer(Path(workdir)).start()
        try:
            client = redis.Redis.from_url(server.url)
            template = campaign_template(options.links)
            store = LinkStore(client)
            before = client.info("memory")
            started = time.monotonic()
            share = options.messages // options.threads
            threads = [threading.Thread(target=register_all, args=(
                store, template, n * share,
                share if n < options.threads - 1 else options.messages - n * share))
                for n in range(options.threads)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
            after = client.info("memory")
            sample = record_for(0, template.template_id).to_text().encode()
            print(f"{options.messages} messages of one {options.links}-link campaign "
                  f"registered in {elapsed:.1f} s ({options.messages / elapsed:.0f}/s), "
                  f"{client.dbsize()} keys")
            for name in MEMORY_FIELDS:
                print(f"  INFO memory {name}: before {before[name]}  after {after[name]}")
            grown = after["used_memory"] - before["used_memory"]
            print(f"  one record value: {len(sample)} bytes: {sample!r}")
            print(f"  template value: {len(template.to_json().encode())} bytes (stored once)")
            print(f"bytes per message: {grown / options.messages:.1f} "
                  f"(used_memory grew {grown / 2**20:.1f} MiB)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
