"""Message records packed in buckets (engage.store.tokens.Buckets, engage.store.records'
``to_text(base)``): what a mailing shares kept once per bucket, every record read back
exactly, on a real Redis; and ``engage forget`` in buckets, where an address may be
spelled only once a record is expanded."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engage.erasure.buckets import scrub_bucket
from engage.erasure.forget import Forgetter
from engage.erasure.scrub import Address
from engage.store import keys
from engage.store.links import Link, LinkStore, MessageRecord, Template, click_token, open_token
from engage.store.records import SAME
from engage.store.tokens import BUCKET_LEN, Buckets, new_message_key
from support.stored import spread_key

P = "bk:"
TEMPLATE = Template(links=(Link("https://shop.example/a"),), campaign_id="spring")
TID = TEMPLATE.template_id


def record(n: int, **fields: object) -> MessageRecord:
    values: dict[str, object] = dict(
        rcpt_to=(f"customer{n:07d}@mail.example.net",), mail_from="bounces@shop.example.com",
        subject="Black Friday", message_id=f"<20261129.{n:07d}@shop.example.com>",
        queue_id=f"4Z{n:08X}", injection_time=1796000000 + n, metadata={"user_id": n},
        template_id=TID)
    values.update(fields)
    return MessageRecord(**values)  # type: ignore[arg-type]


texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
records = st.builds(
    MessageRecord, rcpt_to=st.lists(texts, max_size=3).map(tuple), mail_from=texts,
    subject=texts, message_id=texts, queue_id=texts,
    injection_time=st.integers(-10, 2**40), metadata=st.dictionaries(texts, st.integers(), max_size=2),
    template_id=st.sampled_from(["", TID, "A" * 12]))


@settings(max_examples=400, deadline=None)
@given(records, records)
def test_a_record_stored_against_any_base_reads_back_exactly(record_, base):
    text = record_.to_text(base)
    assert MessageRecord.from_text(text, MessageRecord.from_text(base.to_text())) == record_
    assert MessageRecord.from_text(record_.to_text()) == record_


def test_what_a_mailing_shares_is_stored_once_per_bucket():
    base, other = record(1), record(2)
    packed = other.to_text(base)
    assert len(packed.encode()) < len(other.to_text().encode()) * 0.6
    for shared in (base.subject, base.mail_from, "@shop.example.com>", TID):
        assert shared not in packed
    assert MessageRecord.from_text(packed, base) == other
    # What differs is kept in full: another mailing's fields in the same bucket.
    stranger = record(3, subject="Other", mail_from="x@elsewhere.example",
                      template_id="B" * 12, injection_time=5)
    assert MessageRecord.from_text(stranger.to_text(base), base) == stranger


def test_a_milter_packs_its_records_in_buckets_that_stay_listpacks(redis_client):
    store = LinkStore(redis_client, P)
    made = [new_message_key() for _ in range(600)]
    for n, key in enumerate(made):
        store.register(key, TEMPLATE, record(n))
    buckets = {keys.message_bucket(P, key) for key in made}
    assert len(buckets) < 600 // 10  # about 24 open at once, each up to Buckets.SIZE
    for bucket in buckets:
        assert redis_client.hlen(bucket) <= Buckets.SIZE + 1  # the records and their base
        assert redis_client.object("encoding", bucket) == b"listpack"
    for n, key in enumerate(made):
        assert store.resolve(open_token(key, TID)).record == record(n)
        assert store.resolve(click_token(key, TID, 0)).link.url == "https://shop.example/a"
    assert not redis_client.keys(f"{P}*m:*")  # no record has a key of its own


def test_a_bucket_of_another_process_is_stored_whole_and_forged_fields_resolve_nothing(
        redis_client):
    store = LinkStore(redis_client, P)
    key = spread_key()  # a bucket this process's Buckets did not make: no base known
    store.register(key, TEMPLATE, record(7))
    bucket, field = store.record_at(key)
    assert redis_client.hgetall(bucket) == {field.encode(): record(7).to_text().encode()}
    assert store.resolve(open_token(key, TID)).record == record(7)
    assert store.resolve(open_token(key[:BUCKET_LEN] + "A" * 14, TID)) is None  # its neighbour
    assert store.resolve(open_token(key, "B" * 12)) is None  # another template


JANE = "jane@example.org"


def bucket_of(*stored: MessageRecord) -> dict[bytes, bytes]:
    """A bucket as the milter writes it: the first record is the base."""
    fields = {b"": stored[0].to_text().encode()}
    for n, rec in enumerate(stored):
        fields[f"r{n}".encode()] = rec.to_text(stored[0]).encode()
    return fields


def test_an_address_spelled_only_once_expanded_is_found_and_only_its_records_change():
    """Jane's envelope sender is stored as ``jane`` + SAME against the base's
    ``news@example.org``: the raw field never holds her address."""
    base = record(0, mail_from="news@example.org")
    jane = record(1, mail_from=JANE)
    fields = bucket_of(base, jane, record(2, mail_from="news@example.org"))
    assert JANE.encode() not in b"".join(fields.values())
    assert fields[b"r1"].startswith(SAME.encode()) and b"jane" + SAME.encode() in fields[b"r1"]
    changes, erased = scrub_bucket(fields, Address.parse(JANE))
    assert erased == 1 and set(changes) == {b"r1"}
    assert MessageRecord.from_text(changes[b"r1"]).mail_from == ""


def test_a_base_that_holds_the_address_leaves_the_other_records_as_they_were():
    jane = record(0, rcpt_to=(JANE,), subject="For Jane")
    others = [record(n, subject="For Jane") for n in (1, 2)]
    fields = bucket_of(jane, *others)
    changes, erased = scrub_bucket(fields, Address.parse(JANE))
    assert erased == 1
    after = {**fields, **{name: value.encode() for name, value in changes.items()}}
    base = MessageRecord.from_text(after[b""])
    assert base.rcpt_to == () and base.subject == ""  # scrubbed: only what links need
    assert [MessageRecord.from_text(after[f"r{n}".encode()], base) for n in (1, 2)] == others


def test_forget_rewrites_records_in_buckets_and_the_links_keep_working(redis_client):
    store = LinkStore(redis_client, P)
    made = [new_message_key() for _ in range(50)]
    for n, key in enumerate(made):
        store.register(key, TEMPLATE, record(n, rcpt_to=(JANE,)) if n == 20 else
                       record(n, mail_from=JANE if n == 30 else "news@example.org"))
    summary = Forgetter(redis_client, P).forget(Address.parse(JANE))
    assert summary.messages == 2 and summary.unknown_keys == []
    for n, key in enumerate(made):
        resolved = store.resolve(open_token(key, TID))
        if n in (20, 30):
            assert JANE not in repr(resolved.record)
        else:
            assert resolved.record == record(n, mail_from="news@example.org")
    assert not Forgetter(redis_client, P).forget(Address.parse(JANE)).changed


def test_a_record_too_long_to_be_a_base_gets_none_and_the_next_one_is_the_base(
        redis_client):
    """The milter keeps one base per bucket in memory and sends it with every registration
    of the bucket: a record of a thousand recipients must not be it."""
    buckets = Buckets()
    key, small_key = buckets.new_key(), None
    while small_key is None or small_key[:BUCKET_LEN] != key[:BUCKET_LEN]:
        small_key = buckets.new_key()  # the same bucket (shards are drawn at random)
    crowd = record(1, rcpt_to=tuple(f"r{n}@example.net" for n in range(1000)))
    assert len(crowd.to_text()) > Buckets.MAX_BASE
    assert buckets.base(key, crowd) is None
    assert buckets.base(small_key, record(2)) == record(2)
    assert buckets.base(key, crowd) == record(2)  # the bucket's base from now on
