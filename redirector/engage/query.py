"""Query parameters shared by the JSON APIs (events, metrics): times, zones, lists, delimiters.

Every parser raises BadParameter naming the parameter, which the web layer turns into
SparkPost's JSON error shape: ``{"errors": [{"message", "code", "description", "param"}]}``
with SparkPost's error code (``code``: "1200" invalid parameter, "1400" required
parameter missing).
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone, tzinfo

INVALID = "1200"  # SparkPost's code for "invalid params"
MISSING = "1400"  # SparkPost's code for "required field is missing"
# SparkPost's API code for an answer of each HTTP status (its "Errors" table gives the
# statuses; the codes are those its documented replies carry for the same meaning).
API_CODES = {400: INVALID, 401: "1100", 403: "1100", 404: "1600", 405: "1102", 413: "1300",
             415: "1300", 422: "1300", 500: "1000", 503: "1000"}
UTC_NAMES = ("UTC", "Z", "ETC/UTC", "GMT", "ETC/GMT")


class BadParameter(Exception):
    """A query parameter that cannot be used; ``param`` names it, ``code`` is SparkPost's."""

    def __init__(self, param: str, description: str, code: str = INVALID) -> None:
        super().__init__(f"{param}: {description}")
        self.param = param
        self.description = description
        self.code = code


def error_object(message: str, description: str, code: str | int,
                 param: str | None = None) -> dict[str, str]:
    """One entry of SparkPost's ``errors`` list; ``code`` may be an HTTP status."""
    if isinstance(code, int):
        code = API_CODES.get(code, "1000")
    error = {"message": message, "code": code, "description": description}
    if param:
        error["param"] = param
    return error


def parse_zone(text: str, name: str = "timezone") -> tzinfo:
    """An IANA time zone name (``America/New_York``); UTC for UTC, GMT and Z."""
    if text.strip().upper() in UTC_NAMES:
        return timezone.utc
    try:
        from zoneinfo import ZoneInfo
        return ZoneInfo(text.strip())
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise BadParameter(name, "not a known IANA time zone, e.g. America/New_York") from None


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
