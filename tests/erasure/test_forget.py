"""engage.erasure.forget on a real Redis: after a forget no key holds the address in any form
(support.redisdump reads every key), the links of the forgotten messages still resolve,
other recipients keep their events, and a second forget has nothing to do. The command
line as a user runs it. (Through Postfix, the milter, gunicorn and a webhook worker:
tests/e2e/test_e2e_forget.py.)"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from engage.erasure.forget import Forgetter, Summary, address_from_json
from engage.erasure.scrub import Address
from engage.store.events import EventLog, RequestFacts, build_event, score_of
from engage.store.links import Link, LinkStore, MessageRecord, Template, click_token, new_message_key, open_token
from support.redisdump import traces

P = "test:"
JANE = "Jane.Roe@Example.ORG"
BOB = "bob@example.net"
REPO = Path(__file__).resolve().parents[2]


class World:
    """Messages registered as the milter does, events appended as the redirector does."""

    def __init__(self, client, retention_days: int = 0) -> None:
        self.client = client
        self.links = LinkStore(client, P, retention_days)
        self.events = EventLog(client, P)
        self.tokens: dict[str, list[str]] = {}

    def send(self, name: str, rcpts: tuple[str, ...], urls: tuple[str, ...],
             subject: str = "Spring", metadata: dict | None = None) -> str:
        template = Template(links=tuple(Link(url) for url in urls), campaign_id="spring",
                            friendly_from="news@shop.example", sending_domain="shop.example")
        key = new_message_key()
        record = MessageRecord(rcpt_to=rcpts, mail_from="bounces@shop.example", subject=subject,
                               message_id=f"<{name}@shop.example>", queue_id=name.upper(),
                               injection_time=1700000000, metadata=metadata or {"n": name},
                               template_id=template.template_id)
        self.links.register(key, template, record)
        self.tokens[name] = [open_token(key, template.template_id)] + [
            click_token(key, template.template_id, i) for i in range(len(urls))]
        return key

    def engage(self, name: str) -> list[str]:
        """Open once, click every link: the stream ids."""
        ids = []
        for i, token in enumerate(self.tokens[name]):
            resolved = self.links.resolve(token)
            facts = RequestFacts("198.51.100.7", "Mozilla/5.0", "en", None, "")
            ids.append(self.events.append(build_event("click" if i else "open", resolved, facts,
                                                      1700000100.0 + i)))
        return ids


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
    redis_client.hset(f"{P}verdicts", mapping={str(score_of(jane_ids[0])): '{"verdict":"scanner"}',
                                               str(score_of(bob_ids[0])): '{"verdict":"scanner"}'})
    status_before = redis_client.hgetall(f"{P}ms:{world.tokens['j1'][0][:16]}")
    # An index entry whose event the stream trimmed already (retention): its key goes too.
    redis_client.zadd(f"{P}ei:initial_open:r:{JANE.lower()}", {"1600000000000-0": 1600000000000000})
    assert traces(redis_client, JANE)  # the test can fail

    summary = Forgetter(redis_client, P, chunk=3).forget(Address.parse(JANE))

    assert traces(redis_client, JANE) == []
    assert (summary.events, summary.messages, summary.templates, summary.verdicts) == (5, 3, 1, 1)
    assert summary.index_keys == 1  # the stale one; the others were emptied entry by entry
    # type, campaign, message, transmission, subject, recipient(s): the shared one has two
    assert summary.index_entries == 3 * 6 + 2 * 7
    assert summary.unknown_keys == [] and summary.events_scanned == 7
    # Bob keeps his own message's events (the shared message's events named Jane too).
    assert [i.decode() for i, _ in redis_client.xrange(f"{P}events")] == bob_ids
    assert redis_client.zcard(f"{P}ei:click:r:{BOB}") == 1
    assert redis_client.hexists(f"{P}verdicts", str(score_of(bob_ids[0])))
    assert redis_client.hgetall(f"{P}ms:{world.tokens['j1'][0][:16]}") == status_before
    # Every link still resolves, to its URL with the address cut out.
    urls = {name: [world.links.resolve(t).link.url for t in world.tokens[name][1:]]
            for name in ("j1", "multi", "never")}
    assert urls == {"j1": ["https://shop.example/a", "https://shop.example/u?e="],
                    "multi": ["https://shop.example/both"], "never": ["https://shop.example/never"]}
    assert world.links.resolve(world.tokens["multi"][0]).record.rcpt_to == (BOB, "")
    assert world.links.resolve(world.tokens["j1"][0]).record == MessageRecord(
        injection_time=1700000000, template_id=world.tokens["j1"][0][16:])

    again = Forgetter(redis_client, P).forget(Address.parse(JANE.lower()))
    assert not again.changed and again.events_scanned == 2


def test_the_ttl_of_rewritten_records_stays(redis_client):
    world = World(redis_client, retention_days=30)
    key = world.send("ttl", (JANE,), ("https://shop.example/a",))
    before = redis_client.ttl(f"{P}m:{key}")
    Forgetter(redis_client, P).forget(Address.parse(JANE))
    assert 0 < before - 5 <= redis_client.ttl(f"{P}m:{key}") <= before
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
    assert [i.decode() for i, _ in redis_client.xrange(f"{P}events")] == kept


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
    stream = f"{P}events"
    ids = [redis_client.xadd(stream, {"v": f"secret-{n}" if n % 3 == 0 else f"kept-{n}"})
           for n in range(250)]
    redis_client.xgroup_create(stream, "wh:1", id="0")
    redis_client.xreadgroup("wh:1", "engage", {stream: ">"}, count=40)
    redis_client.xdel(stream, *[i for n, i in enumerate(ids) if n % 3 == 0])
    redis_client.config_set("rdbcompression", "no")
    assert b"secret-3" in redis_client.dump(stream)
    before = redis_client.xinfo_stream(stream)
    pending = {p["message_id"] for p in redis_client.xpending_range(stream, "wh:1", "-", "+", 100)}

    Forgetter(redis_client, P, chunk=32).compact(stream)

    assert b"secret-" not in redis_client.dump(stream)
    assert [i for i, _ in redis_client.xrange(stream)] == [i for n, i in enumerate(ids) if n % 3]
    after = redis_client.xinfo_stream(stream)
    for name in ("last-generated-id", "entries-added", "max-deleted-entry-id", "groups"):
        assert after[name] == before[name], name
    group = redis_client.xinfo_groups(stream)[0]
    assert group["last-delivered-id"] == ids[39]
    assert {p["message_id"] for p in redis_client.xpending_range(stream, "wh:1", "-", "+", 100)} \
        == {i for i in pending if int(ids.index(i)) % 3}
    assert not redis_client.exists(f"{P}compacting:events")
    assert not redis_client.exists(f"{P}compacting:events:replaced")


def _fill_near_maxmemory(redis_client, entries: int = 20000) -> str:
    """An events stream of ``entries`` (every 50th Jane's), then maxmemory 15% above use."""
    stream = f"{P}events"
    pipe = redis_client.pipeline(transaction=False)
    for n in range(entries):
        who = JANE.lower() if n % 50 == 0 else f"u{n}@example.org"
        pipe.xadd(stream, {"j": json.dumps({"rcpt_to": who, "pad": "x" * 200})})
    pipe.execute()
    redis_client.config_set("maxmemory-policy", "noeviction")
    redis_client.config_set("maxmemory", int(redis_client.info("memory")["used_memory"] * 1.15))
    return stream


def test_no_compaction_when_the_copy_would_take_the_milters_room(redis_client):
    """Compacting copies the stream: near maxmemory it is skipped (and said), so the
    milter's writes keep working; the events are deleted all the same."""
    stream = _fill_near_maxmemory(redis_client)
    try:
        summary = Forgetter(redis_client, P).forget(Address.parse(JANE))
        assert summary.events == 400 and summary.uncompacted == [stream]
        assert redis_client.set(f"{P}m:after", "x" * 100)  # the mail path still has room
        assert not redis_client.exists(f"{P}compacting:events")
    finally:
        redis_client.config_set("maxmemory", 0)


def test_a_copy_that_fails_midway_is_removed(redis_client, monkeypatch):
    """Were Redis to fill up during the copy anyway, the half-built copy goes at once."""
    stream = _fill_near_maxmemory(redis_client)
    monkeypatch.setattr(Forgetter, "_room_for", lambda self, stream: True)
    try:
        with pytest.raises(redis.RedisError):
            Forgetter(redis_client, P).forget(Address.parse(JANE))
        assert not redis_client.exists(f"{P}compacting:events")
        assert redis_client.set(f"{P}m:after", "x" * 100)
        assert redis_client.xlen(stream) == 20000 - 400  # deleted, only not compacted
    finally:
        redis_client.config_set("maxmemory", 0)
