"""``engage migrate-layout`` on a real Redis and a real 3-master Redis Cluster: layout-1 data
(one slot, untagged names, tests/support/layout1.py) moves into its shards with its
TTLs; templates land in exactly the shards that have a message of theirs; counts merge
with what layout 2 holds already; a second run is a no-op; a run interrupted at any
pipeline (before Redis ran it, or after with the reply lost) and run again ends in the
same state as an uninterrupted one; the layout-1 events stream is left alone."""
from __future__ import annotations

import itertools
from collections import Counter
from contextlib import contextmanager
from typing import Any

import pytest
import redis

from engage.admin import cli, migrate
from engage.admin.migrate_moves import Moved, Mover, aggregate_shard
from engage.store import aggregates, keys
from engage.store.records import MessageRecord
from engage.store.redisconn import connect
from engage.store.tokens import click_token
from support.layout1 import HOURS, TTL, Layout1, snapshot, write_layout1

P = "test:"


def run(client: Any, prefix: str = P, source: str | None = None, batch: int = 25
        ) -> tuple[Moved, Counter[str], bool]:
    return migrate.migrate(client, source or prefix, prefix, batch, say=lambda line: None)


def text(mapping: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in mapping.items()}


def check_moved(client: Any, data: Layout1, prefix: str, source: str) -> None:
    """Everything of ``data`` is in layout 2 under ``prefix``, nothing in layout 1."""
    for key, tid in data.messages.items():
        assert client.exists(keys.message(source, key, keys.LAYOUT1),
                             keys.status(source, key, keys.LAYOUT1)) == 0
        record = MessageRecord.from_text(client.get(keys.message(prefix, key)))
        assert record.template_id == tid
        ttl = client.ttl(keys.message(prefix, key))
        assert TTL - 120 < ttl <= TTL if key in data.expiring else ttl == -1
        assert text(client.hgetall(keys.status(prefix, key))) == data.statuses.get(key, {})
    for tid, made in data.templates.items():
        assert not client.exists(keys.template(source, tid, keys.LAYOUT1))
        holders = {s for s in keys.shard_ids() if client.exists(keys.template(prefix, tid, s))}
        assert holders == data.shards_of(tid) and len(holders) > 1
        assert {client.get(keys.template(prefix, tid, s)) for s in holders} == {made.to_json().encode()}
    for (kind, hour), fields in data.counters.items():
        found: Counter[str] = Counter()
        for shard in keys.shard_ids(layout1=True):
            name = keys.aggregate(prefix, shard, kind, hour)
            found.update({k: int(v) for k, v in text(client.hgetall(name)).items()})
        assert found == fields
        assert client.expiretime(keys.aggregate(prefix, aggregate_shard(hour), kind, hour)) == \
            aggregates.expires_at(hour, 400)
    for hour, domains in data.domains.items():
        name = keys.aggregate(prefix, aggregate_shard(hour), "d", hour)
        assert {d.decode() for d in client.smembers(name)} == domains
        assert not client.exists(keys.aggregate(source, keys.LAYOUT1, "d", hour))
    assert client.get(keys.layout(prefix)) == b"2"
    assert client.xlen(keys.events(source, keys.LAYOUT1)) == 5  # left where it is
    assert client.zcard(keys.event_index(source, keys.LAYOUT1, "click")) == 5


def test_every_family_moves_into_its_shard_with_its_ttl(redis_client):
    data = write_layout1(redis_client, P, messages=120)
    moved, left, marked = run(redis_client)
    assert marked and moved == Moved(
        messages=120, statuses=len(data.statuses), aggregates=len(data.counters) + len(data.domains),
        templates=3, template_copies=sum(len(data.shards_of(t)) for t in data.templates))
    assert left == Counter({"events": 1, "event index before 2026-12": 1})
    check_moved(redis_client, data, P, P)
    assert not [k for k in redis_client.scan_iter(match="*:m*ing")]  # no staging copy left


def click(redis_url: str, token: str) -> Any:
    """GET /c/<token> from a redirector app built now."""
    from engage.settings import Settings
    from engage.web.app import create_app
    app = create_app(Settings(redis_url=redis_url, key_prefix=P, tracking_url="https://click.example.com",
                              rate_limit=0))
    return app.test_client().get(f"/c/{token}")


def test_a_click_on_a_layout_1_link_redirects_before_and_after_the_migration(redis_client, redis_server):
    """The redirector reads layout 1 on a miss until the migration marks layout 2; then
    it no longer looks there (a layout-1 record written afterwards is unknown)."""
    rclient, where = redis_client, redis_server.url
    data = write_layout1(rclient, P, messages=30)
    (key, tid), (late, _) = list(data.messages.items())[:2]
    url = data.templates[tid].links[0].url
    before = click(where, click_token(key, tid, 0))
    assert (before.status_code, before.headers["Location"]) == (302, url)
    record = rclient.get(keys.message(P, late, keys.LAYOUT1))
    assert run(rclient)[2]
    after = click(where, click_token(key, tid, 0))
    assert (after.status_code, after.headers["Location"]) == (302, url)
    rclient.set(keys.message(P, "L" + late[1:], keys.LAYOUT1), record)
    ignored = click(where, click_token("L" + late[1:], tid, 1))
    assert ignored.status_code == 404


def test_status_and_counts_merge_with_what_layout_2_holds_already(redis_client):
    """A click between the upgrade and the migration wrote the message's layout-2 status
    and its hour's counters: counts add up, the earlier first-open time and flag stay, and
    the merged hash lives as long as the longer of the two (no expiry here)."""
    data = write_layout1(redis_client, P, messages=12)
    key = next(k for k, status in data.statuses.items() if "click_count" in status)
    old = data.statuses[key]
    redis_client.hset(keys.status(P, key), mapping={
        "opened_at": "2026-12-07T23:00:00.000Z", "open_count": 5, "initial_open_count": 1,
        "hr": int(old["hr"]) + 10**6})
    redis_client.expire(keys.status(P, key), 3600)
    hour = HOURS[2]
    (field, count), *_ = data.counters[("e", hour)].items()
    live = keys.aggregate(P, aggregate_shard(hour), "e", hour)
    redis_client.hset(live, mapping={field: 3, "c|new|shop.example": 4})
    run(redis_client)
    assert text(redis_client.hgetall(keys.status(P, key))) == {
        **old, "open_count": str(int(old["open_count"]) + 5), "initial_open_count": "1"}
    assert redis_client.ttl(keys.status(P, key)) == -1
    merged = text(redis_client.hgetall(live))
    assert merged[field] == str(count + 3) and merged["c|new|shop.example"] == "4"
    assert len(merged) == len(data.counters[("e", hour)]) + 1


def test_a_second_run_moves_nothing_and_changes_nothing(redis_client):
    write_layout1(redis_client, P, messages=40)
    run(redis_client)
    before = snapshot(redis_client)
    moved, _, marked = run(redis_client)
    assert moved == Moved() and marked
    assert snapshot(redis_client) == before


@contextmanager
def crash_at(call: int, sent: bool) -> Any:
    """Pipelines fail at the ``call``-th execute: before it is sent, or after Redis ran
    it (the reply lost), as a killed process or a dropped connection leaves things."""
    original = redis.client.Pipeline.execute
    calls = itertools.count(1)

    def execute(self: Any, raise_on_error: bool = True) -> Any:
        if next(calls) == call:
            if sent:
                original(self, raise_on_error)
            raise redis.ConnectionError(f"simulated crash at pipeline {call}")
        return original(self, raise_on_error)
    redis.client.Pipeline.execute = execute  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        redis.client.Pipeline.execute = original  # type: ignore[method-assign]


def test_a_run_interrupted_anywhere_then_rerun_ends_as_an_uninterrupted_one(redis_client):
    def fresh() -> None:
        redis_client.flushdb()
        write_layout1(redis_client, P, messages=30)
        redis_client.hset(keys.status(P, next(iter(statuses))), "open_count", 2)  # merged

    statuses = write_layout1(redis_client, P, messages=30).statuses
    fresh()
    with crash_at(0, False) as calls:
        run(redis_client, batch=8)
        pipelines = next(calls) - 1
    expected = snapshot(redis_client)
    assert pipelines > 20
    for call, sent in itertools.product(range(1, pipelines + 1), (False, True)):
        fresh()
        with crash_at(call, sent), pytest.raises(redis.ConnectionError):
            run(redis_client, batch=8)
        run(redis_client, batch=8)
        assert snapshot(redis_client) == expected, f"crash at pipeline {call}, sent={sent}"


def test_counts_written_in_layout_1_after_a_crash_are_added_too(redis_client, monkeypatch):
    """The run stops after deleting a status hash's source, before merging its copy; a
    click then writes a new layout-1 status (an old redirector): the rerun merges both."""
    data = write_layout1(redis_client, P, messages=6)

    original = Mover.merge

    def crash(self: Mover, moves: Any) -> None:
        if moves:
            raise redis.ConnectionError("simulated crash before the merge")
        original(self, moves)
    monkeypatch.setattr(Mover, "merge", crash)
    with pytest.raises(redis.ConnectionError):
        run(redis_client)
    monkeypatch.undo()
    key, old = next((k, status) for k, status in data.statuses.items()  # in the crashed chunk
                    if not redis_client.exists(keys.status(P, k, keys.LAYOUT1)))
    redis_client.hset(keys.status(P, key, keys.LAYOUT1), mapping={"open_count": 1, "repeat_opens": 2})
    moved, _, marked = run(redis_client)
    assert marked and moved.resumed >= 1 and moved.resumed + moved.statuses == len(data.statuses) + 1
    assert text(redis_client.hgetall(keys.status(P, key))) == {
        **old, "open_count": str(int(old["open_count"]) + 1), "repeat_opens": "2"}


def test_a_record_rewritten_while_it_moves_stays_for_the_next_run(redis_client, monkeypatch):
    """engage forget rewrote a record between its copy and the deletion of its source: the
    source is kept, layout 2 is not marked, and the next run moves the rewritten record."""
    data = write_layout1(redis_client, P, messages=10)
    victim = next(iter(data.messages))
    scrubbed = MessageRecord(template_id=data.messages[victim]).to_text()
    original = Mover._delete_sources

    def rewrite_first(self: Mover, copied: Any, how: str) -> Any:
        source = keys.message(P, victim, keys.LAYOUT1)
        if source in dict(copied) and redis_client.get(source) != scrubbed.encode():
            redis_client.set(source, scrubbed)  # between its copy and this deletion
        return original(self, copied, how)
    monkeypatch.setattr(Mover, "_delete_sources", rewrite_first)
    moved, left, marked = run(redis_client)
    assert (moved.changed, left["message"], marked) == (1, 1, False)
    assert redis_client.get(keys.layout(P)) is None
    monkeypatch.setattr(Mover, "_delete_sources", original)
    moved, left, marked = run(redis_client)
    assert (moved.messages, moved.changed, marked) == (1, 0, True)
    assert redis_client.get(keys.message(P, victim)) == scrubbed.encode()


def test_the_command_counts_in_a_dry_run_then_moves(redis_client, redis_server, tmp_path, capsys):
    conf = tmp_path / "engage.conf"
    conf.write_text(f"[redis]\nurl = {redis_server.url}\nkey_prefix = {P}\n")
    data = write_layout1(redis_client, P, messages=30)
    before = snapshot(redis_client)
    assert cli.main(["migrate-layout", "--config", str(conf), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (f"would move from layout 1 under 'test:' to layout 2 under 'test:': 30 message records, "
            f"{len(data.statuses)} status hashes, 3 templates, 9 aggregate hashes, 3 recipient "
            "domain sets") in out
    assert "the layout-1 events stream (5 events), 1 event index before 2026-12, 1 events (keys by family)" in out
    assert snapshot(redis_client) == before
    assert cli.main(["migrate-layout", "--config", str(conf), "--batch", "7"]) == 0
    out = capsys.readouterr().out
    assert "  message records: 30 (" in out and "  templates (layout-1 copies deleted): 3 (" in out
    assert "layout 1 holds nothing more to move: test:layout = 2" in out
    check_moved(redis_client, data, P, P)
    assert cli.main(["migrate-layout", "--config", str(conf), "--from-prefix", ""]) == 2


def test_on_a_cluster_one_slot_moves_into_24_over_every_master(redis_cluster, tmp_path, capsys):
    """Layout 1 under the old tagged prefix {t}: (one slot) into the untagged t:, whose
    shards spread over the three masters: the command, as an operator runs it."""
    redis_cluster.flush()
    client = connect(redis_cluster.url, timeout=30)
    conf = tmp_path / "engage.conf"
    conf.write_text(f"[redis]\nurl = {redis_cluster.url}\nkey_prefix = t:\n")
    try:
        data = write_layout1(client, "{t}:", messages=200)
        client.set(keys.webhook("{t}:", "h1"), '{"id":"h1"}')
        client.sadd(keys.webhook_ids("{t}:"), "h1")
        assert cli.main(["migrate-layout", "--config", str(conf), "--from-prefix", "{t}:",
                         "--batch", "50"]) == 0
        out = capsys.readouterr().out
        assert "  message records: 200 (" in out and "layout 1 holds nothing more to move" in out
        assert "  webhook definitions copied: 1\n" in out
        assert client.get(keys.webhook("t:", "h1")) == b'{"id":"h1"}'
        assert client.smembers(keys.webhook_ids("t:")) == {b"h1"}
        assert ("not moved, and not read under 't:': the layout-1 events stream (5 events), "
                "1 event index before 2026-12, 1 events (keys by family). Once nothing is left to move") in out
        check_moved(client, data, "t:", "{t}:")
        records = Counter(client.get_node_from_key(keys.message("t:", k)).port for k in data.messages)
        assert len(records) == 3 and min(records.values()) > 30
        before = snapshot(client)
        assert run(client, prefix="t:", source="{t}:")[0] == Moved()
        assert snapshot(client) == before
    finally:
        client.close()
