"""Everything a Redis database holds, as text, to look for personal data in it.

``texts(client)`` yields (key, text) for every key name and every piece of every value:
strings, hash fields and values, list items, set and sorted-set members, stream entry
fields and values, consumer group names. ``traces(client, address)`` lists where an
address appears, ignoring case: plain, percent-encoded (``%40``, ``quote_plus``) or as
JSON writes it. Plain substring search, on purpose independent of engage.erasure.scrub.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _values(client: Any, key: bytes, kind: str) -> Iterator[Any]:
    if kind == "string":
        yield client.get(key)
    elif kind == "hash":
        for name, value in client.hgetall(key).items():
            yield name
            yield value
    elif kind == "list":
        yield from client.lrange(key, 0, -1)
    elif kind == "set":
        yield from client.smembers(key)
    elif kind == "zset":
        for member, _ in client.zrange(key, 0, -1, withscores=True):
            yield member
    elif kind == "stream":
        for _, fields in client.xrange(key):
            for name, value in fields.items():
                yield name
                yield value
        for group in client.xinfo_groups(key):
            yield group["name"]
    else:
        raise AssertionError(f"{_text(key)}: a {kind} key, which this dump cannot read")


def texts(client: Any) -> Iterator[tuple[str, str]]:
    for key in client.scan_iter(count=1000):
        name = _text(key)
        yield name, name
        kind = _text(client.type(key))
        if kind == "none":  # gone since the SCAN (a worker settled a batch meanwhile)
            continue
        for value in _values(client, key, kind):
            if value is not None:
                yield name, _text(value)


def forms(address: str) -> list[str]:
    """As typed, percent-encoded (also once more, as aggregate field names escape a ``%``)
    and JSON-escaped."""
    plain = address.lower()
    encoded = {quote(plain, safe="").lower(), quote_plus(plain).lower()}
    return sorted({plain, json.dumps(plain)[1:-1], *encoded,
                   *(form.replace("%", "%25") for form in encoded)})


def traces(client: Any, address: str) -> list[str]:
    """The keys whose name or content holds the address in some form."""
    wanted = forms(address)
    return sorted({key for key, text in texts(client)
                   if any(form in text.lower() for form in wanted)})
