"""What the link store keeps per mailing and per message: the template (links, campaign,
tags, From, options: the same for every recipient) and the message record (envelope,
personalised headers, metadata), with their stored text forms. Pure: no Redis here
(engage.store.links stores them).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple, Optional

from engage.store.tokens import b64, base36

US, RS = "\x1f", "\x1e"  # the record's field and recipient separators
SAME = "\x1a"  # a field (or its end) as in the bucket's base record (to_text)


class Link(NamedTuple):  # a tuple: a 150-link template makes 150 of them per load
    url: str
    name: str = ""


@dataclass(frozen=True)
class Template:
    """Everything about a message that is the same for each recipient of one mailing."""

    links: tuple[Link, ...] = ()
    campaign_id: str = ""
    tags: tuple[str, ...] = ()
    friendly_from: str = ""
    sending_domain: str = ""
    open_tracking: bool = True
    click_tracking: bool = True

    def to_json(self) -> str:
        return self._json

    @cached_property
    def _json(self) -> str:
        rest = _dumps({
            "l": [], "c": self.campaign_id, "g": list(self.tags), "f": self.friendly_from,
            "d": self.sending_domain, "o": int(self.open_tracking), "k": int(self.click_tracking),
        })
        return '{"l":[' + _links_json(self.links) + rest[len('{"l":['):]

    @classmethod
    def from_json(cls, text: str | bytes) -> "Template":
        data = json.loads(text)
        return cls(
            links=tuple(Link(*item) for item in data["l"]), campaign_id=data["c"],
            tags=tuple(data["g"]), friendly_from=data["f"], sending_domain=data["d"],
            open_tracking=bool(data["o"]), click_tracking=bool(data["k"]),
        )

    @cached_property
    def template_id(self) -> str:
        return b64(hashlib.sha256(self.to_json().encode()).digest()[:9])

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled for every message the milter's rewrite workers send back: as flat
        # tuples (and the JSON already computed) it costs a fifth of the default.
        links = tuple((link.url, link.name) for link in self.links)
        return _unpickle_template, (links, self.campaign_id, self.tags, self.friendly_from,
                                    self.sending_domain, self.open_tracking, self.click_tracking,
                                    self.__dict__.get("_json"))


def _unpickle_template(links: tuple[tuple[str, str], ...], campaign_id: str, tags: tuple[str, ...],
                       friendly_from: str, sending_domain: str, open_tracking: bool,
                       click_tracking: bool, json_text: Optional[str]) -> Template:
    template = Template(tuple(Link(url, name) for url, name in links), campaign_id, tags,
                        friendly_from, sending_domain, open_tracking, click_tracking)
    if json_text is not None:
        template.__dict__["_json"] = json_text  # where cached_property keeps it
    return template


@dataclass(frozen=True)
class MessageRecord:
    """What differs per message: the envelope, headers that are often personalised, metadata."""

    rcpt_to: tuple[str, ...] = ()
    mail_from: str = ""
    subject: str = ""
    message_id: str = ""
    queue_id: str = ""
    injection_time: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    template_id: str = ""

    def to_text(self, base: Optional[MessageRecord] = None) -> str:
        """The stored value: fields joined by US (0x1f), recipients by RS (0x1e), injection
        time in base 36, metadata as JSON (empty when none). Every byte counts a million
        times. Against a ``base`` (the first record of its bucket, engage.store.tokens.Buckets:
        usually the same mailing) a field the base has too is SUB (0x1a); a Message-ID or
        envelope sender ending like the base's (from its last @) keeps what comes before
        and a SUB; the time is SUB and the seconds after the base's. A field holding a
        separator or SUB (a control character in a subject, say), an empty recipient or a
        time before 1970 makes the whole record JSON, as records were first written (never
        against a base); every form is read."""
        texts = (self.template_id, *self.rcpt_to, self.mail_from, self.subject,
                 self.message_id, self.queue_id)
        if (any(US in text or RS in text or SAME in text for text in texts)
                or "" in self.rcpt_to or self.injection_time < 0):
            return self._json_form()
        metadata = _dumps(self.metadata) if self.metadata else ""
        fields = [self.template_id, RS.join(self.rcpt_to), self.mail_from, self.subject,
                  self.message_id, self.queue_id, base36(self.injection_time), metadata]
        if base is not None:
            fields = _against(fields, self, base)
        return US.join(fields)

    def _json_form(self) -> str:
        return _dumps({
            "t": self.template_id, "r": list(self.rcpt_to), "f": self.mail_from,
            "s": self.subject, "m": self.message_id, "q": self.queue_id,
            "i": self.injection_time, "md": self.metadata,
        })

    @classmethod
    def from_text(cls, text: str | bytes, base: Optional[MessageRecord] = None
                  ) -> MessageRecord:
        """A stored record; ``base`` is its bucket's (``to_text``), None for one stored
        whole (a missing base reads as an empty record)."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "surrogatepass")
        if text.startswith("{"):
            data = json.loads(text)
            return cls(
                rcpt_to=tuple(data["r"]), mail_from=data["f"], subject=data["s"],
                message_id=data["m"], queue_id=data["q"], injection_time=data["i"],
                metadata=data["md"], template_id=data["t"],
            )
        return _resolved(cls, text.split(US), base or cls())


def _suffix(text: str) -> str:
    """What a mailing's addresses and Message-IDs share: from the last @ on."""
    at = text.rfind("@")
    return text[at:] if at > 0 else ""


def _shortened(text: str, base: str) -> str:
    if text and text == base:
        return SAME
    suffix = _suffix(base)
    if suffix and text.endswith(suffix) and len(text) > len(suffix):
        return text[:-len(suffix)] + SAME
    return text


def _against(fields: list[str], record: MessageRecord, base: MessageRecord) -> list[str]:
    """``to_text``'s fields with what ``base`` shares replaced (SAME)."""
    template_id, rcpts, _, subject, _, queue_id, injected, metadata = fields
    delta = record.injection_time - base.injection_time
    return [
        SAME if template_id == base.template_id else template_id, rcpts,
        _shortened(record.mail_from, base.mail_from),
        SAME if subject and subject == base.subject else subject,
        _shortened(record.message_id, base.message_id), queue_id,
        SAME + base36(delta) if delta >= 0 else injected,
        SAME if metadata and record.metadata == base.metadata else metadata,
    ]


def _expanded(text: str, base: str) -> str:
    if text == SAME:
        return base
    return text[:-1] + _suffix(base) if text.endswith(SAME) else text


def _resolved(cls: type[MessageRecord], fields: list[str], base: MessageRecord) -> MessageRecord:
    """``from_text`` of a record in fields; a field without SAME is read as it is, so a
    record stored whole reads the same against any base."""
    template_id, rcpts, mail_from, subject, message_id, queue_id, injected, metadata = fields
    return cls(
        rcpt_to=tuple(rcpts.split(RS)) if rcpts else (),
        mail_from=_expanded(mail_from, base.mail_from),
        subject=base.subject if subject == SAME else subject,
        message_id=_expanded(message_id, base.message_id), queue_id=queue_id,
        injection_time=(base.injection_time + int(injected[1:], 36) if injected.startswith(SAME)
                        else int(injected, 36)),
        metadata=(dict(base.metadata) if metadata == SAME
                  else json.loads(metadata) if metadata else {}),
        template_id=base.template_id if template_id == SAME else template_id,
    )


JSON_AS_IS = bytes(set(range(0x20, 0x80)) - set(b'"\\'))  # ASCII that JSON does not escape


def _links_json(links: tuple[Link, ...]) -> str:
    """``_dumps`` of [[url, name] or [url], ...] without the outer brackets, written
    directly when no text needs a JSON escape (the usual case: URLs are plain ASCII):
    escaping 150 URLs took json.dumps a twentieth of a rewrite."""
    texts = "".join([link.url + link.name for link in links])
    if not texts.isascii() or texts.encode().translate(None, JSON_AS_IS):
        return _dumps([[link.url, link.name] if link.name else [link.url] for link in links])[1:-1]
    return ",".join([f'["{link.url}","{link.name}"]' if link.name else f'["{link.url}"]'
                     for link in links])


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
