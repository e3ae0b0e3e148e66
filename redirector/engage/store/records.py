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

    def to_text(self) -> str:
        """The stored value: fields joined by US (0x1f), recipients by RS (0x1e), injection
        time in base 36, metadata as JSON (empty when none). Each record is one Redis key,
        so every byte counts a million times; the text is short enough that a typical
        record fits jemalloc's 192-byte class. A field holding a separator (a control
        character in a subject, say), an empty recipient or a time before 1970 makes the
        whole record JSON, as records were first written; both forms are read."""
        texts = (self.template_id, *self.rcpt_to, self.mail_from, self.subject,
                 self.message_id, self.queue_id)
        if (any(US in text or RS in text for text in texts) or "" in self.rcpt_to
                or self.injection_time < 0):
            return self._json_form()
        metadata = _dumps(self.metadata) if self.metadata else ""
        return US.join((self.template_id, RS.join(self.rcpt_to), self.mail_from, self.subject,
                        self.message_id, self.queue_id, base36(self.injection_time), metadata))

    def _json_form(self) -> str:
        return _dumps({
            "t": self.template_id, "r": list(self.rcpt_to), "f": self.mail_from,
            "s": self.subject, "m": self.message_id, "q": self.queue_id,
            "i": self.injection_time, "md": self.metadata,
        })

    @classmethod
    def from_text(cls, text: str | bytes) -> "MessageRecord":
        if isinstance(text, bytes):
            text = text.decode("utf-8", "surrogatepass")
        if text.startswith("{"):
            data = json.loads(text)
            return cls(
                rcpt_to=tuple(data["r"]), mail_from=data["f"], subject=data["s"],
                message_id=data["m"], queue_id=data["q"], injection_time=data["i"],
                metadata=data["md"], template_id=data["t"],
            )
        template_id, rcpts, mail_from, subject, message_id, queue_id, injected, metadata = (
            text.split(US))
        return cls(
            rcpt_to=tuple(rcpts.split(RS)) if rcpts else (), mail_from=mail_from,
            subject=subject, message_id=message_id, queue_id=queue_id,
            injection_time=int(injected, 36), metadata=json.loads(metadata) if metadata else {},
            template_id=template_id,
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
