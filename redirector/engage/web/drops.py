"""What the redirector did not store, and the body of ``/healthz`` (engage.web.health).

``Drops`` counts the events not stored and why: ``high-water`` (Redis above
``[redis] events_high_water``: not even tried), ``refused`` (Redis refused the write for
memory), ``limited`` (past ``[web] open_limit`` for the client's network), ``lost`` (any
other Redis failure). One log line per reason at most every LOG_EVERY seconds says how
many went since the last one, so a flood cannot flood the log too. Each process adds its
counts to the hash ``{p}dropped`` at most once a second (kept in the process while Redis
refuses), so /healthz on any worker or host shows them all.

``/healthz`` answers 200 whenever Redis answers, because links still redirect; its body
says ``"status": "degraded"`` when Redis is above the mark or full, with the memory
reading, the writes Redis refused for memory (all clients) and this process's drops.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis

from engage.store.events import dropped_key
from engage.store.pressure import MemoryGauge, read_memory, refused_writes

log = logging.getLogger("engage.web.app")
LOG_EVERY = 10.0
FLUSH_EVERY = 1.0
REASONS = {"high-water": "Redis is above the memory high-water mark",
           "refused": "Redis refused the write (maxmemory reached)",
           "limited": "the client's network is past [web] open_limit",
           "lost": "Redis failed"}


class Drops:
    """Thread-safe counters of events not stored, by reason; logs a summary per reason."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._since: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._logged: dict[str, float] = dict.fromkeys(REASONS, float("-inf"))
        self.pending: dict[str, int] = dict.fromkeys(REASONS, 0)  # not yet in {p}dropped
        self._flushed = float("-inf")

    def add(self, kind: str, reason: str, now: float | None = None) -> str:
        """Count one ``kind`` event dropped for ``reason``; the access log's event word."""
        moment = time.monotonic() if now is None else now
        with self._lock:
            self.total[reason] += 1
            self.pending[reason] += 1
            self._since[reason] += 1
            due = moment - self._logged[reason] >= LOG_EVERY
            if due:
                count, self._since[reason] = self._since[reason], 0
                self._logged[reason] = moment
        if due:
            log.warning("events not recorded: %d since the last report (%d in all) because "
                        "%s; the last was a %s", count, self.total[reason], REASONS[reason], kind)
        return f"{kind}-{reason}"

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.pending)

    def flush(self, client: Any, prefix: str, now: float | None = None) -> None:
        """Add the pending counts to ``{p}dropped``, at most once per FLUSH_EVERY seconds;
        what Redis refuses stays pending."""
        moment = time.monotonic() if now is None else now
        with self._lock:
            if moment - self._flushed < FLUSH_EVERY or not any(self.pending.values()):
                return
            self._flushed = moment
            counts, self.pending = self.pending, dict.fromkeys(REASONS, 0)
        pipe = client.pipeline(transaction=False)
        for reason, count in counts.items():
            if count:
                pipe.hincrby(dropped_key(prefix), reason, count)
        try:
            pipe.execute()
        except redis.RedisError:
            with self._lock:
                for reason, count in counts.items():
                    self.pending[reason] += count


def dropped(client: Any, prefix: str, drops: Drops) -> dict[str, int]:
    """Every redirector's drops that reached Redis, plus this process's pending ones."""
    stored = {name.decode(): int(value) for name, value in
              client.hgetall(dropped_key(prefix)).items() if name.decode() in REASONS}
    return {reason: stored.get(reason, 0) + count for reason, count in drops.snapshot().items()}


def report(client: Any, prefix: str, gauge: MemoryGauge, drops: Drops) -> tuple[dict[str, Any], int]:
    """The /healthz body and status."""
    try:
        client.ping()
    except redis.RedisError as exc:
        log.warning("healthz: redis unreachable: %s", exc)
        return {"status": "unavailable", "redis": "unreachable"}, 503
    body: dict[str, Any] = {"status": "ok", "redis": "ok"}
    try:
        memory = read_memory(client, prefix, gauge.high_water)
    except redis.RedisError:  # INFO not allowed (a managed Redis): say nothing about it
        return body, 200
    if memory.above:
        body["status"] = "degraded"
    body["memory"] = memory.as_dict()
    body["refused_writes"] = refused_writes(client, prefix)
    body["dropped_events"] = dropped(client, prefix, drops)
    return body, 200
