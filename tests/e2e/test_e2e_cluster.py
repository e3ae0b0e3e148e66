"""engage on a Redis Cluster (3 masters on loopback, no replicas), end to end: messages
through the sandbox Postfix and the milter, links and pixels answered by the redirector
under gunicorn, the events API and the metrics API, a webhook worker delivering, ``engage
forget`` and ``engage doctor`` -- every process pointed at ``redis+cluster://`` with the
key prefix ``t:`` (layout 2: each message's keys in one of 24 hash-tagged shards, the
shards spread over the three masters). Also: the settings take a cluster URL with any
prefix (a tagged one keeps every key in one slot) and database 0 only."""
from __future__ import annotations

import email
import json
import re
import secrets
import subprocess
import sys
import time
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from test_e2e_forget import Target, events_of, wait

from engage import settings as config
from engage.admin import doctor
from engage.store import keys as key_registry
from engage.store.redisconn import connect, scan_keys
from engage.webhooks import config as hooks
from engage.webhooks.config import Webhook
from engage.webhooks.store import WebhookStore
from support.procs import REPO, http_get, stop_process
from support.redisdump import traces
from support.stored import settled_for

P = "t:"
JANE = "jane@example.org"
BOB = "bob@example.net"
LINKS = ["https://shop.example.com/sale?a=1&b=2", "https://shop.example.com/guide"]


@pytest.mark.parametrize("url, prefix, error", [
    ("redis+cluster://127.0.0.1:7000", "engage:", None),  # layout 2: shards spread
    ("redis+cluster://127.0.0.1:7000", "{}engage:", "hash tag that is empty"),
    ("rediss+cluster://127.0.0.1:7000", "e{}{engage}:", "hash tag that is empty"),
    ("redis://127.0.0.1:6379/0", "{}engage:", None),  # one Redis: no slots
    ("redis+cluster://127.0.0.1:7000/1", "engage:", "database 0 only"),
    ("redis+cluster://127.0.0.1:7000", "{engage}:", None),  # one slot: works, no scale-out
    ("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", "e{ng}:", None),
    ("redis://127.0.0.1:6379/0", "engage:", None),
])
def test_a_cluster_url_takes_database_0_and_any_prefix(url, prefix, error):
    environ = {"ENGAGE_CONFIG": "/dev/null", "ENGAGE_REDIS_URL": url, "ENGAGE_KEY_PREFIX": prefix}
    if error is None:
        assert config.load(environ=environ).key_prefix == prefix
    else:
        with pytest.raises(config.SettingsError, match=re.escape(error)):
            config.load(environ=environ)


@pytest.fixture
def cluster(redis_cluster: Any) -> Any:
    redis_cluster.flush()
    client = connect(redis_cluster.url)
    yield client
    client.close()


def build(subject: str, rcpt: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Shop <news@shop.example.com>"
    msg["To"] = rcpt
    msg["Subject"] = subject
    msg["X-MSYS-API"] = json.dumps({"campaign_id": "cluster", "metadata": {"email": rcpt}})
    anchors = "".join(f'<p><a href="{url.replace("&", "&amp;")}">l{i}</a></p>'
                      for i, url in enumerate(LINKS))
    msg.set_content(f"<html><body>{anchors}</body></html>\n", subtype="html")
    return msg.as_bytes(policy=policy.SMTP)


def metrics(redirector: Any) -> dict[str, Any]:
    settled_for(redirector)  # clicks' events are appended after their 302s
    query = urlencode({"from": time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() - 7200)),
                       "metrics": "count_sent,count_clicked,count_rendered"})
    status, _, body = http_get(f"{redirector.url}/api/v1/metrics/deliverability/campaign?{query}",
                               {"Authorization": redirector.api_key})
    assert status == 200, body
    return {row.pop("campaign_id"): row for row in json.loads(body)["results"]}


def engage_keys(redis_cluster: Any) -> dict[int, list[bytes]]:
    """Every key on every master, by the master's port (its own SCAN, not the cluster's)."""
    import redis

    found = {}
    for node in redis_cluster.nodes:
        client = redis.Redis(host=node.host, port=node.port)
        found[node.port] = [k for chunk in scan_keys(client, "*", 1000) for k in chunk]
        client.close()
    return found


def test_mail_clicks_apis_webhooks_forget_and_doctor_on_a_redis_cluster(
        cluster, redis_cluster, start_redirector, start_milter, postfix_sandbox, engage_tmp,
        tmp_path):
    on_cluster = {"ENGAGE_REDIS_URL": redis_cluster.url, "ENGAGE_KEY_PREFIX": P}
    redirector = start_redirector(on_cluster)
    base = redirector.public_url
    milter = start_milter({**on_cluster, "ENGAGE_TRACKING_URL": base})
    postfix = postfix_sandbox(milter)
    empty = tmp_path / "empty.conf"
    empty.touch()
    env = {"PATH": "/usr/bin:/bin", "ENGAGE_CONFIG": str(empty), "ENGAGE_LOG_LEVEL": "INFO",
           "PYTHONPATH": str(REPO / "redirector"), "ENGAGE_WEBHOOK_BATCH_INTERVAL": "0.2",
           "ENGAGE_WEBHOOK_RETRY_BASE": "0.2", "ENGAGE_WEBHOOK_RETRY_MAX": "0.5",
           "ENGAGE_WEBHOOK_ALLOW_PRIVATE_TARGETS": "yes", **on_cluster}  # target on loopback
    target = Target()
    target.failing.clear()
    store = WebhookStore(cluster, P)
    hook = hooks.validate(Webhook(id=secrets.token_hex(8), name="cluster", target=target.url,
                                  created=time.time()))
    store.create(hook)
    worker_log = open(engage_tmp / "cluster-worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen([sys.executable, "-m", "engage.webhooks", "run"], env=env,
                              cwd=REPO, stdout=worker_log, stderr=subprocess.STDOUT)
    try:
        mails = {"m1": JANE, "m2": BOB, "m3": JANE}
        for name, rcpt in mails.items():
            assert postfix.send(build(f"{name}: news", rcpt), "bounces@shop.example.com",
                                [rcpt]) == {}
        delivered = postfix.wait_delivered(3)
        clicked = 0
        for raw in delivered:
            html = email.message_from_bytes(raw, policy=policy.default).get_body(
                ("html",)).get_content()
            links = re.findall(rf"{re.escape(base)}/c/[A-Za-z0-9_-]+", html)
            pixels = re.findall(rf"{re.escape(base)}/[io]/[A-Za-z0-9_-]+", html)
            assert len(links) == 2 and len(pixels) == 2
            assert sorted(http_get(url)[1]["Location"] for url in links) == sorted(LINKS)
            assert all(http_get(url)[0] == 200 for url in pixels)
            clicked += len(links)

        # The events API and the metrics API answer from the cluster.
        bob, jane = events_of(redirector, BOB), events_of(redirector, JANE)
        assert len(bob) == 4 and len(jane) == 8
        assert {e["type"] for e in bob} == {"click", "open", "initial_open"}
        row = metrics(redirector)["cluster"]
        assert row["count_sent"] == 3 and row["count_clicked"] == clicked == 6
        assert row["count_rendered"] == 6
        # Layout 2: every master holds engage keys (a third of the shards each), and
        # each sharded key is in its shard tag's slot.
        where = {port: keys for port, keys in engage_keys(redis_cluster).items() if keys}
        assert len(where) == 3
        for held in where.values():
            for key in held:
                shard = key_registry.shard_of_key(P, key.decode())
                if shard != key_registry.LAYOUT1:
                    assert cluster.keyslot(key) == cluster.keyslot(
                        key_registry.tag(shard).encode()), key

        # The webhook worker delivers every event.
        wait(lambda: len(target.delivered()) >= 12, what="12 events delivered by the webhook")
        assert {e["rcpt_to"] for e in target.delivered()} == {JANE, BOB}

        # engage forget erases Jane (SCAN node by node, scripts in the tag's slot).
        done = subprocess.run([sys.executable, "-m", "engage.admin.cli", "forget", JANE], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "message records scrubbed: 2," in done.stdout, done.stdout
        assert traces(cluster, JANE) == []
        assert events_of(redirector, BOB) == bob and events_of(redirector, JANE) == []
        assert worker.poll() is None and milter.alive() and redirector.alive()

        # engage doctor says it is a cluster and where the prefix's slot lives.
        settings = config.load(environ={**env, "ENGAGE_CONFIG": str(empty)})
        findings = doctor.check_redis(settings, doctor.Options())
        # The fixture's masters have no replicas: a warning for each (issue 17, breakage 19).
        assert [f.level for f in findings][:5] == ["ok", "ok", "warn", "warn", "warn"], findings
        for port in where:
            assert any(f"the Cluster master 127.0.0.1:{port}, which holds 8 of engage's 24 "
                       "shards, has no replica" in finding.text for finding in findings[2:5])
        assert (f"Redis Cluster of 3 masters, cluster_state ok; key_prefix '{P}': engage's 24 "
                "shards are on 127.0.0.1:") in findings[1].text
        assert findings[1].text.count("(8)") == 3
    finally:
        stop_process(worker)
        worker_log.close()
        target.server.shutdown()
        target.server.server_close()


def test_doctor_says_a_plain_url_points_at_a_cluster_node(redis_cluster: Path) -> None:
    settings = config.Settings(redis_url=redis_cluster.urls[0], key_prefix="{t}:")
    findings = doctor.check_redis(settings, doctor.Options())
    assert any(f.level == doctor.ERROR and "is a Redis Cluster node: write [redis] url as "
               "redis+cluster://" in f.text for f in findings), findings


def test_metrics_rebuild_verdict_recompute_and_rate_limit_on_a_redis_cluster(cluster):
    """The commands an operator runs, on the cluster: the live buckets equal a recount of
    the stream, a rebuild repairs damaged buckets, a recompute writes overrides; events
    appended in a batch (scripts in a cluster pipeline) count too; the rate limiter counts."""
    from metrics_recount import ALL, event_for, hour_start, make_traffic, recount, stream_events

    from engage.metrics import api as metricsapi
    from engage.metrics.rebuild import rebuild
    from engage.store.events import EventLog
    from engage.store.links import LinkStore
    from engage.verdicts import machines
    from engage.verdicts.recompute import recompute
    from engage.web.ratelimit import RateLimiter

    now = time.time()
    first = hour_start(now) - 20 * 3600
    log = EventLog(cluster, P)
    sent = make_traffic(LinkStore(cluster, P), log, first, messages=30, seed=5)
    log.append_many([event_for(sent[0], "click", first + 7200 + n, 0, "human") for n in range(3)])
    query = metricsapi.parse_metrics_query("campaign", {
        "from": time.strftime("%Y-%m-%dT%H:%M", time.gmtime(first)), "metrics": ",".join(ALL)},
        now)

    def rows() -> dict[str, Any]:
        return {row.pop("campaign_id"): row for row in metricsapi.run(cluster, P, query, now, 400)}

    expected = recount(stream_events(cluster, P), sent, first, hour_start(now) + 3600,
                       "campaign_id")
    assert rows() == {name: row for name, row in expected.items() if any(row.values())}
    damaged = [key for key in cluster.scan_iter(match=f"{P}*agg:e:*")]  # every shard
    assert damaged
    for key in damaged:
        cluster.hset(key, "r|spring|example.com", 999)
    report = rebuild(cluster, P, first - 3600, first + 12 * 3600, 400, now)
    assert report.events == len(stream_events(cluster, P))
    assert rows() == {name: row for name, row in expected.items() if any(row.values())}

    settings = config.Settings(redis_url="redis+cluster://127.0.0.1:1", key_prefix=P)
    result = recompute(cluster, settings, machines.load([machines.shipped_rules()]), now=now)
    assert result.examined == len(stream_events(cluster, P))

    limiter = RateLimiter(cluster, P, limit=2, window=60)
    assert [limiter.allow("192.0.2.1", now) for _ in range(3)] == [True, True, False]


def test_a_cluster_that_is_down_fails_as_a_down_redis_does_and_is_used_once_it_answers(
        engage_tmp):
    """No process needs the cluster to start: commands fail with a redis.RedisError (the
    milter's on_store_error, the redirector's 503 and pixel) until it answers."""
    from engage.store.links import Link, LinkStore, MessageRecord, StoreError, Template, new_message_key
    from engage.web.app import create_app
    from support.procs import RedisClusterServers

    servers = RedisClusterServers(engage_tmp / "redis-cluster-late")  # ports chosen, not started
    client = connect(servers.url, timeout=1)
    store = LinkStore(client, P)
    template = Template(links=(Link("https://example.com/"),), campaign_id="late")

    def register() -> None:
        store.register(new_message_key(), template,
                       MessageRecord(rcpt_to=("a@example.com",), template_id=template.template_id))

    with pytest.raises(StoreError, match="Redis Cluster not reachable"):
        register()
    web = create_app(config.Settings(redis_url=servers.url, key_prefix=P, rate_limit=0,
                                     tracking_url="http://track.test")).test_client()
    assert web.get("/healthz").status_code == 503
    pixel = web.get("/o/AAAAAAAAAAAAAAAAAAAAAAAA")
    assert pixel.status_code == 200 and pixel.mimetype == "image/gif"
    servers.start()
    try:
        register()
        assert web.get("/healthz").status_code == 200
    finally:
        servers.stop()
