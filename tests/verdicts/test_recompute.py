"""engage.verdicts.recompute on a real Redis: overrides only where the verdict changes, the stream
never written, what the click path could not see (later clicks of a burst, clicks just
before a trap hit) taken into account, retention and dry runs respected."""
from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from engage.store import keys, overrides
from engage.store.events import EventLog, RequestFacts, build_event
from engage.store.links import TRAP_LINK_NAME, Link, MessageRecord, Resolved, Template
from engage.verdicts import machines
from engage.verdicts.recompute import recompute
from engage.verdicts.rules import Facts, Thresholds, classify, engage_object
from support.stored import key_in_shard

LINKS = tuple(Link(f"https://example.com/{n}") for n in range(4)) + \
    (Link("https://t.example/", TRAP_LINK_NAME),)
TEMPLATE = Template(links=LINKS, campaign_id="c1", sending_domain="example.com")
RECORD = MessageRecord(rcpt_to=("a@example.com",), subject="S", injection_time=1700000000,
                       template_id=TEMPLATE.template_id)
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0 Safari/537.36"
T0 = float(int(time.time()) - 3600)  # an hour ago, on a whole second (bursts are per second)
SHARD = keys.shard_of("tx1")  # of the transmission most tests use


@pytest.fixture
def rules():
    return machines.load([machines.shipped_rules()])


@pytest.fixture
def log(rclient, settings):
    return EventLog(rclient, settings.key_prefix, settings.events_retention_days)


def store(log, rules, kind, at, ip="203.0.113.5", ua=CHROME, link=None, links_in_second=0,
          method="GET", transmission="tx1", engage=True):
    """An event as the redirector would have stored it at ``at`` (click-path verdict)."""
    resolved = Resolved(transmission, TEMPLATE, RECORD, None if link is None else LINKS[link])
    facts = Facts(kind, method, ip, ua, at - RECORD.injection_time, links_in_second,
                  link is not None and LINKS[link].name == TRAP_LINK_NAME)
    verdict = engage_object(classify(facts, rules, Thresholds()), facts) if engage else None
    event = build_event(kind, resolved, RequestFacts(ip, ua), at, verdict)
    return log.append(event)


def api_ids(rclient, log, shard=SHARD):
    """The events of one shard as the events API shows them (overrides applied)."""
    return [json.loads(item) for item in log.fetch_json(
        shard, [i for i, _ in rclient.xrange(log.stream_of(shard))])]


def test_the_first_links_of_a_burst_become_scanner_and_the_stream_is_untouched(
        rclient, settings, rules, log):
    for n in range(4):  # the click path saw 1, 2, 3, 4 links in this second
        store(log, rules, "click", T0 + 0.1 * n, link=n, links_in_second=n + 1)
    snapshot = rclient.xrange(log.stream_of(SHARD))
    assert [e["engage"]["verdict"] for e in api_ids(rclient, log)] == \
        ["human", "human", "scanner", "scanner"]
    result = recompute(rclient, settings, rules)
    events = api_ids(rclient, log)
    assert result.examined == 4 and result.changed == [e["event_id"] for e in events[:2]]
    assert dict(result.transitions) == {("human", "scanner"): 2}
    assert [e["engage"]["verdict"] for e in events] == ["scanner"] * 4
    assert events[0]["engage"]["raw_verdict"] == "human"
    assert events[0]["engage"]["reasons"] == ["4 links of this message within 1 s"]
    assert "raw_verdict" not in events[3]["engage"]
    assert rclient.xrange(log.stream_of(SHARD)) == snapshot
    again = recompute(rclient, settings, rules)
    assert again.changed == [] and again.examined == 4  # nothing new: nothing written


def test_clicks_shortly_before_a_trap_hit_from_that_address_become_scanner(
        rclient, settings, rules, log):
    store(log, rules, "click", T0, ip="192.0.2.9", link=0)
    store(log, rules, "click", T0 + 2, ip="203.0.113.5", link=1)
    store(log, rules, "click", T0 + 5, ip="192.0.2.9", link=4)  # the trap
    store(log, rules, "click", T0 + 5 + settings.trap_window + 10, ip="192.0.2.9", link=2)
    result = recompute(rclient, settings, rules)
    verdicts = [e["engage"]["verdict"] for e in api_ids(rclient, log)]
    assert verdicts == ["scanner", "human", "scanner", "human"]
    assert len(result.changed) == 1


def test_a_rules_change_writes_an_override_and_undoing_it_removes_it(
        rclient, settings, tmp_path, rules, log):
    store(log, rules, "open", T0, ua="ExampleGateway/2.1")
    store(log, rules, "click", T0 + 1, ua="ExampleGateway/2.1", link=0)
    store(log, rules, "open", T0 + 2)
    extra = tmp_path / "local.conf"
    extra.write_text("[Example gateway]\nverdict = scanner\nevents = click\nua = ^ExampleGateway/\n")
    mine = replace(settings, verdict_extra_rules=(str(extra),))
    stricter = machines.load(machines.rule_files("", mine.verdict_extra_rules))
    result = recompute(rclient, mine, stricter)
    open_event, click, other = api_ids(rclient, log)
    assert result.changed == [click["event_id"]]
    assert click["engage"]["verdict"] == "scanner" and click["engage"]["raw_verdict"] == "human"
    assert click["engage"]["reasons"] == ["user agent matches Example gateway"]
    assert open_event["engage"]["verdict"] == other["engage"]["verdict"] == "human"
    assert rclient.ttl(overrides.key(settings.key_prefix, SHARD)) > settings.events_retention_days * 86400
    back = recompute(rclient, settings, rules)
    assert back.changed == [click["event_id"]]
    assert dict(back.transitions) == {("scanner", "human"): 1}
    assert not rclient.hexists(overrides.key(settings.key_prefix, SHARD), click["event_id"])
    assert api_ids(rclient, log)[1]["engage"] == {"verdict": "human", "reasons": []}


def test_dry_run_counts_and_writes_nothing(rclient, settings, rules, log):
    store(log, rules, "open", T0, ua="Mozilla/5.0", engage=False)  # stored before verdicts
    result = recompute(rclient, settings, rules, dry_run=True)
    assert dict(result.transitions) == {("human", "privacy_proxy"): 1}
    assert "would change 1" in result.report() and "dry run: nothing written" in result.report()
    assert not rclient.exists(overrides.key(settings.key_prefix, SHARD))
    assert "engage" not in api_ids(rclient, log)[0]
    recompute(rclient, settings, rules)
    assert api_ids(rclient, log)[0]["engage"]["raw_verdict"] == "human"


def test_since_limits_the_span_and_old_overrides_are_trimmed(rclient, settings, rules, log):
    store(log, rules, "open", T0, ua="Mozilla/5.0", engage=False)
    time.sleep(0.01)
    since = time.time()
    store(log, rules, "open", T0, ua="Mozilla/5.0", engage=False)
    stale = str((int(log.cutoff_ms()) - 5000) * 1000)
    overrides.write(rclient, settings.key_prefix, SHARD,
                    {stale: {"verdict": "scanner", "reasons": []}}, 86400)
    result = recompute(rclient, settings, rules, since=since)
    assert result.examined == 1 and result.start == pytest.approx(since)
    assert result.trimmed == 1
    assert not rclient.hexists(overrides.key(settings.key_prefix, SHARD), stale)


def test_recompute_uses_the_current_thresholds(rclient, settings, rules, log):
    store(log, rules, "click", T0, link=0, links_in_second=1)
    store(log, rules, "click", T0 + 0.2, link=1, links_in_second=2)
    assert recompute(rclient, settings, rules).changed == []
    result = recompute(rclient, replace(settings, burst_links=2), rules)
    assert len(result.changed) == 2
    assert [e["engage"]["reasons"] for e in api_ids(rclient, log)] == \
        [["2 links of this message within 1 s"]] * 2



def test_engage_verdicts_recompute_rebuilds_the_metrics_of_the_changed_hours(
        rclient, settings, tmp_path, rules, log):
    from engage.metrics import api as metricsapi
    from engage.verdicts.cli import rebuild_metrics

    now = time.time()
    store(log, rules, "click", now, ua="ExampleGateway/2.1", link=0)
    store(log, rules, "click", now, link=1)
    query = metricsapi.parse_metrics_query("", {
        "from": time.strftime("%Y-%m-%dT%H:00", time.gmtime(now - 3600)),
        "metrics": "count_clicked,count_nonprefetched_clicked"}, time.time())

    def clicks():
        (row,) = metricsapi.run(rclient, settings.key_prefix, query, time.time(),
                                settings.metrics_retention_days)
        return row["count_clicked"], row["count_nonprefetched_clicked"]

    assert clicks() == (2, 2)
    extra = tmp_path / "local.conf"
    extra.write_text("[Example gateway]\nverdict = scanner\nevents = click\nua = ^ExampleGateway/\n")
    mine = replace(settings, verdict_extra_rules=(str(extra),))
    result = recompute(rclient, mine, machines.load(machines.rule_files("", mine.verdict_extra_rules)))
    assert len(result.changed) == 1 and clicks() == (2, 2)  # the live counters knew the old verdict
    assert "not rebuilt" in rebuild_metrics(rclient, mine, result, now)  # this hour: live
    later = now + 2 * 3600  # once the hour is over
    rebuilt = rebuild_metrics(rclient, mine, result, later)
    assert rebuilt.startswith(f"metrics rebuilt from {time.strftime('%Y-%m-%dT%H', time.gmtime(now))}"
                              ":00Z in 1 shards (2 events, 1 overrides)"), rebuilt
    assert clicks() == (2, 1)


def test_each_override_is_written_in_its_events_shard(rclient, settings, rules, log):
    """Two messages in different shards, a burst each: each override goes into the
    verdicts hash of its event's shard, and the events API of that shard shows it."""
    shards = (3, 20)
    for shard in shards:
        transmission = key_in_shard(shard)
        for n in range(4):
            store(log, rules, "click", T0 + 0.1 * n, link=n, links_in_second=n + 1,
                  transmission=transmission)
    result = recompute(rclient, settings, rules)
    assert result.examined == 8 and len(result.changed) == 4 and set(result.firsts) == set(shards)
    for shard, other in (shards, shards[::-1]):
        events = api_ids(rclient, log, shard)
        assert [e["engage"]["verdict"] for e in events] == ["scanner"] * 4
        firsts = [e["event_id"] for e in events[:2]]
        assert rclient.hmget(overrides.key(settings.key_prefix, shard), firsts) != [None, None]
        assert rclient.hmget(overrides.key(settings.key_prefix, other), firsts) == [None, None]
    assert not rclient.exists(overrides.key(settings.key_prefix, keys.LAYOUT1))


def test_layout_1_events_are_recomputed_into_layout_1_overrides(rclient, settings, rules):
    """An event stored before the upgrade, in layout 1's stream (its format then): read as
    one more shard, its override in layout 1's hash, under its layout-1 event_id."""
    resolved = Resolved("tx-old", TEMPLATE, RECORD, None)
    event = build_event("open", resolved, RequestFacts("203.0.113.5", "Mozilla/5.0"), T0)
    entry = rclient.xadd(keys.events(settings.key_prefix, keys.LAYOUT1),
                         {"e": json.dumps(event, separators=(",", ":"))}).decode()
    ms, _, seq = entry.partition("-")
    result = recompute(rclient, settings, rules)
    assert result.examined == 1 and set(result.firsts) == {keys.LAYOUT1}
    assert result.changed == [str(int(ms) * 1000 + int(seq))]
    override = rclient.hget(overrides.key(settings.key_prefix, keys.LAYOUT1), result.changed[0])
    assert json.loads(override)["verdict"] == "privacy_proxy"
