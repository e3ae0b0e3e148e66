"""Folding closed hours (engage.metrics.fold) on a real Redis: the API's sums are the same
before and after, each closed hour ends as one bucket per kind with the shards' expiry,
an hour still open is left alone; a fold stopped at any step is read right and finished
by the next run with exact sums; a reader that meets a fold between its phases reads
again; a late write to a folded hour counts and is folded later; a rebuild of folded
hours is exact; forget renames folded fields; the same on a Redis Cluster."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from metrics_recount import ALL, event_for, hour_start, make_traffic, register, stored_totals

from engage.erasure.forget import Forgetter
from engage.erasure.scrub import Address
from engage.metrics import api as metricsapi
from engage.metrics import buckets, fold
from engage.metrics.buckets import run_calls
from engage.metrics.rebuild import rebuild
from engage.store import aggregates, keys
from engage.store.events import EventLog
from engage.store.links import LinkStore
from engage.store.scripts.fold import CLAIM_LUA, MERGE_LUA
from support.forgetworld import World
from support.redisdump import traces

P = "engage:"
NOW = time.time()


@pytest.fixture
def first_hour() -> int:
    return hour_start(NOW) - 20 * 3600


def summary(client, prefix: str, first_hour: int, group: str = "campaign") -> dict:
    query = metricsapi.parse_metrics_query(group, {
        "from": time.strftime("%Y-%m-%dT%H:%M", time.gmtime(first_hour)),
        "metrics": ",".join(ALL)}, time.time())
    rows = metricsapi.run(client, prefix, query, time.time(), 400)
    return {row.pop("campaign_id", ""): row for row in rows}


def shard_buckets(client, prefix: str = P) -> list[bytes]:
    every = {"target_nodes": client.PRIMARIES} if hasattr(client, "PRIMARIES") else {}
    return [key for key in client.keys(f"{prefix}*agg:[sel]:*", **every)
            if keys.family_of(prefix, key.decode()).name != "folded aggregates"]


def claim(client, prefix: str, shard: int, kind: str, hour: str) -> tuple[str, list]:
    """Step 1 of a fold for one shard: (the copy's number, its counters as MERGE args)."""
    _, flat = client.register_script(CLAIM_LUA)(keys=[
        keys.aggregate(prefix, shard, kind, hour), keys.folding(prefix, shard, kind, hour),
        keys.fold_seq(prefix, shard)])
    fields = dict(zip(flat[::2], flat[1::2]))
    return fields.pop(b"#").decode(), [item for pair in fields.items() for item in pair]


def test_sums_are_the_same_before_and_after_folding(rclient, events, first_hour):
    sent = make_traffic(LinkStore(rclient, P), events, first_hour, messages=60, seed=3)
    before, totals = summary(rclient, P, first_hour), stored_totals(rclient)
    expiry = {key: rclient.expiretime(key) for key in shard_buckets(rclient)}
    assert len({keys.shard_of_key(P, key.decode()) for key in expiry}) > 10  # can fail

    report = fold.run(rclient, P, NOW, 400, max_hours=10_000, start=first_hour - 3600)

    assert report.hours == (fold.closed_before(NOW) - first_hour + 3600) // 3600
    assert report.buckets == len(expiry) and len(sent) == 60
    assert shard_buckets(rclient) == [] and rclient.keys(f"{P}*:folding") == []
    assert summary(rclient, P, first_hour) == before and len(before) == 4
    assert stored_totals(rclient) == totals
    for key, value in expiry.items():  # [metrics] retention_days after the hour, as before
        kind, hour = key.decode()[-15], key.decode()[-13:]
        assert rclient.expiretime(keys.folded(P, kind, hour)) == value
    again = fold.run(rclient, P, NOW, 400)  # the cursor moved past them
    assert again.hours == 0 and again.next_hour == aggregates.hour_of(fold.closed_before(NOW))


def test_an_hour_still_open_is_not_folded(rclient, events):
    store, now = LinkStore(rclient, P), time.time()
    recent = [register(store, "now", "example.com", int(now - back), shard=shard)
              for back, shard in ((0, 1), (3600, 2), (2 * 3600 + 5, 3))]
    for message in recent:
        events.append(event_for(message, "open", message.injected))
    fold.run(rclient, P, now, 400, start=hour_start(now) - 4 * 3600)
    left = {key.decode()[-13:] for key in shard_buckets(rclient)}
    assert left == {aggregates.hour_of(message.injected) for message in recent
                    if message.injected >= fold.closed_before(now)}
    assert {aggregates.hour_of(now), aggregates.hour_of(now - 3600)} <= left  # can fail
    folded = {key.decode()[-13:] for key in rclient.keys(f"{P}{{agg*")}
    assert folded == {aggregates.hour_of(m.injected) for m in recent} - left


def test_a_fold_stopped_at_each_step_finishes_on_the_next_run(rclient, events, first_hour):
    """Shard by shard a different step reached: claimed; claimed and merged; claimed,
    merged and then a late write (a new bucket next to the copy). Readers count each
    exactly once meanwhile; the next run ends with the exact sums and nothing left."""
    sent = make_traffic(LinkStore(rclient, P), events, first_hour, messages=60, seed=5)
    before, totals = summary(rclient, P, first_hour), stored_totals(rclient)
    hour = max((key.decode()[-13:] for key in rclient.keys(f"{P}*agg:e:*")),
               key=lambda name: len(rclient.keys(f"{P}*agg:e:{name}")))
    shards = sorted(keys.shard_of_key(P, key.decode()) for key in rclient.keys(f"{P}*agg:e:{hour}"))
    assert len(shards) >= 3
    merge = rclient.register_script(MERGE_LUA)
    for n, shard in enumerate(shards):
        seq, counts = claim(rclient, P, shard, "e", hour)
        if n % 3:  # merged, not dropped; a second merge of the same claim is a no-op
            for _ in range(2):
                merge(keys=[keys.folded(P, "e", hour)],
                      args=[shard, seq, aggregates.expires_at(hour, 400), *counts])
        assert summary(rclient, P, first_hour) == before
    late = next(message for message in sent if aggregates.hour_of(message.injected) <= hour)
    events.append(event_for(late, "click", aggregates.hour_start(hour) + 1800, 0))
    after_late = summary(rclient, P, first_hour)
    assert sum(row["count_clicked"] for row in after_late.values()) == sum(
        row["count_clicked"] for row in before.values()) + 1

    fold.run(rclient, P, NOW, 400, start=first_hour - 3600)

    assert shard_buckets(rclient) == [] and rclient.keys(f"{P}*:folding") == []
    assert summary(rclient, P, first_hour) == after_late
    assert stored_totals(rclient, kinds="s") == {k: v for k, v in totals.items() if k[0] == "s"}


def test_a_reader_that_meets_a_fold_between_its_phases_reads_again(
        rclient, events, first_hour, monkeypatch):
    make_traffic(LinkStore(rclient, P), events, first_hour, messages=30, seed=9)
    before = summary(rclient, P, first_hour)
    real, calls = buckets._sum, []

    def fold_in_between(client, script, batch, codes, merged, marks):
        real(client, script, batch, codes, merged, marks)
        calls.append(marks is not None)
        if len(calls) == 1:  # after the folded buckets were read: fold everything
            fold.run(rclient, P, NOW, 400, start=first_hour - 3600)

    monkeypatch.setattr(buckets, "_sum", fold_in_between)
    assert summary(rclient, P, first_hour) == before
    assert calls == [True, False, True, False]  # the second read found the folded buckets


def test_a_late_write_to_a_folded_hour_counts_and_is_folded_by_a_sweep(rclient, events, first_hour):
    store = LinkStore(rclient, P)
    message = register(store, "late", "example.com", first_hour, shard=6)
    events.append(event_for(message, "open", first_hour + 60))
    fold.run(rclient, P, NOW, 400, start=first_hour - 3600)
    assert shard_buckets(rclient) == []
    events.append(event_for(message, "open", first_hour + 120))  # a writer stalled for hours
    assert summary(rclient, P, first_hour)["late"]["count_rendered"] == 2
    assert fold.run(rclient, P, NOW, 400).hours == 0  # behind the cursor
    assert len(shard_buckets(rclient)) == 1
    swept = fold.run(rclient, P, NOW, 400, max_hours=1, start=first_hour)
    assert swept.buckets == 1 and shard_buckets(rclient) == []
    assert summary(rclient, P, first_hour)["late"]["count_rendered"] == 2
    assert swept.next_hour == aggregates.hour_of(fold.closed_before(NOW))  # cursor kept


def test_a_rebuild_of_folded_hours_is_exact_and_later_folds_add_nothing(
        rclient, events, first_hour):
    make_traffic(LinkStore(rclient, P), events, first_hour, messages=40, seed=12)
    before = summary(rclient, P, first_hour)
    hour = aggregates.hour_of(first_hour + 5 * 3600)
    shard = keys.shard_of_key(P, rclient.keys(f"{P}*agg:e:{hour}")[0].decode())
    stale = claim(rclient, P, shard, "e", hour)  # a fold that stalls across the rebuild
    fold.run(rclient, P, NOW, 400, start=first_hour - 3600)
    report = rebuild(rclient, P, first_hour - 3600, first_hour + 12 * 3600, 400, time.time())
    assert report.events > 0 and summary(rclient, P, first_hour) == before
    rclient.register_script(MERGE_LUA)(keys=[keys.folded(P, "e", hour)], args=[
        shard, stale[0], aggregates.expires_at(hour, 400), *stale[1]])  # it wakes up: no-op
    fold.run(rclient, P, NOW, 400, start=first_hour)
    assert summary(rclient, P, first_hour) == before
    assert rclient.hget(keys.fold_cursor(P), "paused") is None


def test_forget_renames_the_fields_of_folded_hours_and_folding_copies(redis_client):
    jane, url = "Jane.Roe@Example.ORG", "https://shop.example/u?e=jane.roe%40example.org"
    world = World(redis_client, prefix=P)
    world.send("j", (jane,), ("https://shop.example/a", url), shard=4)
    field = f"c|spring|shop.example|{aggregates.escape(url)}"
    hour = "2023-11-14T22"
    for shard in (0, 4, 9):
        redis_client.hset(keys.aggregate(P, shard, "l", hour), mapping={field: 2, "c|x|y|z": 1})
    fold.fold_hour(redis_client, P, hour, 10_000)
    redis_client.hset(keys.aggregate(P, 9, "l", hour), field, 5)
    claim(redis_client, P, 9, "l", hour)  # a fold stopped after its claim
    summary_ = Forgetter(redis_client, P).forget(Address.parse(jane))
    assert summary_.aggregate_fields == 2 and summary_.unknown_keys == []
    assert traces(redis_client, jane) == []
    cut = "c|spring|shop.example|https://shop.example/u?e="
    assert redis_client.hget(keys.folded(P, "l", hour), cut) == b"6"
    assert redis_client.hget(keys.folding(P, 9, "l", hour), cut) == b"5"
    fold.fold_hour(redis_client, P, hour, 10_000)
    assert redis_client.hgetall(keys.folded(P, "l", hour)).get(cut.encode()) == b"11"


def test_on_a_redis_cluster(cluster_client, first_hour):
    """Shards on three masters, folded days in slots of their own: a fold stopped after
    some claims and merges, then finished; sums unchanged throughout."""
    prefix, cluster = "mc:", cluster_client
    make_traffic(LinkStore(cluster, prefix), EventLog(cluster, prefix), first_hour,
                 messages=40, seed=8)
    before, totals = summary(cluster, prefix, first_hour), stored_totals(cluster, prefix)
    hour = aggregates.hour_of(first_hour + 3 * 3600)
    places = [(kind, shard) for kind in "sel" for shard in keys.shard_ids()]
    calls = [([keys.aggregate(prefix, shard, kind, hour), keys.folding(prefix, shard, kind, hour),
               keys.fold_seq(prefix, shard)], []) for kind, shard in places]
    claimed = list(run_calls(cluster, cluster.register_script(CLAIM_LUA), calls))
    assert sum(1 for reply in claimed if reply[1]) > 3
    assert summary(cluster, prefix, first_hour) == before
    report = fold.run(cluster, prefix, NOW, 400, start=first_hour - 3600)
    assert report.buckets > 10 and shard_buckets(cluster, prefix) == []
    days = {aggregates.hour_of(first_hour + n * 86400) for n in (0, 1)}
    assert len({cluster.keyslot(keys.folded(prefix, "e", day)) for day in days}) == 2
    assert summary(cluster, prefix, first_hour) == before
    assert stored_totals(cluster, prefix) == totals
    assert rebuild(cluster, prefix, first_hour - 3600, first_hour + 12 * 3600, 400,
                   time.time()).events > 0
    assert summary(cluster, prefix, first_hour) == before


def test_the_cli_and_the_webhooks_worker_fold(web_redis, rclient, events, first_hour, tmp_path):
    import os
    import subprocess
    import sys

    from engage.settings import Settings
    from engage.webhooks.worker import Worker

    make_traffic(LinkStore(rclient, P), events, first_hour, messages=20, seed=2)
    before = summary(rclient, P, first_hour)
    config = tmp_path / "engage.conf"
    config.write_text("")
    env = {**os.environ, "ENGAGE_CONFIG": str(config), "ENGAGE_REDIS_URL": web_redis.url,
           "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "redirector")}
    done = subprocess.run([sys.executable, "-m", "engage.admin.cli", "metrics", "fold", "--from",
                           time.strftime("%Y-%m-%dT%H:%M", time.gmtime(first_hour)), "--hours", "3"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("folded 3 hours ("), done.stderr
    assert summary(rclient, P, first_hour) == before and shard_buckets(rclient)
    rclient.hset(keys.fold_cursor(P), "next", first_hour)
    worker = Worker(rclient, Settings(redis_url=web_redis.url))
    assert worker.folder.tick().hours > 3 and worker.folder.tick() is None  # once a minute
    assert shard_buckets(rclient) == [] and summary(rclient, P, first_hour) == before
