"""Query parameters shared by the JSON APIs (events, metrics): times, lists, delimiters.

Every parser raises BadParameter naming the parameter, which the web layer turns into
SparkPost's JSON error shape.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone, tzinfo


class BadParameter(Exception):
    """A query parameter that cannot be used; ``param`` names it."""

    def __init__(self, param: str, description: str) -> None:
        super().__init__(f"{param}: {description}")
        self.param = param
        self.description = description


def parse_time(text: str, name: str, zone: tzinfo = timezone.utc,
               expected: str = "ISO 8601, e.g. 2024-05-01T12:00:00Z") -> float:
    """An ISO 8601 time as epoch seconds; without an offset it is read in ``zone``."""
    value = text.strip()
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadParameter(name, f"expected {expected}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.timestamp()


def parse_delimiter(args: Mapping[str, str]) -> str:
    """The character that separates the values of a list parameter (default a comma)."""
    delimiter = args.get("delimiter", ",")
    if len(delimiter) != 1 or delimiter.isalnum():
        raise BadParameter("delimiter", "must be one character, not a letter or digit")
    return delimiter


def parse_list(text: str, name: str, delimiter: str) -> frozenset[str]:
    values = frozenset(value.strip() for value in text.split(delimiter) if value.strip())
    if not values:
        raise BadParameter(name, "must list at least one value")
    return values
