"""The key registry (engage.store.keys): every key engage writes has a family, and no
product module spells a key name itself."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from engage.store import keys
from engage.store.keys import FAMILIES, Erasure, family_of

P = "{engage}:"
REPO = Path(__file__).resolve().parents[2]
BUILT = {
    "template": keys.template(P, "tid123"),
    "message": keys.message(P, "mk-abc"),
    "status": keys.status(P, "mk-abc"),
    "events": keys.events(P),
    "event index": keys.event_index(P, "click"),
    "event subset index": keys.event_index(P, "click", "r", "jane@example.org"),
    "verdict overrides": keys.verdicts(P),
    "aggregates": keys.aggregate(P, "l", "2026-12-07T15"),
    "burst": keys.burst(P, "mk-abc", 1700000000),
    "trap clients": keys.trap_clients(P, "mk-abc"),
    "click rate limit": keys.rate_limit(P, "2001:db8::", 123),
    "login rate limit": keys.rate_limit(keys.login_limit_prefix(P), "192.0.2.0", 5),
    "webhook ids": keys.webhook_ids(P),
    "webhook dead letters": keys.webhook_dead(P),
    "webhook batches": keys.webhook_batches(P, "h1"),
    "webhook due": keys.webhook_due(P, "h1"),
    "webhook attempts": keys.webhook_log(P, "h1"),
    "webhook": keys.webhook(P, "h1"),
    "stream compaction": keys.compacting(P, keys.events(P)),
    "append ids": keys.append_ids(P, 17000000001),
    "repeat open": keys.repeat_open(P, "mk-abc", "o", "Zm9v"),
    "open limit": keys.open_limit(P, "192.0.2.0", 28333333),
    "dropped events": keys.dropped(P),
    "recipient domains": keys.aggregate(P, "d", "2026-12-07T15"),
}


def test_every_family_has_a_builder_here_and_each_built_key_is_claimed_by_its_own():
    assert set(BUILT) == {family.name for family in FAMILIES}
    for name, key in BUILT.items():
        family = family_of(P, key)
        assert family is not None and family.name == name, (key, family)


@pytest.mark.parametrize("key", ["other:m:x", "{engage}:custom:x", "{engage}:", "{engage}:mx"])
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
