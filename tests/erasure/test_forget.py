"""engage.erasure.forget on a real Redis: after a forget no key holds the address in any form
(support.redisdump reads every key), the links of the forgotten messages still resolve,
other recipients keep their events, and a second forget has nothing to do. The command
line as a user runs it. (Through Postfix, the milter, gunicorn and a webhook worker:
tests/e2e/test_e2e_forget.py.)"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from engage.erasure.forget import Forgetter, Summary, address_from_json
from engage.erasure.scrub import Address
from engage.erasure.streams import StreamEraser
from engage.store import keys
from engage.store.events import score_of
from engage.store.links import MessageRecord
from engage.store.pressure import DEFAULT_HIGH_WATER
from engage.store.tokens import MID_LEN
from support.forgetworld import P, World, stream_ids
from support.redisdump import traces

JANE = "Jane.Roe@Example.ORG"
BOB = "bob@example.net"
REPO = Path(__file__).resolve().parents[2]
SHARD = 5  # of the streams filled by hand


@pytest.fixture
def world(redis_client):
    return World(redis_client)


def test_forget_leaves_no_trace_and_every_link_resolves(world, redis_client):
    world.send("j1", (JANE,), ("https://shop.example/a", "https://shop.example/u?e=jane.roe%40example.org"),
               subject=f"Hello {JANE}", metadata={"email": JANE.lower(), "user": 7})
    world.send("multi", (BOB, JANE.upper()), ("https://shop.example/both",))
    world.send("b1", (BOB,), ("https://shop.example/a",))
    world.send("never", (JANE,), ("https://shop.example/never",))  # no event ever
    jane_ids = world.engage("j1") + world.engage("multi")
    bob_ids = world.engage("b1")
    j1, b1 = keys.shard_of(world.keys["j1"]), keys.shard_of(world.keys["b1"])
    for shard, entry in ((j1, jane_ids[0]), (b1, bob_ids[0])):
        redis_client.hset(keys.verdicts(P, shard), str(score_of(entry, shard)), '{"verdict":"scanner"}')
    status_before = redis_client.hgetall(keys.status(P, world.keys["j1"]))
    # An index entry whose event the stream trimmed already (retention): its key goes too.
    redis_client.zadd(keys.event_index(P, j1, "initial_open", "r", JANE.lower()),
                      {"1600000000000-0": 1600000000000000})
    assert traces(redis_client, JANE)  # the test can fail

    summary = Forgetter(redis_client, P, chunk=3).forget(Address.parse(JANE))

    assert traces(redis_client, JANE) == []
    assert (summary.events, summary.messages, summary.templates, summary.verdicts) == (5, 3, 1, 1)
    assert summary.index_keys == 1  # the stale one; the others were emptied entry by entry
    # type, campaign, message, transmission, subject, recipient(s): the shared one has two
    assert summary.index_entries == 3 * 6 + 2 * 7
    assert summary.unknown_keys == [] and summary.events_scanned == 7
    # Bob keeps his own message's events (the shared message's events named Jane too).
    assert stream_ids(redis_client) == {b1: bob_ids}
    assert redis_client.zcard(keys.event_index(P, b1, "click", "r", BOB, listed=True)) == 1
    assert redis_client.hexists(keys.verdicts(P, b1), str(score_of(bob_ids[0], b1)))
    assert redis_client.hgetall(keys.status(P, world.keys["j1"])) == status_before
    # Every link still resolves, to its URL with the address cut out.
    urls = {name: [world.links.resolve(t).link.url for t in world.tokens[name][1:]]
            for name in ("j1", "multi", "never")}
    assert urls == {"j1": ["https://shop.example/a", "https://shop.example/u?e="],
                    "multi": ["https://shop.example/both"], "never": ["https://shop.example/never"]}
    assert world.links.resolve(world.tokens["multi"][0]).record.rcpt_to == (BOB, "")
    assert world.links.resolve(world.tokens["j1"][0]).record == MessageRecord(
        injection_time=1700000000, template_id=world.tokens["j1"][0][MID_LEN:])

    again = Forgetter(redis_client, P).forget(Address.parse(JANE.lower()))
    assert not again.changed and again.events_scanned == 2


def test_the_ttl_of_rewritten_records_stays(redis_client):
    world = World(redis_client, retention_days=30)
    key = world.send("ttl", (JANE,), ("https://shop.example/a",))
    before = redis_client.ttl(keys.message_bucket(P, key))
    Forgetter(redis_client, P).forget(Address.parse(JANE))
    assert 0 < before - 5 <= redis_client.ttl(keys.message_bucket(P, key)) <= before
    assert world.links.resolve(world.tokens["ttl"][1]).link.url == "https://shop.example/a"


def test_a_mention_in_another_recipients_message_is_cut_and_its_events_go(world, redis_client):
    """Events are immutable: one that names the address anywhere (here Bob's metadata)
    is deleted; Bob's record only loses the mention."""
    world.send("ref", (BOB,), ("https://shop.example/a",), metadata={"referrer": JANE.lower()})
    world.send("b2", (BOB,), ("https://shop.example/b",))
    world.engage("ref")
    kept = world.engage("b2")
    summary = Forgetter(redis_client, P).forget(Address.parse(JANE))
    assert (summary.events, summary.messages) == (2, 1)
    assert traces(redis_client, JANE) == []
    assert world.links.resolve(world.tokens["ref"][0]).record.metadata == {"referrer": ""}
    assert stream_ids(redis_client) == {keys.shard_of(world.keys["b2"]): kept}


def test_keys_of_no_family_make_the_forget_incomplete_whatever_their_name(redis_client):
    """A key no family claims may hold the address in its value: an error, not a note."""
    redis_client.set(f"{P}custom:{JANE.lower()}", "1")
    redis_client.set(f"{P}custom:opaque", JANE)
    summary = Forgetter(redis_client, P).forget(Address.parse(JANE))
    assert summary.unknown_keys == [f"{P}custom:{JANE.lower()}", f"{P}custom:opaque"]
    assert redis_client.exists(f"{P}custom:{JANE.lower()}")
    assert not summary.changed and summary.as_dict()["complete"] is False


def test_nothing_outside_the_prefix_is_touched(world, redis_client):
    redis_client.set(f"other:m:{JANE}", json.dumps({"r": [JANE]}))
    world.send("j1", (JANE,), ("https://shop.example/a",))
    Forgetter(redis_client, P).forget(Address.parse(JANE))
    assert traces(redis_client, JANE) == [f"other:m:{JANE}"]


@pytest.mark.parametrize("body, reason", [
    (b"", "must be JSON"), (b"[]", '"recipient"'), (b'{"recipient": 5}', '"recipient"'),
    (b'{"recipient": "nobody"}', "not an email address"),
])
def test_the_api_body_is_checked(body, reason):
    with pytest.raises(ValueError, match=reason):
        address_from_json(body)
    assert address_from_json(b'{"recipient": " Jane@Example.org "}').text == "jane@example.org"


def test_summary_changed_counts_removals_only():
    assert not Summary(keys_scanned=10, events_scanned=3).changed
    assert Summary(templates=1).changed
    assert Summary(events=2).as_dict()["changed"] is True


def engage_cli(redis_url: str, *args: str, config: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "ENGAGE_CONFIG": str(config), "ENGAGE_REDIS_URL": redis_url,
           "ENGAGE_KEY_PREFIX": P, "PYTHONPATH": str(REPO / "redirector")}
    return subprocess.run([sys.executable, "-m", "engage.admin.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_the_command_line(world, redis_client, redis_server, tmp_path):
    config = tmp_path / "empty.conf"
    config.touch()
    world.send("j1", (JANE,), ("https://shop.example/a",))
    world.engage("j1")
    done = engage_cli(redis_server.url, "forget", JANE, config=config)
    assert done.returncode == 0, done.stderr
    assert f"forgot {JANE.lower()}:" in done.stdout and "events deleted: 2" in done.stdout
    again = engage_cli(redis_server.url, "forget", "--json", JANE.upper(), config=config)
    assert again.returncode == 0 and json.loads(again.stdout)["changed"] is False
    bad = engage_cli(redis_server.url, "forget", "jane", config=config)
    assert bad.returncode == 2 and "not an email address" in bad.stderr
    down = engage_cli("redis://127.0.0.1:1/0", "forget", JANE, config=config)
    assert down.returncode == 1 and "redis failed" in down.stderr
    assert "Traceback" not in down.stderr + bad.stderr


def test_compaction_drops_deleted_bytes_and_keeps_ids_groups_and_pending(redis_client):
    """XDEL leaves an entry's bytes in its node: a compacted stream holds only the live
    entries, same ids, same counters, and its consumer group with the pending entries."""
    stream = keys.events(P, SHARD)
    ids = [redis_client.xadd(stream, {"v": f"secret-{n}" if n % 3 == 0 else f"kept-{n}"})
           for n in range(250)]
    redis_client.xgroup_create(stream, "wh:1", id="0")
    redis_client.xreadgroup("wh:1", "engage", {stream: ">"}, count=40)
    redis_client.xdel(stream, *[i for n, i in enumerate(ids) if n % 3 == 0])
    redis_client.config_set("rdbcompression", "no")
    assert b"secret-3" in redis_client.dump(stream)
    before = redis_client.xinfo_stream(stream)
    pending = {p["message_id"] for p in redis_client.xpending_range(stream, "wh:1", "-", "+", 100)}

    assert StreamEraser(redis_client, P, 32, 0.9).compact(stream)

    assert b"secret-" not in redis_client.dump(stream)
    assert [i for i, _ in redis_client.xrange(stream)] == [i for n, i in enumerate(ids) if n % 3]
    after = redis_client.xinfo_stream(stream)
    for name in ("last-generated-id", "entries-added", "max-deleted-entry-id", "groups"):
        assert after[name] == before[name], name
    group = redis_client.xinfo_groups(stream)[0]
    assert group["last-delivered-id"] == ids[39]
    assert {p["message_id"] for p in redis_client.xpending_range(stream, "wh:1", "-", "+", 100)} \
        == {i for i in pending if int(ids.index(i)) % 3}
    assert not redis_client.exists(keys.compacting(P, stream))
    assert not redis_client.exists(keys.compaction_replaced(P, stream))


@pytest.mark.parametrize("disturbed, compacted", [(1, True), (2, False)])
def test_entries_deleted_during_the_copy_are_not_brought_back(redis_client, monkeypatch,
                                                               disturbed, compacted):
    """Someone else (another forget, a replayed dead letter) deletes an entry the copy
    holds already: that copy is dropped, never swapped in; tried once more, then said."""
    stream = keys.events(P, SHARD)
    ids = [redis_client.xadd(stream, {"v": str(n)}) for n in range(100)]
    eraser = StreamEraser(redis_client, P, 10, 0.9)
    copy_chunk, tries, removed = eraser._copy_chunk, [], []

    def disturbing(keys, args):
        reply = copy_chunk(keys=keys, args=args)
        if args[0] == "-":  # the first chunk of a try
            tries.append(args)
            if len(tries) <= disturbed:
                removed.append(ids[len(tries)])  # copied already
                redis_client.xdel(stream, removed[-1])
        return reply
    monkeypatch.setattr(eraser, "_copy_chunk", disturbing)

    assert eraser.compact(stream) is compacted
    assert len(tries) == 2 and len(removed) == disturbed
    assert [i for i, _ in redis_client.xrange(stream)] == [i for i in ids if i not in removed]
    assert not redis_client.exists(keys.compacting(P, stream))


def _fill(redis_client, shards=(SHARD,), entries=20000) -> list[str]:
    """Events streams of ``entries`` in all (every 50th Jane's), spread over ``shards``."""
    streams = [keys.events(P, shard) for shard in shards]
    pipe = redis_client.pipeline(transaction=False)
    for n in range(entries):
        who = JANE.lower() if n % 50 == 0 else f"u{n}@example.org"
        pipe.xadd(streams[n % len(streams)], {"j": json.dumps({"rcpt_to": who, "pad": "x" * 200})})
    pipe.execute()
    redis_client.config_set("maxmemory-policy", "noeviction")
    return streams


def _fill_near_maxmemory(redis_client) -> list[str]:
    """One shard's stream, then maxmemory 15% above what Redis uses."""
    streams = _fill(redis_client)
    redis_client.config_set("maxmemory", int(redis_client.info("memory")["used_memory"] * 1.15))
    return streams


def _room_again(redis_client) -> bool:
    """Below maxmemory, once Redis has freed in the background what forget UNLINKed."""
    for _ in range(100):
        memory = redis_client.info("memory")
        if memory["used_memory"] < memory["maxmemory"]:
            return True
        time.sleep(0.05)
    return False


def test_no_compaction_when_the_copy_would_take_the_milters_room(redis_client):
    """Compacting copies the stream: near maxmemory it is skipped (and said), so the
    milter's writes keep working; the events are deleted all the same."""
    streams = _fill_near_maxmemory(redis_client)
    try:
        summary = Forgetter(redis_client, P).forget(Address.parse(JANE))
        assert summary.events == 400 and summary.uncompacted == streams
        assert _room_again(redis_client)  # the mail path still has room
        assert not redis_client.exists(keys.compacting(P, streams[0]))
    finally:
        redis_client.config_set("maxmemory", 0)


def test_each_shard_is_compacted_on_its_own_so_needs_room_for_its_copy_only(redis_client):
    """The same events over 24 shards: no copy of them all would fit below the mark, each
    shard's does, one after the other (a single stream's compaction could not run)."""
    streams = _fill(redis_client, keys.shard_ids())
    redis_client.config_set("rdbcompression", "no")
    # Room for 3/4 of all copies: none of the whole, all of Jane's 12 shards', even if
    # Redis frees no replaced stream meanwhile.
    all_copies = sum(redis_client.memory_usage(s) for s in streams)
    room = redis_client.info("memory")["used_memory"] + all_copies * 3 // 4
    redis_client.config_set("maxmemory", int(room / DEFAULT_HIGH_WATER))
    try:
        summary = Forgetter(redis_client, P).forget(Address.parse(JANE))
        assert summary.events == 400 and summary.uncompacted == []
        assert summary.compacted == streams[::2]  # Jane's: every 50th, so in even shards
        assert not any(JANE.lower().encode() in redis_client.dump(s) for s in streams)
    finally:
        redis_client.config_set("maxmemory", 0)


def test_a_copy_that_fails_midway_is_removed(redis_client, monkeypatch):
    """Were Redis to fill up during the copy anyway, the half-built copy goes at once."""
    stream, = _fill_near_maxmemory(redis_client)
    monkeypatch.setattr(StreamEraser, "_room_for", lambda self, stream: True)
    try:
        with pytest.raises(redis.RedisError):
            Forgetter(redis_client, P).forget(Address.parse(JANE))
        assert not redis_client.exists(keys.compacting(P, stream))
        assert _room_again(redis_client)
        assert redis_client.xlen(stream) == 20000 - 400  # deleted, only not compacted
    finally:
        redis_client.config_set("maxmemory", 0)


def test_a_copy_left_by_a_crash_goes_with_what_it_holds(world, redis_client):
    """A forget that died mid-compaction left a copy holding the address: the next one
    (with nothing else to do in that shard) removes it."""
    copy = keys.compacting(P, keys.events(P, SHARD))
    redis_client.xadd(copy, {"j": json.dumps({"rcpt_to": JANE.lower()})})
    redis_client.xadd(keys.events(P, SHARD), {"j": json.dumps({"rcpt_to": BOB})})
    summary = Forgetter(redis_client, P).forget(Address.parse(JANE))
    assert traces(redis_client, JANE) == [] and not summary.compacted
    assert redis_client.xlen(keys.events(P, SHARD)) == 1
