"""The milter's 250 only once Redis says a message's links are on disk, where it can say so.

``WAITAOF 1 0 <ms>`` (Redis 7.2+) blocks until this client's writes are fsynced to the
local AOF, and answers how many (local, replicas) did. ``AofWait`` adds it to the link
store's round trip when the server has it and AOF is on (checked every CHECK_EVERY s);
0 local fsyncs within WAITAOF_MS is a StoreError: the milter tempfails (421) and the
client retries, rather than accept a message whose links a crash could lose.

Without WAITAOF (Redis before 7.2, AOF off, a Redis Cluster) the window is the AOF fsync
policy's: ``appendfsync everysec`` can lose about the last second (two in the worst
case) of writes on a crash or a full disk; ``appendfsync always`` closes it (each write
fsynced before Redis replies). docs/limits.md says so for operators.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import redis

from engage.store.redisconn import is_cluster

log = logging.getLogger(__name__)
WAITAOF_MS = 2000
CHECK_EVERY = 60.0
FIRST_WAITAOF = (7, 2)


def version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def can_wait(info: dict[str, Any]) -> bool:
    """Whether a server with this INFO (server + persistence) confirms AOF fsyncs."""
    version = version_tuple(str(info.get("redis_version", "0")))
    return version >= FIRST_WAITAOF and bool(int(info.get("aof_enabled", 0) or 0))


class AofWait:
    """``queue(pipe)`` adds WAITAOF when it applies; ``confirm(reply)`` checks its answer."""

    def __init__(self, client: Any, enabled: bool = True) -> None:
        self.client = client
        self.enabled = enabled and not is_cluster(client)
        self._checked: tuple[float, bool] = (float("-inf"), False)

    def applies(self) -> bool:
        if not self.enabled:
            return False
        taken, answer = self._checked
        now = time.monotonic()
        if now - taken < CHECK_EVERY:
            return answer
        try:
            info = {**self.client.info("server"), **self.client.info("persistence")}
        except redis.RedisError:
            return False  # the write itself will fail and say why
        answer = can_wait(info)
        if not answer and taken == float("-inf"):
            log.warning("Redis %s with appendonly %s cannot confirm that links are on disk "
                        "(WAITAOF needs Redis 7.2+ with AOF): a crash may lose up to the "
                        "last second of links (appendfsync everysec); appendfsync always "
                        "closes that window", info.get("redis_version", "?"),
                        "yes" if int(info.get("aof_enabled", 0) or 0) else "no")
        self._checked = (now, answer)
        return answer

    def queue(self, pipe: Any) -> bool:
        if not self.applies():
            return False
        pipe.execute_command("WAITAOF", 1, 0, WAITAOF_MS)
        return True

    @staticmethod
    def confirmed(reply: Any) -> bool:
        """WAITAOF's [local, replicas]: at least the local AOF has the writes."""
        return bool(reply) and int(reply[0]) >= 1
