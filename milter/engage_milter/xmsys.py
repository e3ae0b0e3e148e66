"""The X-MSYS-API header: unfold, RFC 2047-decode, parse and validate, as Momentum does.

Only the first header counts (every one is removed by the caller). Errors are the
documented 550 5.6.0 replies, and so is anything that is not storable JSON: a number
out of range (1e999, NaN), nesting deeper than 64, a lone surrogate, an encoded-word in
an unknown charset; unknown keys and options are accepted and reported so
the caller can log them. Metadata beyond ``max_metadata_bytes`` is kept out of events.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from email.header import decode_header
from typing import Any, Optional

from . import replies

HEADER = "x-msys-api"
KNOWN_KEYS = {"campaign_id", "metadata", "tags", "options"}
TRACKING_OPTIONS = ("open_tracking", "click_tracking")
MAX_TAGS = 10
MAX_CAMPAIGN_BYTES = 64
FOLD = re.compile(r"\r?\n[ \t]+")
MAX_NESTING = 64  # objects and arrays; everything that reads events back recurses
MAX_INTEGER_DIGITS = 4300  # Python's own limit for int(str) since 3.11


class MsysError(Exception):
    """The header is invalid; ``reply`` is what the SMTP client gets."""

    def __init__(self, reply: replies.Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


@dataclass(frozen=True)
class MsysApi:
    campaign_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    open_tracking: Optional[bool] = None
    click_tracking: Optional[bool] = None
    ignored: tuple[str, ...] = ()  # unknown keys/options, dropped tags/metadata, for the log


def unfold(value: str) -> str:
    """Join folded lines; each fold becomes one space (Momentum: "my_awes ome_campaign")."""
    return FOLD.sub(" ", value).strip()


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded-words; plain text (and invalid words) stay as they are.
    An encoded-word in a charset Python does not know is an error (MsysError)."""
    if "=?" not in value:
        return value
    try:
        pieces = decode_header(value)
    except Exception:  # email raises several types for broken words; keep the raw text
        return value
    try:
        return "".join(
            text.decode(charset or "ascii", "replace") if isinstance(text, bytes) else text
            for text, charset in pieces
        )
    except (LookupError, UnicodeError) as exc:  # unknown charset, or not a text codec
        raise MsysError(replies.json_error(f"unknown charset in an encoded-word ({exc})")) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON value {name}")


def _finite(text: str) -> float:
    """Only JSON is ever stored: 1e999 would be written back as Infinity, which is not."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:  # int() of a long run is quadratic
        raise ValueError(f"integer of {len(text)} digits is out of range")
    return int(text)


def _load(text: str) -> Any:
    """json.loads, every failure as the documented 550 (not an internal error)."""
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite,
                          parse_int=_integer)
    except json.JSONDecodeError as exc:
        raise MsysError(replies.json_error(f"{exc.msg} at character {exc.pos}")) from None
    except ValueError as exc:
        raise MsysError(replies.json_error(str(exc))) from None
    except RecursionError:
        raise MsysError(replies.json_error(f"nested deeper than {MAX_NESTING} levels")) from None
    if _depth(data) > MAX_NESTING:
        raise MsysError(replies.json_error(f"nested deeper than {MAX_NESTING} levels"))
    try:  # what is stored must be writable as JSON and as UTF-8: no lone surrogate
        json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise MsysError(replies.json_error("a string holds a lone surrogate")) from None
    return data


def _depth(value: Any) -> int:
    """How deeply objects and arrays nest, without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            pending += [(child, level + 1) for child in (item.values() if isinstance(item, dict) else item)]
    return deepest


def parse(raw_value: str, max_metadata_bytes: int = 1000) -> MsysApi:
    """Parse one X-MSYS-API header value; raises MsysError with the reply to give."""
    data = _load(decode_words(unfold(raw_value)))
    if not isinstance(data, dict):
        raise MsysError(replies.NOT_AN_OBJECT)
    ignored = [key for key in data if key not in KNOWN_KEYS]
    campaign_id = _campaign_id(data.get("campaign_id"))
    metadata, dropped = _metadata(data.get("metadata"), max_metadata_bytes)
    ignored += [f"metadata.{key}" for key in dropped]
    tags = _tags(data.get("tags"))
    if len(tags) > MAX_TAGS:
        ignored.append(f"tags[{MAX_TAGS}:]")
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise MsysError(replies.wrong_type("options", "json object"))
    ignored += [f"options.{key}" for key in options if key not in TRACKING_OPTIONS]
    tracking = {name: _optional_bool(options, name) for name in TRACKING_OPTIONS}
    return MsysApi(campaign_id, metadata, tuple(tags[:MAX_TAGS]), tracking["open_tracking"],
                   tracking["click_tracking"], tuple(ignored))


def _campaign_id(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MsysError(replies.wrong_type("campaign_id", "string"))
    if len(value.encode("utf-8", "surrogatepass")) > MAX_CAMPAIGN_BYTES:
        raise MsysError(replies.CAMPAIGN_TOO_LONG)
    return value


def _metadata(value: Any, cap: int) -> tuple[dict[str, Any], list[str]]:
    """Keep keys in order while the JSON stays within ``cap`` bytes; report the rest."""
    if value is None:
        return {}, []
    if not isinstance(value, dict):
        raise MsysError(replies.BAD_METADATA)
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    size = 2  # the braces
    for key, item in value.items():
        pair = len(json.dumps({key: item}, separators=(",", ":"), allow_nan=False).encode()) - 2 + (1 if kept else 0)
        if size + pair <= cap:
            kept[key] = item
            size += pair
        else:
            dropped.append(key)
    return kept, dropped


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MsysError(replies.wrong_type("tags", "json array"))
    if not all(isinstance(tag, str) for tag in value):
        raise MsysError(replies.wrong_type("tags", "json array of strings"))
    return value


def _optional_bool(options: dict[str, Any], name: str) -> Optional[bool]:
    value = options.get(name)
    if value is not None and not isinstance(value, bool):
        raise MsysError(replies.wrong_type(f"options.{name}", "boolean"))
    return value
