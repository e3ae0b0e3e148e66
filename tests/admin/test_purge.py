"""``engage purge-data`` (engage.admin.purge) on a real Redis and a real Redis Cluster, and
``engage api-key new``.

Every key under the prefix goes, whatever bytes its name holds (an apostrophe, spaces, a
newline, invalid UTF-8, glob characters: the names that stopped the README's
``redis-cli --scan | xargs redis-cli del`` at 15 of 35 keys), in batches smaller than
the key count; every key outside the prefix stays, including names that only contain
the prefix or differ from it by one character.
"""
from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engage.admin import cli, purge
from engage.store import keys
from engage.store.redisconn import connect
from support.stored import key_in_shard

REPO = Path(__file__).resolve().parents[2]
P = "test:"
AWKWARD = [b"rcpt:o'brien@example.com", b"rcpt:d\"quote@example.com", b"with space",
           b"new\nline", b"tab\tand\rcr", b"\xff\xfe not utf-8 \xc3(", b"glob*?[x]\\",
           b"{braces}", b"", b"  leading", b"-dash", b"ends with ' '"]
OUTSIDE = [b"other:o'brien@example.com", b"test", b"test;x", b"Test:x", b"x test:y",
           b"tes:t", b"\xfftest:x"]


def fill(client: Any, prefix: bytes, count: int = 1200) -> set[bytes]:
    """Keys of every type under ``prefix`` (more than a batch) and the OUTSIDE ones."""
    pipe = client.pipeline(transaction=False)
    ours = set()
    for number in range(count):
        key = prefix + AWKWARD[number % len(AWKWARD)] + b":%d" % number
        kind = number % 5
        if kind == 0:
            pipe.set(key, b"v")
        elif kind == 1:
            pipe.hset(key, mapping={b"f": b"v"})
        elif kind == 2:
            pipe.zadd(key, {b"m": 1})
        elif kind == 3:
            pipe.xadd(key, {b"f": b"v"})
        else:
            pipe.rpush(key, b"a", b"b")
        ours.add(key)
    for name in AWKWARD:
        pipe.set(prefix + name, b"exact")
        ours.add(prefix + name)
    for name in OUTSIDE:
        pipe.set(name, b"not engage's")
    pipe.execute()
    return ours


def every_key(client: Any) -> set[bytes]:
    return set(client.scan_iter(count=1000))


def test_purge_deletes_every_key_under_the_prefix_and_nothing_else(redis_client):
    ours = fill(redis_client, P.encode())
    assert purge.census(redis_client, P, batch=100).keys == len(ours)
    deleted, _ = purge.purge(redis_client, P, batch=100)
    assert deleted == len(ours)
    assert every_key(redis_client) == set(OUTSIDE)


def every_family(client: Any, prefix: str) -> set[bytes]:
    """A key of every family under ``prefix``, in each of the 24 shards and in layout 1,
    written with the key builders (the names engage uses)."""
    names = {keys.rate_limit(prefix, "198.51.100.0", 1), keys.webhook_ids(prefix),
             keys.login_limit_prefix(prefix) + "rl:x:1", keys.webhook(prefix, "h1"),
             keys.webhook_log(prefix, "h1"), keys.open_limit(prefix, "198.51.100.0", 1),
             keys.dropped(prefix), keys.layout(prefix)}
    for shard in keys.shard_ids(layout1=True):
        message = key_in_shard(max(shard, 0))
        names |= {keys.template(prefix, "t1", shard), keys.message(prefix, message, shard),
                  keys.status(prefix, message, shard), keys.events(prefix, shard),
                  keys.event_index(prefix, shard, "click"),
                  keys.event_index(prefix, shard, "click", "r", "o'brien@example.com"),
                  keys.verdicts(prefix, shard), keys.aggregate(prefix, shard, "l", "2026-12-07T17"),
                  keys.aggregate(prefix, shard, "d", "2026-12-07T17"), keys.webhook_dead(prefix, shard),
                  keys.webhook_batches(prefix, "h1", shard), keys.webhook_due(prefix, "h1", shard),
                  keys.append_ids(prefix, shard, 1), keys.compacting(prefix, keys.events(prefix, shard))}
        if shard != keys.LAYOUT1:
            names |= {keys.burst(prefix, message, 1), keys.trap_clients(prefix, message),
                      keys.repeat_open(prefix, message, "o", "x")}
    assert all(keys.family_of(prefix, name) for name in names)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.set(name, b"v")
    pipe.execute()
    return {name.encode() for name in names}


def test_both_layouts_every_family_and_shard_are_purged(redis_client):
    ours = every_family(redis_client, P)
    assert len(ours) > 25 * 14
    assert purge.purge(redis_client, P, batch=64)[0] == len(ours)
    assert every_key(redis_client) == set()


def test_a_prefix_with_glob_characters_matches_itself_only(redis_client):
    redis_client.set(b"a*:1", b"v")
    redis_client.set(b"ab:1", b"v")
    redis_client.set(b"a[b]:1", b"v")
    redis_client.set(b"ab]:1", b"v")
    assert purge.purge(redis_client, "a*:")[0] == 1
    assert purge.purge(redis_client, "a[b]:")[0] == 1
    assert every_key(redis_client) == {b"ab:1", b"ab]:1"}


def test_an_empty_prefix_is_refused(redis_client):
    redis_client.set(b"anything", b"v")
    with pytest.raises(purge.PurgeError, match="key_prefix is empty"):
        purge.purge(redis_client, "")
    assert redis_client.exists(b"anything")


def test_on_a_cluster_every_master_is_purged(redis_cluster):
    """Keys spread over all slots (no hash tag, so no multi-key script could run: purge
    needs none), layout 2's shards over the masters and both layouts under the tagged
    prefix layout 1 needed on a cluster."""
    redis_cluster.flush()
    client = connect(redis_cluster.url)
    try:
        for prefix in ("spread:", "{engage}:", "shards:"):
            ours = set() if prefix == "spread:" else every_family(client, prefix)
            if prefix != "shards:":
                ours |= fill(client, prefix.encode(), count=300)
            nodes = {client.get_node_from_key(key).port for key in ours}
            if prefix != "{engage}:":
                assert len(nodes) == len(redis_cluster.nodes)
            deleted, _ = purge.purge(client, prefix, batch=50)
            assert deleted == len(ours)
            left = {key for node in client.get_primaries()
                    for key in client.get_redis_connection(node).scan_iter(count=1000)}
            assert left == set(OUTSIDE)
    finally:
        client.close()


def engage(redis_url: str, *args: str, prefix: str = P, config: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "ENGAGE_CONFIG": str(config), "ENGAGE_REDIS_URL": redis_url,
           "ENGAGE_KEY_PREFIX": prefix, "PYTHONPATH": str(REPO / "redirector")}
    return subprocess.run([sys.executable, "-m", "engage.admin.cli", *args], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def test_the_command_asks_first_and_needs_yes_without_a_terminal(redis_client, redis_server,
                                                               tmp_path):
    config = tmp_path / "empty.conf"
    config.touch()
    ours = fill(redis_client, P.encode(), count=40)
    asked = engage(redis_server.url, "purge-data", config=config)
    assert asked.returncode == 2 and "pass --yes" in asked.stderr
    assert f"{len(ours)} keys in redis://" in asked.stdout  # with three of them, as SCAN met them
    assert purge.census(redis_client, P).keys == len(ours)
    done = engage(redis_server.url, "purge-data", "--yes", config=config)
    assert done.returncode == 0, done.stderr
    assert f"deleted {len(ours)} keys from redis://" in done.stdout
    assert every_key(redis_client) == set(OUTSIDE)
    again = engage(redis_server.url, "purge-data", config=config)
    assert again.returncode == 0 and "no engage keys" in again.stdout
    empty = engage(redis_server.url, "purge-data", "--yes", prefix="", config=config)
    assert empty.returncode == 2 and "key_prefix is empty" in empty.stderr
    down = engage("redis://127.0.0.1:1/0", "purge-data", "--yes", config=config)
    assert down.returncode == 1 and "redis failed" in down.stderr
    assert "Traceback" not in asked.stderr + done.stderr + empty.stderr + down.stderr
    assert every_key(redis_client) == set(OUTSIDE)


class Terminal:
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answer, deleted", [("no", False), ("", False), ("yes", True)])
def test_at_a_terminal_only_yes_deletes(answer, deleted, redis_client, redis_server, tmp_path,
                                        monkeypatch, capsys):
    config = tmp_path / "empty.conf"
    config.touch()
    fill(redis_client, P.encode(), count=10)
    monkeypatch.setenv("ENGAGE_REDIS_URL", redis_server.url)
    monkeypatch.setenv("ENGAGE_KEY_PREFIX", P)
    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr("builtins.input", lambda prompt: answer)
    status = cli.main(["purge-data", "--config", str(config)])
    assert (status, every_key(redis_client) == set(OUTSIDE)) == (0 if deleted else 2, deleted)


def test_api_key_new_prints_a_random_key_of_256_bits(capsys):
    keys = set()
    for _ in range(3):
        assert cli.main(["api-key", "new"]) == 0
        keys.add(capsys.readouterr().out.strip())
    assert len(keys) == 3
    for key in keys:
        assert len(base64.urlsafe_b64decode(key + "=")) * 8 >= 128
        assert key.replace("-", "").replace("_", "").isalnum() and "," not in key
