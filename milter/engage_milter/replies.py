"""Every SMTP reply the milter gives, as named values (status, enhanced code, text)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    code: str
    xcode: str
    text: str

    def milter_text(self) -> str:
        """The text as pymilter's setreply wants it: one line, '%' doubled."""
        return " ".join(self.text.split()).replace("%", "%%")

    def __str__(self) -> str:
        return f"{self.code} {self.xcode} {self.text}"


def json_error(detail: str) -> Reply:
    return Reply("550", "5.6.0", f"JSON parsing error in X-MSYS-API: {detail}")


def wrong_type(name: str, expected: str) -> Reply:
    return Reply("550", "5.6.0", f"X-MSYS-API '{name}' must be of type '{expected}'")


NOT_AN_OBJECT = Reply("550", "5.6.0", "X-MSYS-API must be of type 'json object'")
BAD_METADATA = wrong_type("metadata", "json object")
CAMPAIGN_TOO_LONG = Reply("550", "5.6.0", "smtpapi_campaign_id context is limited to 64 bytes")
STORE_UNAVAILABLE = Reply("421", "4.3.3", "engage link store unavailable, try again later")
# split_recipients: RFC 5321 4.5.3.1.10 says a server out of recipient room answers 452,
# and the client sends the remaining recipients again in a later transaction.
TOO_MANY_RECIPIENTS = Reply("452", "4.5.3", "Too many recipients")
