"""Parsers for setting values: each takes the text of the file or environment and returns
the typed value, or raises ValueError with a reason a person can act on."""
from __future__ import annotations

import math
import os
import re
from typing import Callable
from urllib.parse import urlsplit

from engage.dashboard.passwords import parse_hash

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MIN_KEY_BITS = 128  # an API key's strength (key_bits)
# (characters, symbols they count as): hex case is not counted, base64's padding neither.
KEY_ALPHABETS = ((frozenset("0123456789"), 10), (frozenset("0123456789abcdefABCDEF"), 16),
                 (frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                            "0123456789-_+/="), 64))
PRINTABLE_SYMBOLS = 94
USER_NAME = re.compile(r"[\w.@+-]{1,64}")  # a dashboard login name
MILTER_SOCKET = re.compile(r"^(unix|local):/.+$|^inet6?:\d{1,5}(@[\w.:\[\]-]+)?$")


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"expected yes/no/true/false/on/off, got {text!r}")


def parse_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        number = int(text.strip())
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}")
        return number
    return parse


def parse_float(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        number = float(text.strip())
        if not low <= number <= high:  # also refuses nan
            raise ValueError(f"must be between {low:g} and {high:g}")
        return number
    return parse


def parse_workers(text: str) -> int:
    if text.strip().lower() == "auto":
        return os.cpu_count() or 1
    return parse_int(0, 256)(text)


def parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value
    return parse


def parse_http_url(text: str) -> str:
    url = text.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL with a host, got {text!r}")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query or fragment")
    if re.search(r"[^A-Za-z0-9._~:/@!$()*+,;=%\[\]-]", url):
        raise ValueError("may hold only URL characters (no quotes, spaces, & or <>)")
    return url


def parse_redis_url(text: str) -> str:
    url = text.strip()
    if urlsplit(url).scheme not in ("redis", "rediss", "unix", "redis+cluster",
                                    "rediss+cluster"):
        raise ValueError("must start with redis://, rediss://, unix:// or (Redis Cluster) "
                         "redis+cluster:// or rediss+cluster://")
    if urlsplit(url).scheme.endswith("+cluster") and urlsplit(url).path not in ("", "/", "/0"):
        raise ValueError("a Redis Cluster has database 0 only")
    return url


def parse_socket(text: str) -> str:
    value = text.strip()
    if not MILTER_SOCKET.match(value):
        raise ValueError("must look like inet:PORT@HOST, inet6:PORT@HOST or unix:/path")
    return value


def parse_level(text: str) -> str:
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def key_bits(key: str) -> float:
    """The strength a key's length gives it over the smallest alphabet its characters come
    from: decimal digits, hex digits, base64/base64url, else printable ASCII (94)."""
    symbols = next((size for chars, size in KEY_ALPHABETS if set(key) <= chars),
                   PRINTABLE_SYMBOLS)
    return len(key) * math.log2(symbols)


def parse_keys(text: str) -> tuple[str, ...]:
    """API keys, comma-separated; each must carry MIN_KEY_BITS (a header value: printable
    ASCII, no spaces). The error never shows a key, only its place in the list."""
    keys = tuple(key.strip() for key in text.split(",") if key.strip())
    for number, key in enumerate(keys, 1):
        where = f"key {number} of {len(keys)}"
        if not all("!" <= ch <= "~" for ch in key):
            raise ValueError(f"{where}: only printable ASCII without spaces")
        if key_bits(key) < MIN_KEY_BITS:
            raise ValueError(
                f"{where} is too short: {key_bits(key):.0f} bits, at least {MIN_KEY_BITS} are "
                "needed (22 characters of base64url or 32 hex digits, e.g. "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(24))')")
    return keys


def parse_path(text: str) -> str:
    path = text.strip()
    if path and not os.path.isabs(path):
        raise ValueError("must be an absolute path (or empty)")
    return path


def parse_paths(text: str) -> tuple[str, ...]:
    paths = tuple(path.strip() for path in text.split(",") if path.strip())
    for path in paths:
        if not os.path.isabs(path):
            raise ValueError(f"{path!r} must be an absolute path")
    return paths


def parse_prefix(text: str) -> str:
    prefix = text.strip()
    if not re.fullmatch(r"[\w:.{}-]{0,64}", prefix):
        raise ValueError("letters, digits and :._-{} only, at most 64")
    return prefix


def parse_signing_key(text: str) -> str:
    key = text.strip()
    if key and len(key) < 16:
        raise ValueError("must be at least 16 characters (or empty: broadcast mode off)")
    return key


def parse_users(text: str) -> tuple[tuple[str, str], ...]:
    users: dict[str, str] = {}
    for entry in re.split(r"[,\s]+", text.strip()):
        if not entry:
            continue
        name, colon, stored = entry.partition(":")
        if not colon or not USER_NAME.fullmatch(name):
            raise ValueError(f"{entry[:20]!r}...: expected name:hash (letters, digits, ._@+- "
                             "in the name), from `engage dashboard-user NAME`")
        if name in users:
            raise ValueError(f"user {name!r} is listed twice")
        try:
            parse_hash(stored)
        except ValueError as exc:
            raise ValueError(f"user {name!r}: {exc}") from None
        users[name] = stored
    return tuple(users.items())
