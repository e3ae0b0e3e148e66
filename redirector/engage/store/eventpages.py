"""One page of events, newest first, merged over every shard (and layout 1's stream).

Each round asks every shard that may still hold events for a few more than its share,
in one pipeline (PAGE_LUA per shard, each on one slot). A shard that returned a full
share may hold more below the last score it gave, so only events at or above the highest
such score (the cut) are certain to be in order; the rest wait for the next round, which
starts below the cut. A query that only one shard answers (one message) drops the others
after the first round.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from engage.store.eventids import score_in
from engage.store.redisconn import readable_shards

if TYPE_CHECKING:
    from engage.store.events import EventLog

MIN_SHARE = 8  # events asked of each shard per round at least
MAX_SHARE = 2000  # and at most: no script holds Redis for long (about 10 ms per 1000)


def share(need: int, shards: int) -> int:
    """What to ask each shard for: its part of ``need`` with room for uneven shards."""
    return min(need, MAX_SHARE, max(MIN_SHARE, -(-need * 3 // (2 * shards))))


def merged_page(log: EventLog, specs: Sequence[tuple[str, str, str]], top: int, low: int,
                count: int) -> tuple[bytes, int, bool]:
    """EventLog.page over every shard: (JSON objects joined by commas, last score or 0,
    whether more follow). Raises redis.RedisError."""
    live = list(readable_shards(log.client, log.prefix))
    waiting: list[tuple[int, int, bytes]] = []  # below a cut, from shards that gave their all
    found: list[tuple[int, int, bytes]] = []  # (score, shard, event as stored)
    while len(found) < count and (live or waiting):
        need = count - len(found)
        pipe = log.client.pipeline(transaction=False)
        for shard in live:
            log.page_script(pipe, shard, specs, top, low, share(need, len(live)))
        cut, batch = low - 1, list(waiting)
        done: list[tuple[int, int, bytes]] = []
        still: list[int] = []
        for shard, reply in zip(live, pipe.execute() if live else ()):
            last, more, items = int(reply[0] or 0), bool(reply[1]), reply[2:]
            scored = [(score_in(text), shard, text) for text in items]
            batch += scored
            if more:
                cut, still = max(cut, last), still + [shard]
            else:
                done += scored
        batch.sort(key=lambda item: item[0], reverse=True)
        sure = [item for item in batch if item[0] >= cut]
        waiting = sorted((item for item in done + waiting if item[0] < cut), reverse=True)
        found += sure[:need]
        if len(sure) > need:
            return _whole(log, found), found[-1][0], True
        live, top = still, cut - 1
    last = found[-1][0] if found else 0
    return _whole(log, found), last, bool(live or waiting)


def _whole(log: EventLog, found: list[tuple[int, int, bytes]]) -> bytes:
    """The page's events whole (EventLog.whole: the ones chosen only, every shard in one
    round trip), joined by commas in page order."""
    groups: dict[int, list[bytes]] = {}
    for _, shard, text in found:
        groups.setdefault(shard, []).append(text)
    texts = {shard: iter(items) for shard, items in log.whole(groups).items()}
    return b",".join(next(texts[shard]) for _, shard, _ in found)
