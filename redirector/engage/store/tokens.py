"""The token format: open ``<mid><tid>``, click ``<mid><tid><link index base36>``.

The message id (``mid``) is 22 base64url characters: an 8-character bucket (48 random bits,
shared by up to ``Buckets.SIZE`` messages one milter registers in a row, so their records
pack into one Redis hash, engage.store.keys.message_bucket) and 14 of its own (84 random
bits: unguessable even by someone holding another token of the same bucket). Tokens made
before buckets have a 16-character mid (96 random bits, one Redis key per record) and are
read as long as their links live; the two never share a length (28-32 against 34-38).
The template id (``tid``) is 9 bytes of SHA-256 of the template
(engage.store.records.Template). The paths in front of a token are engage.store.layout's;
what a token resolves to is engage.store.links'.
"""
from __future__ import annotations

import base64
import re
import secrets
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Optional

from engage.store.keys import BUCKET_LEN, SHARDS, shard_of

if TYPE_CHECKING:
    from engage.store.records import MessageRecord

MID_LEN = 22  # bucket (BUCKET_LEN: 6 random bytes, base64url) + own part
OWN_LEN = MID_LEN - BUCKET_LEN  # 84 random bits
OLD_MID_LEN = 16  # 12 random bytes, base64url: one key per record (before buckets)
TID_LEN = 12  # 9 bytes of SHA-256, base64url
MAX_INDEX_DIGITS = 4
TOKEN_RE = re.compile(r"(?:[A-Za-z0-9_-]{%d}|[A-Za-z0-9_-]{%d})[0-9a-z]{0,%d}"
                      % (MID_LEN + TID_LEN, OLD_MID_LEN + TID_LEN, MAX_INDEX_DIGITS))


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def record_field(message_key: str) -> str:
    """The message's field in its bucket (keys.message_bucket): the key's own part. The
    bucket holds up to Buckets.SIZE records and, under "", the base they are stored against."""
    return message_key[BUCKET_LEN:]


def is_bucketed(message_key: str) -> bool:
    """Whether the message's record is a field of a bucket (else a key of its own)."""
    return len(message_key) == MID_LEN


class Buckets:
    """Hands out message keys: each from the current bucket of a shard drawn at random (so
    messages spread over the shards one by one, and a failed master stalls a share of
    them, not a milter), up to ``SIZE`` per bucket, a new one after ``LIFETIME`` seconds.
    Remembers for the last ``KEPT`` buckets the record that registered first in each: the
    base the others are stored against (``MessageRecord.to_text(base)``). Only this
    process writes its buckets (48 random bits name one), so the base it remembers is the
    one Redis holds. Thread-safe: the milter's threads share one."""

    SIZE = 100  # under Redis's hash-max-listpack-entries (128): a bucket stays a listpack
    LIFETIME = 600.0
    KEPT = 4096
    # A record longer than this (a thousand recipients, a large metadata object) is no
    # base: the milter keeps KEPT of them, and every registration of the bucket sends it.
    MAX_BASE = 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: dict[int, tuple[str, int, float]] = {}  # shard: (bucket, handed, opened)
        self._bases: OrderedDict[str, Optional[MessageRecord]] = OrderedDict()

    def new_key(self) -> str:
        own = b64(secrets.token_bytes(11))[:OWN_LEN]
        shard, now = secrets.randbelow(SHARDS), time.monotonic()
        with self._lock:
            bucket, handed, opened = self._current.get(shard, ("", 0, now))
            if not bucket or handed >= self.SIZE or now - opened > self.LIFETIME:
                bucket, handed, opened = _bucket_in(shard), 0, now
                self._bases[bucket] = None
                while len(self._bases) > self.KEPT:
                    self._bases.popitem(last=False)
            self._current[shard] = (bucket, handed + 1, opened)
            return bucket + own

    def base(self, message_key: str, record: MessageRecord) -> Optional[MessageRecord]:
        """The bucket's base record: the first record asked about in a bucket that is at
        most MAX_BASE long becomes it. None for a bucket this process did not make or no
        longer remembers, or with no base yet: the record is then stored whole."""
        bucket = message_key[:BUCKET_LEN]
        small = len(record.to_text()) <= self.MAX_BASE
        with self._lock:
            if bucket not in self._bases:
                return None
            known = self._bases[bucket]
            if known is None and small:
                self._bases[bucket] = known = record
            return known


def _bucket_in(shard: int) -> str:
    """A random bucket name (48 bits) of the shard: one draw in 24 is."""
    while True:
        bucket = b64(secrets.token_bytes(6))
        if shard_of(bucket) == shard:
            return bucket


_BUCKETS = Buckets()


def new_message_key() -> str:
    """A message key from this process's current bucket (``Buckets``)."""
    return _BUCKETS.new_key()


def bucket_base(message_key: str, record: MessageRecord) -> Optional[MessageRecord]:
    """``Buckets.base`` of this process's buckets."""
    return _BUCKETS.base(message_key, record)


def open_token(message_key: str, template_id: str) -> str:
    return message_key + template_id


def click_token(message_key: str, template_id: str, index: int) -> str:
    return message_key + template_id + base36(index)


B36_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
# Link indexes below 1296 as text, made once: a 150-link message needs 150 per message.
_B36_SMALL = list(B36_DIGITS) + [a + b for a in B36_DIGITS[1:] for b in B36_DIGITS]


def base36(number: int) -> str:
    if number < len(_B36_SMALL):
        return _B36_SMALL[number]
    digits = B36_DIGITS
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if not number:
            return text


def split_token(token: str) -> Optional[tuple[str, str, Optional[int]]]:
    """(message key, template id, link index or None) or None for a malformed token."""
    if not TOKEN_RE.fullmatch(token):
        return None
    mid_len = MID_LEN if len(token) >= MID_LEN + TID_LEN else OLD_MID_LEN
    index_text = token[mid_len + TID_LEN:]
    index = int(index_text, 36) if index_text else None
    return token[:mid_len], token[mid_len:mid_len + TID_LEN], index
