"""The key registry (engage.store.keys): every key engage writes has a family, and no
product module spells a key name itself."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from engage.store import keys
from engage.store.keys import FAMILIES, Erasure, family_of

P = "engage:"
MK = "AbCdEfGhIjKlMnOp"  # a message key: its shard is keys.shard_of(MK)
REPO = Path(__file__).resolve().parents[2]
BUILT = {
    "template": keys.template(P, "tid123", 5),
    "message": keys.message(P, MK),
    "message bucket": keys.message_bucket(P, MK + "qrstuv"),
    "status": keys.status(P, MK),
    "events": keys.events(P, 3),
    "event index": keys.event_index(P, 3, "click", listed=True),
    "event subset index": keys.event_index(P, 3, "click", "r", "jane@example.org", listed=True),
    "event index before 2026-12": keys.event_index(P, 3, "click", "r", "jane@example.org"),
    "verdict overrides": keys.verdicts(P, 3),
    "aggregates": keys.aggregate(P, 3, "l", "2026-12-07T15"),
    "burst": keys.burst(P, MK, 1700000000),
    "trap clients": keys.trap_clients(P, MK),
    "click rate limit": keys.rate_limit(P, "2001:db8::", 123),
    "login rate limit": keys.rate_limit(keys.login_limit_prefix(P), "192.0.2.0", 5),
    "webhook ids": keys.webhook_ids(P),
    "webhook dead letters": keys.webhook_dead(P, 3),
    "webhook batches": keys.webhook_batches(P, "h1", 3),
    "webhook due": keys.webhook_due(P, "h1", 3),
    "webhook attempts": keys.webhook_log(P, "h1"),
    "webhook": keys.webhook(P, "h1"),
    "stream compaction": keys.compacting(P, keys.events(P, 3)),
    "append ids": keys.append_ids(P, 3, 17000000001),
    "pending clicks": keys.pending_clicks(P, 3),
    "repeat open": keys.repeat_open(P, MK, "o", "Zm9v"),
    "open limit": keys.open_limit(P, "192.0.2.0", 28333333),
    "dropped events": keys.dropped(P),
    "layout": keys.layout(P),
    "recipient domains": keys.aggregate(P, 3, "d", "2026-12-07T15"),
    "folded aggregates": keys.folded(P, "e", "2026-12-07T15"),
    "folding aggregates": keys.folding(P, 3, "l", "2026-12-07T15"),
    "fold sequence": keys.fold_seq(P, 3),
    "fold cursor": keys.fold_cursor(P),
}
LAYOUT1 = {  # the same families under layout 1's names (no shard tag): still claimed
    "template": keys.template(P, "tid123", keys.LAYOUT1),
    "message": keys.message(P, MK, keys.LAYOUT1),
    "status": keys.status(P, MK, keys.LAYOUT1),
    "events": keys.events(P, keys.LAYOUT1),
    "event index before 2026-12": keys.event_index(P, keys.LAYOUT1, "open", "c", "spring"),
    "aggregates": keys.aggregate(P, keys.LAYOUT1, "e", "2026-12-07T15"),
    "webhook batches": keys.webhook_batches(P, "h1", keys.LAYOUT1),
    "webhook dead letters": keys.webhook_dead(P, keys.LAYOUT1),
}


@pytest.mark.parametrize("name", sorted(LAYOUT1))
def test_layout_1_names_are_the_old_ones_and_still_claimed(name):
    key = LAYOUT1[name]
    assert key.startswith(P) and "{" not in key
    assert family_of(P, key).name == name


def test_the_shard_tags_are_pinned_and_spread_evenly_over_the_slots():
    """A link sent today resolves in years: the tags never change. Each sits in its own
    24th of the 16384 slots, so an even split over 1, 2, 3, 4, 6, 8 or 12 masters gives
    each master the same number of shards."""
    from redis.crc import key_slot
    assert keys.SHARD_TAGS == ("8n", "bq", "ps", "ei", "wk", "3v", "md", "ss", "aq", "tk",
                               "fi", "3w", "9v", "ci", "qk", "dq", "b7", "p5", "6v", "rk",
                               "x8", "us", "s5", "a7")
    slots = [key_slot(tag.encode()) for tag in keys.SHARD_TAGS]
    assert [slot * keys.SHARDS // 16384 for slot in slots] == list(range(keys.SHARDS))
    for masters in (1, 2, 3, 4, 6, 8, 12):
        ranges = [16384 * n // masters for n in range(masters + 1)]
        held = [sum(ranges[n] <= slot < ranges[n + 1] for slot in slots) for n in range(masters)]
        assert held == [keys.SHARDS // masters] * masters


def test_a_message_keeps_its_keys_in_one_slot_and_messages_spread_over_the_shards():
    from redis.crc import key_slot

    from engage.store.tokens import Buckets
    slot = key_slot(keys.message(P, MK).encode())
    shard = keys.shard_of(MK)
    for key in (keys.status(P, MK), keys.burst(P, MK, 1), keys.trap_clients(P, MK),
                keys.repeat_open(P, MK, "o", "x"), keys.template(P, "t", shard),
                keys.events(P, shard), keys.event_index(P, shard, "click", "r", "a@b"),
                keys.aggregate(P, shard, "e", "2026-12-07T15"), keys.append_ids(P, shard, 1),
                keys.compacting(P, keys.events(P, shard))):
        assert key_slot(key.encode()) == slot, key
    counts = [0] * keys.SHARDS
    for _ in range(24_000):  # buckets: the milter fills each with up to 100 messages
        counts[keys.shard_of(Buckets().new_key())] += 1
    assert min(counts) > 850 and max(counts) < 1150  # 1000 each, +-15%
    assert keys.shard_of_key(P, keys.message(P, MK)) == shard
    assert keys.shard_of_key(P, keys.message(P, MK, keys.LAYOUT1)) == keys.LAYOUT1


def test_every_family_has_a_builder_here_and_each_built_key_is_claimed_by_its_own():
    assert set(BUILT) == {family.name for family in FAMILIES}
    for name, key in BUILT.items():
        family = family_of(P, key)
        assert family is not None and family.name == name, (key, family)


@pytest.mark.parametrize("key", ["other:m:x", "engage:custom:x", "engage:", "engage:mx",
                                 "engage:{zz}m:x", "engage:{8n}custom"])
def test_keys_outside_the_prefix_or_of_no_family_are_unclaimed(key):
    assert family_of(P, key) is None


def test_every_family_says_how_it_is_erased_and_who_writes_it():
    for family in FAMILIES:
        assert isinstance(family.erasure, Erasure) and family.owner and family.expiry
    # What can hold an address must be erased by more than a promise.
    holders = {f.name for f in FAMILIES if f.erasure is not Erasure.NO_ADDRESS}
    assert {"message", "template", "events", "aggregates", "webhook batches",
            "webhook dead letters", "event subset index"} <= holders


# A key spelled outside the registry: an f-string or concatenation starting with a prefix
# variable followed by a literal ("{prefix}m:", prefix + "events").
SPELLED = re.compile(r"""f["']\{(?:self\.)?(?:settings\.)?(?:key_)?prefix\}[A-Za-z]"""
                     r"""|(?:key_)?prefix\s*\+\s*["'][A-Za-z]""")


def test_no_product_module_builds_a_key_name_outside_the_registry():
    registry = REPO / "redirector" / "engage" / "store" / "keys.py"
    offenders = []
    for root in ("redirector", "milter"):
        for path in (REPO / root).rglob("*.py"):
            if path == registry:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if SPELLED.search(code):
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_tracked_url_layout_is_pinned():
    """Links already sent must keep resolving: these spellings never change."""
    from engage.store import layout
    assert layout.LINK_PATHS == {"short": ("/c/", "/i/", "/o/"),
                                 "v1": ("/v1/track/click/", "/i/", "/v1/track/open/")}
    assert layout.route(layout.CLICK, "token") == "/c/<token>"


def test_the_schema_table_in_the_docs_is_generated_from_the_registry():
    from engage.store import schemadoc
    text = (REPO / "docs" / "redis-schema.md").read_text()
    assert schemadoc.splice(text) == text, "docs/redis-schema.md: run python -m engage.store.schemadoc"
