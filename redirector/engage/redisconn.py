"""One way to connect to Redis for every engage process: short timeouts, one quick retry.

A milter that waits long for a dead Redis holds the SMTP client; failing fast lets the
failure policy (421 or deliver untracked) answer within a second or two.

``redis+cluster://host:port`` (or ``rediss+cluster://``) connects to a Redis Cluster
through any of its nodes. engage's scripts and transactions touch several keys at once,
so on a cluster every key must hash to one slot: settings.py only accepts a cluster URL
with a key prefix that carries a hash tag (``{engage}:``). The helpers below cover the
two things redis-py does differently on a cluster (scripts in pipelines, SCAN).
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterPipeline, RedisCluster
from redis.commands.core import Script
from redis.retry import Retry

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def hash_tag(prefix: str) -> str | None:
    """The hash tag of a key prefix as Redis Cluster reads it (the text between the first
    ``{`` and the next ``}``, when not empty), or None: then keys spread over slots."""
    found = re.search(r"\{([^}]*)\}", prefix)
    return found.group(1) if found and found.group(1) else None


def connect(url: str, timeout: float = 5.0) -> "redis.Redis[bytes]":
    options: dict[str, Any] = dict(
        socket_timeout=timeout, socket_connect_timeout=min(timeout, 2.0),
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1))
    if is_cluster_url(url):
        scheme, rest = url.split("://", 1)
        # RedisCluster follows MOVED/ASK itself and retries on its own schedule.
        cluster = RedisCluster.from_url(f"{CLUSTER_SCHEMES[scheme.lower()]}://{rest}",
                                        **options)
        return cluster  # type: ignore[return-value]
    return redis.Redis.from_url(
        url, health_check_interval=30,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError], **options)


def is_cluster(client: object) -> bool:
    return isinstance(client, (RedisCluster, ClusterPipeline))


def queue_script(script: Script, pipe: Any, keys: Sequence[Any], args: Sequence[Any]) -> None:
    """Queue a script call on a pipeline: EVALSHA on a plain Redis pipeline; EVAL on a
    cluster pipeline, where redis-py refuses EVALSHA."""
    if isinstance(pipe, ClusterPipeline):
        pipe.execute_command("EVAL", script.script, len(keys), *keys, *args)
    else:
        script(keys=keys, args=args, client=pipe)


def scan_keys(client: Any, match: str, count: int) -> Iterator[list[bytes]]:
    """SCAN every key matching ``match``, a chunk at a time; on a cluster node by node
    (every master), since a cursor belongs to one node."""
    nodes = ([client.get_redis_connection(node) for node in client.get_primaries()]
             if isinstance(client, RedisCluster) else [client])
    for node in nodes:
        cursor = 0
        while True:
            cursor, keys = node.scan(cursor, match=match, count=count)
            yield keys
            if cursor == 0:
                break
