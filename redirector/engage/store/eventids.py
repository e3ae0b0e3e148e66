"""Event ids: a stream entry ``ms-seq`` of a shard as one decimal number that sorts by time
across shards and names its own entry (engage.store.events)."""
from __future__ import annotations

from engage.store import keys

SEQ_SLOTS = 1000 // keys.SHARDS  # 41 ids per ms per shard (seq past 40 shares the 41st)


def id_base(shard: int) -> tuple[int, int]:
    """(base, seq cap) of a shard's event ids: ms * 1000 + base + min(seq, cap). Layout 1's
    one stream kept ms * 1000 + min(seq, 999)."""
    return (0, 999) if shard == keys.LAYOUT1 else (shard * SEQ_SLOTS, SEQ_SLOTS - 1)


def score_of(entry_id: str | bytes, shard: int) -> int:
    """The index score (and public event_id) of stream entry ``ms-seq`` of ``shard``."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    base, cap = id_base(shard)
    return int(ms) * 1000 + base + min(int(seq), cap)


def entries_of(event_id: int) -> list[tuple[int, str]]:
    """Where an event_id may be: (shard, stream entry id), its layout-2 shard first, then
    layout 1's stream (whose ids had no shard part)."""
    ms, sub = divmod(event_id, 1000)
    found = [(keys.LAYOUT1, f"{ms}-{sub}")]
    shard, seq = divmod(sub, SEQ_SLOTS)
    if shard < keys.SHARDS:
        found.insert(0, (shard, f"{ms}-{seq}"))
    return found


def with_event_id(entry_id: str | bytes, stored: bytes, shard: int) -> bytes:
    """The stored JSON object with its ``event_id`` put first, still as JSON text."""
    return b'{"event_id":"%d",' % score_of(entry_id, shard) + stored[1:]


ID_START = len(b'{"event_id":"')


def score_in(text: bytes) -> int:
    """The event_id at the front of an event's JSON text as read back (put first)."""
    return int(text[ID_START:text.index(b'"', ID_START)])
