"""What erasure does to one stored value, as pure functions (engage.erasure.forget does the I/O).

``Address`` finds one email address in any text, case-insensitively, as it is stored:
plain, percent-encoded (in URLs) or JSON-escaped, and never as the tail or head of a
longer address (``mary.jane@example.com`` and ``jane@example.com.au`` are not
``jane@example.com``; a percent-encoded ``x%2Bjane%40example.com`` is, alas, matched).
The scrub functions return the new stored text, or None when the value does not
mention the address. A message record whose recipient it is keeps only what its links
need (template id, injection time); a link URL that holds the address loses the address
and nothing else, so it keeps redirecting.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any
from urllib.parse import quote

from engage.store.records import MessageRecord

MAX_ADDRESS = 320
# Not part of the match: an address character just before (a longer local part) unless
# it ends a %XX escape; a domain character just after (a longer domain).
LEFT = r"(?:(?<![A-Za-z0-9._+\-])|(?<=%[0-9A-Fa-f]{2}))"
RIGHT = r"(?![A-Za-z0-9\-]|\.[A-Za-z0-9])"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True)
class Address:
    """One recipient address to find; ``Address.parse`` validates what a user typed."""

    text: str

    @classmethod
    def parse(cls, text: str) -> Address:
        """Raises ValueError with a reason for what is not one email address."""
        value = text.strip()
        if value.startswith("<") and value.endswith(">"):
            value = value[1:-1].strip()
        local, at, domain = value.rpartition("@")
        if not at or not local or not domain:
            raise ValueError("not an email address (local@domain)")
        if len(value) > MAX_ADDRESS or any(c.isspace() or not c.isprintable() for c in value):
            raise ValueError("not an email address (too long, or spaces or control characters)")
        return cls(value.lower())

    @cached_property
    def forms(self) -> tuple[str, ...]:
        """The address as it may appear in stored text, longest first."""
        forms = {self.text, quote(self.text, safe=""), quote(self.text, safe="+"),
                 quote(self.text, safe="@+"), json.dumps(self.text)[1:-1],
                 json.dumps(self.text)[1:-1].replace("/", "\\/")}
        local, _, domain = self.text.rpartition("@")
        try:
            forms.add(f"{local}@{domain.encode('idna').decode('ascii')}")
        except UnicodeError:
            pass
        return tuple(sorted(forms, key=lambda form: (-len(form), form)))

    @cached_property
    def needles(self) -> tuple[bytes, ...]:
        """The forms as UTF-8, ASCII-lowercased: what a Lua prefilter looks for in
        string.lower()ed values (a superset of what ``mentions`` accepts)."""
        return tuple(sorted({form.encode("utf-8").lower() for form in self.forms}))

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        alternatives = "|".join(re.escape(form) for form in self.forms)
        return re.compile(f"{LEFT}(?:{alternatives}){RIGHT}", re.IGNORECASE)

    def mentions(self, text: str | bytes) -> bool:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return self.pattern.search(text) is not None

    def cut(self, text: str) -> str:
        """``text`` with every occurrence of the address removed."""
        return self.pattern.sub("", text)

    def is_(self, recipient: str) -> bool:
        return recipient.strip().lower() == self.text

    def cut_all(self, value: Any) -> Any:
        """A JSON value with the address cut out of every string in it (keys too)."""
        if isinstance(value, str):
            return self.cut(value)
        if isinstance(value, list):
            return [self.cut_all(item) for item in value]
        if isinstance(value, dict):
            return {self.cut(key): self.cut_all(item) for key, item in value.items()}
        return value


def scrub_record(raw: str | bytes, address: Address) -> str | None:
    """A message record ``{p}m:<key>`` without the address. Its recipient's record keeps
    the template id and injection time only. In a multi-recipient record the address
    becomes an empty string (later events still say "several recipients" rather than
    credit the others with what may be the forgotten one's click), and subject and
    metadata go (they may be about any of its recipients). Other records lose just the
    address, wherever it appears."""
    if not address.mentions(raw):
        return None
    record = MessageRecord.from_text(raw)
    others = [r for r in record.rcpt_to if not address.is_(r)]
    if not others and record.rcpt_to:
        record = MessageRecord(injection_time=record.injection_time,
                               template_id=record.template_id)
    elif len(others) < len(record.rcpt_to):
        record = replace(record, subject="", metadata={}, rcpt_to=tuple(
            "" if address.is_(r) else r for r in record.rcpt_to))
    return replace(
        record, rcpt_to=tuple(address.cut(r) for r in record.rcpt_to),
        mail_from=address.cut(record.mail_from), subject=address.cut(record.subject),
        message_id=address.cut(record.message_id), queue_id=address.cut(record.queue_id),
        metadata=address.cut_all(record.metadata)).to_text()


def scrub_template(raw: str | bytes, address: Address) -> str | None:
    """A template ``{p}t:<id>`` with the address cut out of link URLs, link names,
    campaign, tags and From (the link list keeps its length, so every token resolves)."""
    if not address.mentions(raw):
        return None
    return _dumps(address.cut_all(json.loads(raw)))


def filter_body(body: str, address: Address) -> tuple[str, int, int]:
    """A stored webhook body (SparkPost batch array, or the ``events`` format's object or
    array) without the events that mention the address: (new body, kept, removed)."""
    parsed = json.loads(body)
    items = parsed if isinstance(parsed, list) else [parsed]
    kept = [item for item in items if not address.mentions(_dumps(item))]
    removed = len(items) - len(kept)
    if not isinstance(parsed, list) and kept:
        return _dumps(kept[0]), 1, removed
    return _dumps(kept), len(kept), removed


def scrub_batch(raw: str | bytes, address: Address) -> tuple[str | None, int]:
    """A webhook batch record (``{p}wh:<id>:batches``): (new record, or None when the
    record is to be dropped because none of its events is left; events removed). A
    record that does not mention the address comes back unchanged, with 0."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if not address.mentions(text):
        return text, 0
    record = json.loads(text)
    removed = 0
    if isinstance(record.get("body"), str):
        record["body"], record["size"], removed = filter_body(record["body"], address)
        if record["size"] == 0:
            return None, removed
    return _dumps(address.cut_all(record)), removed
