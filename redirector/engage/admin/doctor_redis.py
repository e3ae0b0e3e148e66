"""``engage doctor``'s Redis checks: reachable, a writable primary, what a crash loses, no
eviction of links, a replica behind the Cluster master that holds engage's slot, and the
settings that make each message cost more memory than it needs.

Every problem names its cause, what it does to mail or data, and the redis-cli commands
that fix it (CONFIG SET applies at once, CONFIG REWRITE keeps it in redis.conf).
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from engage import settings as config
from engage.admin.doctor_findings import ERROR, OK, WARN, Finding, Options
from engage.store import keys
from engage.store.pressure import read_memory, refused_writes
from engage.store.redisconn import connect, hash_tag, is_cluster, shard_masters

DEFAULT_PORT = 6379
# Redis's defaults for its compact encodings; lower values turn the small hashes (message
# status, aggregates) and sorted sets (event indexes) into structures 2-3x the size.
COMPACT_ENCODINGS = {"hash-max-listpack-entries": 128, "hash-max-listpack-value": 64,
                     "zset-max-listpack-entries": 128, "zset-max-listpack-value": 64}
# Message records (about 100 bytes each) are packed up to 100 to a hash
# (engage.store.tokens.Buckets), which stays a compact listpack only while every value
# fits in hash-max-listpack-value; Redis's default (64) makes each bucket a hash table.
RECORD_VALUES = 256


def redacted(url: str) -> str:
    """The URL without its password (for messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{parts.username or ''}:***@{parts.hostname}{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def redis_cli(host: str | None, port: int | None, password: bool = False) -> str:
    """The redis-cli command line that reaches this server (never with the password)."""
    words = ["redis-cli"]
    if host and host not in ("127.0.0.1", "localhost"):
        words += ["-h", host]
    if port and port != DEFAULT_PORT:
        words += ["-p", str(port)]
    return " ".join(words + (["--askpass"] if password else []))


def check_redis(settings: config.Settings, options: Options) -> list[Finding]:
    where = redacted(settings.redis_url)
    client = connect(settings.redis_url, timeout=options.timeout)
    parts = urlsplit(settings.redis_url)
    try:
        if is_cluster(client):
            node, cluster, cli = _cluster(client, settings, parts.password is not None)
        else:
            node, cluster = client, []
            cli = redis_cli(parts.hostname, parts.port, parts.password is not None)
        info = node.info()
        version = info.get("redis_version", "?")
        findings = [Finding(OK, "redis", f"Redis {version} answers at {where}")] + cluster
        if info.get("role", "master") != "master":
            findings.append(Finding(ERROR, "redis", f"Redis at {where} is a read-only replica: "
                                    "the milter cannot store links, so it tempfails mail",
                                    ("in engage.conf: [redis] url = the primary's URL",)))
        if info.get("cluster_enabled") and not cluster:
            findings.append(Finding(ERROR, "redis", f"Redis at {where} is a Redis Cluster node: "
                                    "write [redis] url as redis+cluster://host:port"))
        findings += _persistence(node, info, cli) + _eviction(node, settings, cli)
        return findings + _memory(node, cli) + pressure(node, settings)
    except redis.AuthenticationError as exc:
        return [Finding(ERROR, "redis", f"Redis at {where} refuses the password in [redis] "
                        f"url: {exc}")]
    except redis.RedisError as exc:
        return [Finding(ERROR, "redis", f"cannot reach Redis at {where}: {str(exc).rstrip('.')}. "
                        "Tracking needs it: the milter tempfails mail (or passes it untracked, "
                        "[milter] on_store_error) and clicks get 503 while it is away",
                        ("systemctl start redis-server",
                         "systemctl status redis-server  (why it stopped)",
                         "(if Redis runs on another host: [redis] url in engage.conf)"))]
    finally:
        client.close()


def _cluster(client: Any, settings: config.Settings,
             password: bool) -> tuple[redis.Redis, list[Finding], str]:
    """Which masters hold engage's shards (engage.store.keys: 24 hash-tagged shards, or
    one slot when the prefix has a hash tag), what to say about the cluster, and the
    master the other checks look at (shard 0's) with its redis-cli."""
    state = client.cluster_info().get("cluster_state", "?")
    masters = len(client.get_primaries())
    tag, prefix = hash_tag(settings.key_prefix), settings.key_prefix
    holders = {(node.host, node.port): shards for node, shards in shard_masters(client, prefix)}
    if tag:
        where = next(iter(holders))
        text = (f" has the hash tag {{{tag}}}: every engage key is in slot "
                f"{client.keyslot(prefix)}, on {where[0]}:{where[1]} (works; no scale-out: "
                "for the 24 shards, a prefix without a tag, docs/operations.md)")
    else:
        text = ": engage's 24 shards are on " + ", ".join(
            f"{host}:{port} ({len(shards)})" for (host, port), shards in holders.items())
    findings = [Finding(OK if state == "ok" else ERROR, "redis",
                        f"Redis Cluster of {masters} masters, cluster_state {state}; "
                        f"key_prefix {prefix!r}{text}")]
    lonely = []
    for host, port in holders:
        master = client.get_redis_connection(client.get_node(host=host, port=port))
        if int(master.info("replication").get("connected_slaves", 0)) == 0:
            lonely.append((host, port))
    for host, port in lonely:
        cli = redis_cli(host, port, password)
        held = holders[(host, port)]
        findings.append(Finding(WARN, "redis", f"the Cluster master {host}:{port}, which holds "
                                + (f"slot {client.keyslot(prefix)} (every engage key)" if tag
                                   else f"{len(held)} of engage's 24 shards")
                                + ", has no replica: if it fails nothing takes over, so the "
                                "milter tempfails mail and clicks get 503 until it is back, and "
                                "what it wrote since its last save is lost",
                                ("(first start another redis-server with cluster-enabled yes, "
                                 "empty, at NEW_HOST:NEW_PORT)",
                                 f"redis-cli --cluster add-node NEW_HOST:NEW_PORT "
                                 f"{host}:{port} --cluster-slave --cluster-master-id "
                                 f"$({cli} CLUSTER MYID)")))
    first = client.get_node_from_key(keys.events(prefix, 0))
    return (client.get_redis_connection(first), findings,
            redis_cli(first.host, first.port, password))


def _config_get(client: redis.Redis, name: str) -> str | None:
    """CONFIG GET name, or None when CONFIG is renamed away or not allowed (managed Redis)."""
    try:
        value = client.config_get(name).get(name)
    except redis.ResponseError:
        return None
    return value.decode() if isinstance(value, bytes) else value


def _set(cli: str, name: str, value: str) -> tuple[str, str]:
    return f"{cli} CONFIG SET {name} {value}", f"{cli} CONFIG REWRITE"


def longest_save_interval(save: str) -> int:
    """'3600 1 300 100 60 10000' -> 3600: with little traffic, the time between snapshots."""
    numbers = [int(word) for word in save.split() if word.isdigit()]
    return max(numbers[0::2], default=0)


def _persistence(client: redis.Redis, info: dict[str, Any], cli: str) -> list[Finding]:
    save = _config_get(client, "save")
    failures = [key for key in ("aof_last_write_status", "rdb_last_bgsave_status")
                if info.get(key, "ok") != "ok"]
    if failures:
        return [Finding(ERROR, "redis", f"Redis cannot write to disk ({failures[0]} is "
                        f"{info[failures[0]]}): check its log and free space")]
    if info.get("aof_enabled"):
        return [Finding(OK, "redis", "persistence on (AOF)")]
    if save:
        minutes = max(1, longest_save_interval(save) // 60)
        return [Finding(WARN, "redis", f"Redis saves RDB snapshots only (save {save}), no AOF: "
                        "a crash, a kill or a power cut loses everything written since the "
                        f"last snapshot, up to {minutes} minutes of it: the links of mail sent "
                        "in that time (their clicks then get 404) and the opens and clicks "
                        "recorded", _set(cli, "appendonly", "yes"))]
    if save is None:
        return [Finding(WARN, "redis", "cannot read Redis's CONFIG (renamed or not allowed): "
                        "persistence and maxmemory-policy not checked")]
    return [Finding(ERROR, "redis", "Redis keeps everything in memory only (no AOF, no RDB "
                    "snapshots): a restart loses every tracking link, so every click on mail "
                    "already sent gets 404, and every event", _set(cli, "appendonly", "yes"))]


def _eviction(client: redis.Redis, settings: config.Settings, cli: str) -> list[Finding]:
    policy = _config_get(client, "maxmemory-policy")
    if policy is None:
        return []
    limit = int(_config_get(client, "maxmemory") or 0)
    when = f"once it holds maxmemory ({limit} bytes)" if limit else "once it is given a maxmemory"
    fix = _set(cli, "maxmemory-policy", "noeviction")
    if policy.startswith("allkeys-"):
        return [Finding(ERROR, "redis", f"maxmemory-policy is {policy}: {when}, Redis deletes "
                        "tracking links and message records to make room: clicks on them get "
                        "404 and their events are lost. Use noeviction and watch the memory",
                        fix)]
    if policy.startswith("volatile-"):
        kept = "links, events and metrics" if settings.link_retention_days else "events and metrics"
        return [Finding(ERROR, "redis", f"maxmemory-policy is {policy}: {when}, Redis deletes "
                        f"{kept} (every key with an expiry) before their time, and the metrics "
                        "undercount. Use noeviction and watch the memory", fix)]
    return [Finding(OK, "redis", f"maxmemory-policy {policy} never evicts tracking links")]


def _memory(client: redis.Redis, cli: str) -> list[Finding]:
    """Settings that make every tracked message cost more memory than it needs."""
    findings = []
    for name, default in COMPACT_ENCODINGS.items():
        value = _config_get(client, name)
        if value is not None and value.isdigit() and int(value) < default:
            findings.append(Finding(WARN, "redis", f"{name} is {value} (default {default}): "
                                    "message status hashes and event indexes take 2-3x the "
                                    f"memory. Set {name} {default} or more"))
    value = _config_get(client, "hash-max-listpack-value")
    if value is not None and value.isdigit() and 64 <= int(value) < RECORD_VALUES:
        findings.append(Finding(WARN, "redis", f"hash-max-listpack-value is {value}: message "
                                "records (about 100 bytes each) do not fit, so each bucket of "
                                "100 records is a hash table, about 50 bytes more per message "
                                f"(docs/redis-schema.md). Set it to {RECORD_VALUES}",
                                _set(cli, "hash-max-listpack-value", str(RECORD_VALUES))))
    return findings


def pressure(client: redis.Redis, settings: config.Settings) -> list[Finding]:
    """Memory against maxmemory: above [redis] events_high_water the redirector records
    no events (mail comes first); at maxmemory Redis refuses writes and the milter tempfails."""
    memory = read_memory(client, settings.key_prefix, settings.events_high_water)
    if not memory.limit:
        return []
    share = f"{memory.used} of maxmemory {memory.limit} bytes ({memory.used / memory.limit:.0%})"
    if memory.full:
        refused = refused_writes(client, settings.key_prefix)
        return [Finding(ERROR, "redis", f"Redis is full, {share}: it refuses writes "
                        f"({refused if refused is not None else 'an unknown number'} so far), "
                        "the milter tempfails tracked mail (421) and no events are recorded; "
                        "links still redirect. Raise maxmemory or shorten [events] "
                        "retention_days (docs/limits.md)")]
    if memory.above:
        return [Finding(WARN, "redis", f"Redis holds {share}, above [redis] events_high_water "
                        f"({settings.events_high_water:.0%}): the redirector records no events "
                        "(counted in /healthz) so that the milter keeps the room left. Raise "
                        "maxmemory or shorten [events] retention_days (docs/limits.md)")]
    return [Finding(OK, "redis", f"Redis holds {share}; events stop at "
                    f"{settings.events_high_water:.0%} ([redis] events_high_water)")]
