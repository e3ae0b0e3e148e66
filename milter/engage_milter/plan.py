"""Decide what happens to one message, as a value: reject, or header deletions + new body
+ the records to store. Pure: no MTA and no Redis here, so every decision is testable
and nothing is half-applied when something raises.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses
from typing import Any, Optional

from engage.settings import Settings
from engage.store import layout, records, tokens

from . import xmsys
from .bodyrewrite import BodyRewrite, Urls
from .mimewalk import headers_to_message
from .replies import Reply
from .transfer import CannotRewrite

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Envelope:
    mail_from: str = ""
    rcpt_to: tuple[str, ...] = ()
    queue_id: str = ""
    injection_time: int = 0


@dataclass
class Plan:
    reject: Optional[Reply] = None
    delete_headers: list[tuple[str, int]] = field(default_factory=list)  # (name, 1-based index)
    body: Optional[bytes] = None  # None: the body is not changed
    message_key: str = ""
    template: Optional[records.Template] = None
    record: Optional[records.MessageRecord] = None
    notes: list[str] = field(default_factory=list)

    @property
    def registers(self) -> bool:
        return self.record is not None


def msys_deletions(headers: Sequence[tuple[str, str]]) -> list[tuple[str, int]]:
    """Every X-MSYS-API header, last first, so each index stays valid while deleting."""
    count = sum(1 for name, _ in headers if name.lower() == xmsys.HEADER)
    return [("X-MSYS-API", index) for index in range(count, 0, -1)]


class ScanCache:
    """The scans of the latest bodies seen, so a mailing's body is scanned once.

    Every message of a newsletter to many recipients usually carries the same body; its
    scan (link sites, pixel places, the link list and template) does not depend on the
    recipient, only rendering the tokens does. Keyed on the exact body bytes, the
    top-level headers the MIME walk reads and the tracking options, so only an identical
    input is ever served from it. ``size`` entries (0: off), least recently used out;
    bodies over MAX_BYTES are not kept. Safe to share between threads.
    """

    MAX_BYTES = 1 << 20
    HEADERS = ("content-type", "content-transfer-encoding", "content-disposition")

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[Any, ...], _Scanned] = OrderedDict()
        self._lock = threading.Lock()

    def key(self, message: Message, body: bytes, *options: Any) -> Optional[tuple[Any, ...]]:
        if not self.size or len(body) > self.MAX_BYTES:
            return None
        return (body, *(tuple(message.get_all(name, ())) for name in self.HEADERS), *options)

    def get(self, key: Optional[tuple[Any, ...]]) -> Optional[_Scanned]:
        if key is None:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: Optional[tuple[Any, ...]], entry: _Scanned) -> None:
        if key is None:
            return
        with self._lock:
            self._entries[key] = entry
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


@dataclass
class _Scanned:
    rewrite: BodyRewrite
    templates: dict[tuple[Any, ...], records.Template] = field(default_factory=dict)

    def template(self, **fields: Any) -> records.Template:
        """The message's Template, made (with its JSON and id) once per distinct header
        set: a mailing shares one."""
        key = tuple(fields.values())
        template = self.templates.get(key)
        if template is None:
            template = records.Template(links=tuple(self.rewrite.links), **fields)
            if len(self.templates) < 8:
                self.templates[key] = template
        return template


NO_CACHE = ScanCache(0)


def _header_api(headers: Sequence[tuple[str, str]], settings: Settings, plan: Plan) -> Optional[xmsys.MsysApi]:
    """The first X-MSYS-API header parsed; None (and plan.reject set) when invalid."""
    msys_values = [value for name, value in headers if name.lower() == xmsys.HEADER]
    try:
        return xmsys.parse(msys_values[0], settings.max_metadata_bytes) if msys_values else xmsys.MsysApi()
    except xmsys.MsysError as exc:
        plan.reject = exc.reply
        return None


def unchanged(headers: Sequence[tuple[str, str]], settings: Settings, note: str) -> Plan:
    """The body goes out as it came (its plan ran over its deadline or failed); the
    X-MSYS-API header is still checked (an invalid one still gets its 550) and deleted."""
    plan = Plan(delete_headers=msys_deletions(headers), notes=[note])
    _header_api(headers, settings, plan)
    return plan


def plan_message(headers: Sequence[tuple[str, str]], body: bytes, envelope: Envelope,
                 settings: Settings, message_key: str, cache: ScanCache = NO_CACHE) -> Plan:
    plan = Plan(delete_headers=msys_deletions(headers))
    api = _header_api(headers, settings, plan)
    if api is None:
        return plan
    if api.ignored:
        plan.notes.append("x-msys-api ignored: " + ",".join(api.ignored))
    message = headers_to_message(headers)
    friendly_from = _from_address(message.get_all("from", []))
    sending_domain = friendly_from.rpartition("@")[2].lower()
    opens = open_tracking(settings, sending_domain, api.open_tracking, plan.notes)
    click = settings.click_tracking if api.click_tracking is None else api.click_tracking
    if any(name.lower() == "dkim-signature" for name, _ in headers):
        plan.notes.append("already DKIM-signed: body left alone")
        return plan
    if not (opens or click) and b"_double_curly()}}" not in body:
        return plan  # nothing to track and no Momentum {{ }} escapes to undo
    tracking_url = settings.tracking_url_for(sending_domain)
    options = (click, opens, settings.track_text_links, tracking_url, settings.trap_link)
    key = cache.key(message, body, *options)
    scanned = cache.get(key)
    if scanned is None:
        try:
            scanned = _Scanned(BodyRewrite(message, body, click=click, opens=opens,
                                           text_links=settings.track_text_links,
                                           tracking_url=tracking_url, trap=settings.trap_link))
        except CannotRewrite as exc:
            plan.notes.append(f"body left alone: {exc}")
            return plan
        cache.put(key, scanned)
    rewrite = scanned.rewrite
    plan.notes += rewrite.notes
    if not rewrite.changes:
        return plan
    template = scanned.template(
        campaign_id=api.campaign_id, tags=api.tags, friendly_from=friendly_from,
        sending_domain=sending_domain, open_tracking=opens, click_tracking=click,
    )
    template_id = template.template_id
    urls = tracked_urls(tracking_url, settings.link_style, message_key, template_id)
    try:
        plan.body = rewrite.render(urls)
    except CannotRewrite as exc:
        plan.notes.append(f"body left alone: {exc}")
        return plan
    plan.message_key, plan.template = message_key, template
    plan.record = records.MessageRecord(
        rcpt_to=envelope.rcpt_to, mail_from=envelope.mail_from,
        subject=_decoded(message.get("subject", "")), message_id=str(message.get("message-id", "")).strip(),
        queue_id=envelope.queue_id, injection_time=envelope.injection_time,
        metadata=api.metadata, template_id=template_id,
    )
    plan.notes.append(f"links={len(rewrite.links)} pixels={rewrite.pixel_count} campaign={api.campaign_id!r}"
                      f" skipped={rewrite.skipped}" + (" trap=1" if rewrite.trap_index is not None else ""))
    return plan


def open_tracking(settings: Settings, sending_domain: str, asked: Optional[bool],
                  notes: list[str]) -> bool:
    """Whether to add open pixels. The operator's ``[open_tracking] <domain> = no`` is
    final (the message cannot turn it on); otherwise the message's X-MSYS-API option
    wins over the domain's entry, which wins over ``[tracking] open_tracking``."""
    domain = settings.open_tracking_for(sending_domain)
    if domain is False:
        if asked:
            notes.append(f"open tracking off for {sending_domain} (x-msys-api asked for it)")
        return False
    default = settings.open_tracking if domain is None else domain
    return default if asked is None else asked


def tracked_urls(tracking_url: str, style: str, message_key: str, template_id: str) -> Urls:
    """How tracked URLs are spelled for ``[tracking] link_style`` (short or v1)."""
    click, top, bottom = layout.LINK_PATHS[style]
    opened = tokens.open_token(message_key, template_id)
    return Urls(
        click=lambda index: f"{tracking_url}{click}{tokens.click_token(message_key, template_id, index)}",
        top_pixel=f"{tracking_url}{top}{opened}",
        bottom_pixel=f"{tracking_url}{bottom}{opened}",
    )


def _from_address(values: list[str]) -> str:
    addresses = [address for _, address in getaddresses([str(v) for v in values]) if address]
    return addresses[0] if addresses else ""


def _decoded(value: str) -> str:
    try:
        return str(make_header(decode_header(str(value)))).strip()
    except Exception:  # a broken encoded-word: keep the raw text rather than lose the subject
        return " ".join(str(value).split())
