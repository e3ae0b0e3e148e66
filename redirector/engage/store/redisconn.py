"""One way to connect to Redis for every engage process: short timeouts, one quick retry.

A milter that waits long for a dead Redis holds the SMTP client; failing fast lets the
failure policy (421 or deliver untracked) answer within a second or two.

``redis+cluster://host:port`` (or ``rediss+cluster://``) connects to a Redis Cluster
through any of its nodes. engage's scripts and transactions touch several keys at once,
so on a cluster every key must hash to one slot: settings.py only accepts a cluster URL
with a key prefix that carries a hash tag (``{engage}:``). The cluster client is built on
first use and its failures are redis.RedisError, so a cluster behaves as one Redis does
when it is away; the helpers below cover what redis-py does differently on a cluster
(scripts in pipelines, SCAN).
"""
from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterPipeline, RedisCluster
from redis.commands.core import Script
from redis.exceptions import ClusterError, RedisClusterException
from redis.retry import Retry

from engage.store import keys

if TYPE_CHECKING:  # redis-py 4.3 (Debian 12) has no redis._parsers and no StreamRangeResponse
    from redis._parsers import Encoder  # its home: redis.connection imports it, not re-exported
    from redis.typing import EncodableT, FieldT, StreamRangeResponse
else:
    from redis.connection import Encoder

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def hash_tag(prefix: str) -> str | None:
    """The hash tag of a key prefix as Redis Cluster reads it (the text between the first
    ``{`` and the next ``}``, when not empty), or None: then keys spread over slots."""
    found = re.search(r"\{([^}]*)\}", prefix)
    return found.group(1) if found and found.group(1) else None


def connect(url: str, timeout: float = 5.0) -> "redis.Redis":
    options: dict[str, Any] = dict(
        socket_timeout=timeout, socket_connect_timeout=min(timeout, 2.0),
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1))
    if is_cluster_url(url):
        scheme, rest = url.split("://", 1)
        # RedisCluster follows MOVED/ASK itself and retries on its own schedule.
        lazy = LazyCluster(f"{CLUSTER_SCHEMES[scheme.lower()]}://{rest}", options)
        return lazy  # type: ignore[return-value]  # duck-types the Redis commands engage uses
    return redis.Redis.from_url(
        url, health_check_interval=30,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError], **options)


class Cluster(RedisCluster):
    """RedisCluster whose own failures (no node reachable, slot not covered) are
    redis.RedisError, as every engage caller expects: redis-py raises them as
    RedisClusterException, which is not one."""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]  # unannotated
        except RedisClusterException as exc:
            raise ClusterError(str(exc)) from exc

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        pipe: ClusterPipeline = super().pipeline(transaction, shard_hint)  # type: ignore[no-untyped-call]  # unannotated
        pipe.__class__ = _Pipeline  # adds no state: only translates errors
        return pipe


class _Pipeline(ClusterPipeline):
    def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            return super().execute(raise_on_error)
        except RedisClusterException as exc:
            raise ClusterError(str(exc)) from exc


class LazyCluster:
    """A Cluster built on first use. RedisCluster reads the slot map from the nodes when
    it is built, so building it while no node answers would stop a service at start;
    redis.Redis connects when a command is sent, and this does the same: until the
    cluster answers, each command raises ClusterError (a redis.RedisError) and the next
    one tries again. Everything else is the Cluster's."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self._url, self._options = url, options
        self._cluster: Cluster | None = None
        self._lock = threading.Lock()

    def _get(self) -> Cluster:
        cluster = self._cluster
        if cluster is not None:
            return cluster
        with self._lock:
            if self._cluster is None:
                try:
                    # from_url builds a cls; redis-py annotates it as returning RedisCluster
                    self._cluster = cast(Cluster, Cluster.from_url(self._url, **self._options))
                except RedisClusterException as exc:
                    raise ClusterError(f"Redis Cluster not reachable: {exc}") from exc
            return self._cluster

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        try:
            return self._get().pipeline(transaction, shard_hint)
        except ClusterError as exc:
            return _FailedPipeline(exc)  # fails at execute(), where callers expect it

    def register_script(self, script: str) -> Script:
        # Calls go through __getattr__: built on first call.
        return Script(self, script)  # type: ignore[arg-type]  # stands in for its Cluster

    def get_encoder(self) -> Encoder:
        # What Script needs; engage reads bytes.
        return Encoder("utf-8", "strict", False)  # type: ignore[no-untyped-call]  # unannotated

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.close()


class _FailedPipeline:
    """A pipeline of a cluster that could not be reached: takes commands, raises on execute."""

    def __init__(self, error: ClusterError) -> None:
        self._error = error

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        raise self._error


def is_cluster(client: object) -> bool:
    return isinstance(client, (RedisCluster, ClusterPipeline, LazyCluster))


def readable_shards(client: object, prefix: str) -> tuple[int, ...]:
    """The shards a reader must look at: all 24, and layout 1 (engage.store.keys.LAYOUT1)
    unless the client is a Redis Cluster and the prefix has no hash tag. Layout 1 lived on
    a cluster only under a tagged prefix (one slot); untagged, its keys would be in
    different slots, which one script may not touch, and there are none to read."""
    return keys.shard_ids(layout1=not is_cluster(client) or hash_tag(prefix) is not None)


def shard_masters(client: Any, prefix: str, shards: Sequence[int] = keys.shard_ids()
                  ) -> list[tuple[Any, list[int]]]:
    """On a Redis Cluster, each master serving some of ``shards`` (a ClusterNode) with
    those shards, in shard order: where each shard's slot lives now."""
    found: dict[str, tuple[Any, list[int]]] = {}
    for shard in shards:
        node = client.get_node_from_key(keys.events(prefix, shard))
        found.setdefault(node.name, (node, []))[1].append(shard)
    return list(found.values())


def queue_script(script: Script, pipe: Any, keys: Sequence[Any], args: Sequence[Any]) -> None:
    """Queue a script call on a pipeline: EVALSHA on a plain Redis pipeline; EVAL on a
    cluster pipeline, where redis-py refuses EVALSHA."""
    if isinstance(pipe, ClusterPipeline):
        pipe.execute_command("EVAL", script.script, len(keys), *keys, *args)  # type: ignore[no-untyped-call]  # unannotated
    else:
        script(keys=keys, args=args, client=pipe)


def scan_keys(client: Any, match: str, count: int) -> Iterator[list[bytes]]:
    """SCAN every key matching ``match``, a chunk at a time; on a cluster node by node
    (every master), since a cursor belongs to one node."""
    nodes = ([client.get_redis_connection(node) for node in client.get_primaries()]
             if is_cluster(client) else [client])
    for node in nodes:
        cursor = 0
        while True:
            cursor, keys = node.scan(cursor, match=match, count=count)
            yield keys
            if cursor == 0:
                break


def run_script(client: Any, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    """``script(keys=keys, args=args)`` without redis-py's layers between it and
    execute_command (5% of a click's instructions); EVAL, which also loads the script,
    when Redis does not know it (restarted, or a new cluster node)."""
    try:
        return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        return client.execute_command("EVAL", script.script, len(keys), *keys, *args)


# Replies. redis-py annotates them for both decode_responses settings (``bytes | str``)
# and every command variant; engage's clients never decode, so they are bytes. Its
# cluster client, pipeline and Encoder are unannotated ("no-untyped-call" above).
Entry = tuple[bytes, dict[bytes, bytes]]  # a stream entry: (id, fields)


def reply_text(reply: bytes | str) -> str:
    """A reply (key, field, value, stream id) as the UTF-8 text engage wrote."""
    return reply.decode() if isinstance(reply, bytes) else reply


def stream_entries(reply: StreamRangeResponse | None) -> list[Entry]:
    """XRANGE / XREVRANGE's entries as engage's clients return them (redis-py's types
    also cover decoded replies, and the None ids and fields of other stream commands)."""
    return cast("list[Entry]", reply)


def hash_fields(mapping: Mapping[str, EncodableT]) -> dict[FieldT, EncodableT]:
    """A mapping as HSET and XADD take it: redis-py types their key as a union, which a
    ``dict[str, ...]`` does not match (a mapping's key type is invariant)."""
    return dict(mapping.items())
