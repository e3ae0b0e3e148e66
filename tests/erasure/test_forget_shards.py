"""engage forget over layout 2's 24 shards and layout 1's keys at once: an address whose
messages, events, verdict overrides, counters, webhook batches and dead letters are in
several shards and in layout 1 is erased from each (a single-shard forget leaves the
others), each shard's stream is compacted on its own, and on a Redis Cluster of three
masters (prefix without a hash tag) every script runs in one shard's slot."""
from __future__ import annotations

import json

from engage.erasure.forget import Forgetter
from engage.erasure.scrub import Address
from engage.erasure.streams import StreamEraser
from engage.store import aggregates, keys
from engage.store.events import score_of
from engage.store.links import MessageRecord
from support.forgetworld import P, World, layout1_score, stream_ids
from support.redisdump import traces

JANE = "Jane.Roe@Example.ORG"
BOB = "bob@example.net"
SHARDS = (0, 9, 23)  # Jane's messages; Bob's is in 9 too
OLD = keys.LAYOUT1
HOOK = "h1"
JANE_URL = "https://shop.example/u?e=jane.roe%40example.org"


def fill(world: World, layout1: bool = True) -> dict[str, list[str]]:
    """Jane in SHARDS (and layout 1), Bob next to her in shard 9 (and in layout 1): the
    stream ids by name."""
    ids = {}
    for n, shard in enumerate(SHARDS):
        world.send(f"j{n}", (JANE,), ("https://shop.example/a", JANE_URL), shard=shard)
        ids[f"j{n}"] = world.engage(f"j{n}")
    world.send("bob", (BOB,), ("https://shop.example/a",), shard=9)
    ids["bob"] = world.engage("bob")
    if not layout1:
        return ids
    world.send_layout1("old", (JANE,), ("https://shop.example/old", JANE_URL))
    ids["old"] = world.engage_layout1("old")
    world.send_layout1("oldbob", (BOB,), ("https://shop.example/old",))
    ids["oldbob"] = world.engage_layout1("oldbob")
    return ids


def verdicts(client, ids: dict[str, list[str]]) -> None:
    """An override of the first event of each message, in its shard."""
    for name, shard in (("j0", 0), ("j2", 23), ("bob", 9)):
        client.hset(keys.verdicts(P, shard), str(score_of(ids[name][0], shard)), '{"verdict":"bot"}')
    for name in ("old", "oldbob"):
        client.hset(keys.verdicts(P, OLD), str(layout1_score(ids[name][0])), '{"verdict":"bot"}')


def counters(client) -> None:
    """Link counters named after Jane's URL, per shard and in layout 1."""
    field = f"c|spring|shop.example|{aggregates.escape(JANE_URL)}"
    for shard in (*SHARDS, OLD):
        client.hset(keys.aggregate(P, shard, "l", "2023-11-14T22"), mapping={field: 2, "c|x|y|z": 1})


def webhook_queues(client, ids: dict[str, list[str]]) -> None:
    """A replayed batch with Jane's event in shard 23's queue, dead letters with it in
    shard 0 and in layout 1 (with Bob's, which stay)."""
    client.sadd(keys.webhook_ids(P), HOOK)
    jane = {"type": "click", "rcpt_to": JANE.lower()}
    bob = {"type": "click", "rcpt_to": BOB}
    replayed = {"ids": "", "size": 2, "body": json.dumps([jane, bob])}
    client.hset(keys.webhook_batches(P, HOOK, 23), "b1", json.dumps(replayed))
    client.zadd(keys.webhook_due(P, HOOK, 23), {"b1": 1})
    for shard, jane_id in ((0, ids["j0"][0]), (OLD, ids["old"][0])):
        client.xadd(keys.webhook_dead(P, shard), {"hook": HOOK, "size": "2", "ids": f"{jane_id} 1-1",
                                                  "body": json.dumps([jane, bob])})


def test_an_address_in_several_shards_and_in_layout_1_is_erased_from_all(redis_client):
    world = World(redis_client)
    ids = fill(world)
    verdicts(redis_client, ids)
    counters(redis_client)
    webhook_queues(redis_client, ids)
    redis_client.config_set("rdbcompression", "no")
    where = {keys.shard_of_key(P, key) for key in traces(redis_client, JANE)}
    assert where == {*SHARDS, OLD}  # the test can fail

    summary = Forgetter(redis_client, P, chunk=2).forget(Address.parse(JANE))

    assert traces(redis_client, JANE) == []
    assert summary.unknown_keys == [] and summary.uncompacted == []
    assert (summary.events, summary.messages, summary.templates) == (4 * 3, 4, 4)
    assert (summary.verdicts, summary.aggregate_fields) == (3, 4)
    assert (summary.webhook_batches, summary.dead_letters) == (1, 2)
    assert stream_ids(redis_client) == {9: ids["bob"], OLD: ids["oldbob"]}
    assert redis_client.hlen(keys.verdicts(P, 9)) == redis_client.hlen(keys.verdicts(P, OLD)) == 1
    # Compacted shard by shard: the streams that lost events, and only those.
    assert sorted(summary.compacted) == sorted(
        [keys.events(P, s) for s in (*SHARDS, OLD)] + [keys.webhook_dead(P, s) for s in (0, OLD)])
    for stream in summary.compacted:
        assert JANE.lower().encode() not in redis_client.dump(stream), stream
    # Bob's dead letters and replayed batch keep his event.
    dead = [fields for s in (0, OLD) for _, fields in redis_client.xrange(keys.webhook_dead(P, s))]
    assert [json.loads(f[b"body"]) for f in dead] == [[{"type": "click", "rcpt_to": BOB}]] * 2
    assert [f[b"ids"] for f in dead] == [b"1-1"] * 2
    # The links of every forgotten message still resolve; layout 1's record is scrubbed.
    for name in ("j0", "j1", "j2", "old"):
        assert world.links.resolve(world.tokens[name][2]).link.url == "https://shop.example/u?e="
    old = redis_client.get(keys.message(P, world.keys["old"], OLD))
    assert MessageRecord.from_text(old).rcpt_to == ()
    again = Forgetter(redis_client, P).forget(Address.parse(JANE))
    assert not again.changed and again.events_scanned == 2 + 2 and not again.compacted


def test_index_keys_named_after_the_address_go_in_every_shard(redis_client):
    """Even those whose events are gone already (retention): by name, in each shard."""
    for shard in (3, 17, OLD):
        redis_client.zadd(keys.event_index(P, shard, "click", "r", JANE.lower()), {"1-0": 1000})
    summary = Forgetter(redis_client, P).forget(Address.parse(JANE))
    assert summary.index_keys == 3 and traces(redis_client, JANE) == []


def masters_of(client, names) -> set[int]:
    return {client.get_node_from_key(name).port for name in names}


def test_on_a_cluster_every_shard_is_erased_in_its_own_slot(cluster_client, redis_cluster):
    """Prefix without a hash tag: the shards are on three masters, and a script that took
    keys of two shards would fail (CROSSSLOT)."""
    world = World(cluster_client)
    ids = fill(world, layout1=False)
    verdicts_in = {0: ids["j0"][0], 9: ids["bob"][0]}
    for shard, entry in verdicts_in.items():
        cluster_client.hset(keys.verdicts(P, shard), str(score_of(entry, shard)), "{}")
    counters_of = [keys.aggregate(P, s, "l", "2023-11-14T22") for s in SHARDS]
    for name in counters_of:
        cluster_client.hset(name, f"c|spring|shop.example|{aggregates.escape(JANE_URL)}", 1)
    streams = [keys.events(P, s) for s in SHARDS]
    assert len(masters_of(cluster_client, streams)) == len(redis_cluster.nodes)
    assert traces(cluster_client, JANE)

    summary = Forgetter(cluster_client, P, chunk=2).forget(Address.parse(JANE))

    assert traces(cluster_client, JANE) == []
    assert (summary.events, summary.messages, summary.templates) == (9, 3, 3)
    assert (summary.verdicts, summary.aggregate_fields) == (1, 3)
    assert sorted(summary.compacted) == sorted(streams) and not summary.unknown_keys
    assert stream_ids(cluster_client) == {9: ids["bob"]}
    for name in ("j0", "j1", "j2"):
        assert world.links.resolve(world.tokens[name][2]).link.url == "https://shop.example/u?e="


def test_on_a_cluster_a_copy_needs_room_on_its_streams_master_only(cluster_client):
    """A stream's compaction copy is in its slot: the room asked is its master's."""
    streams = [keys.events(P, shard) for shard in (0, 23)]
    for stream in streams:
        cluster_client.xadd(stream, {"v": "x" * 1000})
    full, other = (cluster_client.get_redis_connection(cluster_client.get_node_from_key(s))
                   for s in streams)
    assert full.connection_pool != other.connection_pool
    eraser = StreamEraser(cluster_client, P, 100, 0.9)
    full.config_set("maxmemory", full.info("memory")["used_memory"] + 100)
    try:
        assert [eraser._room_for(s) for s in streams] == [False, True]
    finally:
        full.config_set("maxmemory", 0)
