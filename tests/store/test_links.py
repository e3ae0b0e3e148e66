"""The link store on a real Redis: register/resolve, templates stored once, forged tokens."""
from collections import Counter
from dataclasses import replace

import pytest

from engage.store import keys
from engage.store.links import (
    Link,
    LinkStore,
    MessageRecord,
    StoreError,
    Template,
    click_token,
    new_message_key,
    open_token,
    split_token,
)
from engage.store.redisconn import connect
from engage.store.tokens import BUCKET_LEN, MID_LEN, Buckets
from support.stored import key_in_shard, old_key

TEMPLATE = Template(links=(Link("https://a.example/?x=1&y=2", "cta"), Link("https://b.example/")),
                    campaign_id="spring", tags=("t",), friendly_from="news@a.example",
                    sending_domain="a.example")


def record(rcpt: str = "r@example.net") -> MessageRecord:
    return MessageRecord(rcpt_to=(rcpt,), mail_from="b@a.example", subject="Hi", message_id="<m@a>",
                         queue_id="Q1", injection_time=1795990000, metadata={"u": 1},
                         template_id=TEMPLATE.template_id)


@pytest.fixture
def store(redis_client):
    return LinkStore(redis_client, "t:")


def test_register_then_resolve_click_and_open_tokens(store):
    key = new_message_key()
    store.register(key, TEMPLATE, record())
    clicked = store.resolve(click_token(key, TEMPLATE.template_id, 0))
    assert clicked.link == Link("https://a.example/?x=1&y=2", "cta")
    assert clicked.template == TEMPLATE and clicked.record == record()
    opened = store.resolve(open_token(key, TEMPLATE.template_id))
    assert opened.link is None and opened.record.metadata == {"u": 1}


def test_the_template_is_sent_once_per_shard_and_restored_when_missing(store, redis_client):
    store.register(key_in_shard(4), TEMPLATE, record("a@example.net"))
    template_key = store.template_key(TEMPLATE.template_id, 4)
    redis_client.set(template_key, "sentinel")
    store.register(key_in_shard(4), TEMPLATE, record("b@example.net"))
    assert redis_client.get(template_key) == b"sentinel"  # known: not sent again
    other = key_in_shard(5)
    store.register(other, TEMPLATE, record("b@example.net"))  # another shard: its own copy
    assert redis_client.get(store.template_key(TEMPLATE.template_id, 5)) == TEMPLATE.to_json().encode()
    redis_client.delete(template_key)
    key = key_in_shard(4)
    store.register(key, TEMPLATE, record("c@example.net"))
    assert store.resolve(click_token(key, TEMPLATE.template_id, 1)).link.url == "https://b.example/"


def test_no_ttl_by_default_and_retention_extends_the_template(redis_client):
    store = LinkStore(redis_client, "t:")
    key = key_in_shard(7)
    store.register(key, TEMPLATE, record())
    assert redis_client.ttl(store.record_at(key)[0]) == -1
    assert redis_client.ttl(store.template_key(TEMPLATE.template_id, 7)) == -1
    kept = LinkStore(redis_client, "t:", retention_days=2)
    redis_client.expire(store.template_key(TEMPLATE.template_id, 7), 10)
    kept.register(key_in_shard(7), TEMPLATE, record())
    assert redis_client.ttl(store.template_key(TEMPLATE.template_id, 7)) > 86400


def test_links_outlive_records_kept_for_less_time(redis_client):
    """record_retention_days shorter than the links: the record expires first, and its
    links still resolve from the template, with a record that names no recipient. With
    records kept as long as the links (the default), a missing record is an unknown token."""
    store = LinkStore(redis_client, "t:", retention_days=30, record_retention_days=2)
    key = new_message_key()
    store.register(key, TEMPLATE, record())
    shard = keys.shard_of(key)
    assert 0 < redis_client.ttl(store.record_at(key)[0]) <= 2 * 86400
    assert redis_client.ttl(store.template_key(TEMPLATE.template_id, shard)) > 29 * 86400
    redis_client.delete(store.record_at(key)[0])  # the record (its bucket) expired
    orphan = store.resolve(click_token(key, TEMPLATE.template_id, 0))
    assert orphan.link.url == "https://a.example/?x=1&y=2"
    assert orphan.record.rcpt_to == () and orphan.record.template_id == TEMPLATE.template_id
    assert LinkStore(redis_client, "t:", retention_days=30).resolve(
        click_token(key, TEMPLATE.template_id, 0)) is None


def test_a_layout_1_token_resolves_until_the_layout_is_marked_migrated(redis_client):
    """Data written before the shards (untagged names) is read on a miss, until
    `engage migrate-layout` sets the layout marker."""
    store = LinkStore(redis_client, "t:")
    key = old_key()
    redis_client.set(keys.message("t:", key, keys.LAYOUT1), record().to_text())
    redis_client.set(keys.template("t:", TEMPLATE.template_id, keys.LAYOUT1), TEMPLATE.to_json())
    resolved = store.resolve(click_token(key, TEMPLATE.template_id, 1))
    assert resolved.link.url == "https://b.example/" and resolved.record == record()
    store.register(key_in_shard(keys.shard_of(key)), TEMPLATE, record())  # layout 2 copy too
    bucketed = new_message_key()  # a key of buckets never looks in layout 1: its record is new
    redis_client.set(keys.message("t:", bucketed[:16], keys.LAYOUT1), record().to_text())
    assert store.resolve(click_token(bucketed, TEMPLATE.template_id, 1)) is None
    assert store.resolve(open_token(key, TEMPLATE.template_id)).record == record()
    redis_client.set(keys.layout("t:"), "2")
    fresh = LinkStore(redis_client, "t:")
    assert fresh.resolve(click_token(key, TEMPLATE.template_id, 1)) is None


@pytest.mark.parametrize("mangle", [
    lambda key, tid: click_token(key, tid, 2),                 # no such link
    lambda key, tid: click_token(new_message_key(), tid, 0),   # unknown message
    lambda key, tid: click_token(key, "A" * 12, 0),            # another template id
    lambda key, tid: click_token(key, tid, 0) + "!",           # malformed
    lambda key, tid: click_token(key, tid, 0)[:-2],            # truncated
    lambda key, tid: "",
])
def test_forged_or_unknown_tokens_resolve_to_nothing(store, mangle):
    key = new_message_key()
    store.register(key, TEMPLATE, record())
    assert store.resolve(mangle(key, TEMPLATE.template_id)) is None


def test_message_keys_are_unguessable_and_fill_buckets_of_one_shard():
    """84 random bits of a key's own (a token of the same bucket tells nothing of the
    others), up to Buckets.SIZE keys a bucket, each bucket in one shard."""
    made = [new_message_key() for _ in range(10000)]
    assert all(len(k) == MID_LEN for k in made) and len({k[BUCKET_LEN:] for k in made}) == 10000
    buckets = Counter(k[:BUCKET_LEN] for k in made)
    assert max(buckets.values()) <= Buckets.SIZE and len(buckets) >= 10000 // Buckets.SIZE
    assert all(keys.shard_of(k) == keys.shard_of(k[:BUCKET_LEN]) for k in made)
    assert len({keys.shard_of(k) for k in made}) == keys.SHARDS


def test_redis_down_is_a_store_error():
    dead = LinkStore(connect("redis://127.0.0.1:1/0"), "t:")
    with pytest.raises(StoreError):
        dead.register(new_message_key(), TEMPLATE, record())
    with pytest.raises(StoreError):
        dead.resolve(click_token(new_message_key(), TEMPLATE.template_id, 0))


@pytest.mark.parametrize("changes", [
    {},
    {"rcpt_to": ("a@x.example", "B@y.example"), "metadata": {}},
    {"subject": "", "message_id": "", "queue_id": "", "rcpt_to": ()},
    {"subject": "Größe 🎉 \u2028 | ; ,", "metadata": {"nested": {"k": [1, "\x1f"]}}},
])
def test_records_round_trip_in_the_compact_form(changes):
    original = replace(record(), **changes)
    stored = original.to_text()
    assert not stored.startswith("{")
    assert MessageRecord.from_text(stored.encode()) == original


@pytest.mark.parametrize("changes", [{"subject": "a\x1fb"}, {"rcpt_to": ("a\x1eb@x",)},
                                     {"rcpt_to": ("",)}, {"injection_time": -1}])
def test_a_field_holding_a_separator_makes_a_json_record(changes):
    original = replace(record(), **changes)
    stored = original.to_text()
    assert stored.startswith("{")
    assert MessageRecord.from_text(stored) == original


def test_records_written_as_json_before_the_compact_form_still_resolve(store, redis_client):
    key = new_message_key()
    store.register(key, TEMPLATE, record())
    redis_client.set(store.message_key(key), record()._json_form())
    resolved = store.resolve(click_token(key, TEMPLATE.template_id, 1))
    assert resolved.record == record() and resolved.link == Link("https://b.example/")


def test_click_tokens_carry_every_link_index_across_the_precomputed_ones():
    """Indexes below 1296 come from a table, larger ones are computed: both must read back."""
    key, tid = new_message_key(), TEMPLATE.template_id
    for index in [*range(0, 1400), 46655, 46656, 10**6]:
        assert split_token(click_token(key, tid, index)) == (key, tid, index)


@pytest.mark.parametrize("links", [
    (),
    (Link("https://a.example/?x=1&y=2", "cta"), Link("https://b.example/")),
    (Link("https://a.example/", 'say "hi"'), Link("https://b.example/")),
    (Link("https://a.example/", "back\\slash"), Link("https://b.example/", "tab\tnew\nline")),
    (Link("https://a.example/", "café"), Link("https://b.example/", "\u2028 \x7f \ud800")),
    (Link("https://a.example/?q=\x00\x1f"),),
    (Link("", ""), Link("https://a.example/", " ")),
])
def test_template_json_is_what_json_dumps_writes(links):
    """The template's JSON (and so its id, which stored data depends on) is exactly
    json.dumps' compact output, also for text the direct writer leaves to json.dumps."""
    import json
    template = Template(links=links, campaign_id="c\"1", tags=("t", "ü"), friendly_from="a@b.example",
                        sending_domain="b.example", open_tracking=False)
    expected = json.dumps({
        "l": [[link.url, link.name] if link.name else [link.url] for link in links],
        "c": "c\"1", "g": ["t", "ü"], "f": "a@b.example", "d": "b.example", "o": 0, "k": 1,
    }, separators=(",", ":"), ensure_ascii=False)
    assert template.to_json() == expected
    assert Template.from_json(template.to_json()) == template
