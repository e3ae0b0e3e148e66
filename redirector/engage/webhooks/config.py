"""What a webhook is: SparkPost's webhook object, validated, as a frozen value.

Field names follow SparkPost's Webhooks API (``target``, ``events``, ``active``,
``auth_type``, ``auth_credentials``, ``auth_request_details``, ``custom_headers``) so
a configuration can be carried over; ``signing_secret``, ``signature_scheme``
(``standard``: Standard Webhooks headers with a ``whsec_`` secret, the default; ``engage``:
our X-Engage-Signature, which webhooks stored before the standard keep) and ``format``
(``sparkpost``, the default, or ``events``: one Resend-shaped object per event) are ours.
The default subscription of ``engage-webhooks create`` (DEFAULT_EVENTS) is SparkPost's
``click`` and ``open``: ``initial_open`` (the top pixel) is asked for by name, since
consumers such as anymail report it as "unknown" unless told otherwise. ``from_json``
and ``to_json`` round-trip; ``public`` masks every secret for display.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from engage.store.events import TYPES
from engage.webhooks.payload import FORMATS
from engage.webhooks.signature import STANDARD_HEADERS, secret_key

AUTH_TYPES = ("none", "basic", "oauth2")
SCHEMES = ("standard", "engage")
DEFAULT_EVENTS = ("click", "open")
# Headers we set ourselves; a custom header may not replace them.
RESERVED_HEADERS = {"content-type", "content-length", "host", "x-messagesystems-batch-id",
                    "authorization", "x-engage-signature", "transfer-encoding",
                    *STANDARD_HEADERS}
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
MASK = "********"


class ConfigError(ValueError):
    """A webhook definition that cannot be used; the message says which field and why."""


@dataclass(frozen=True)
class Webhook:
    id: str
    name: str
    target: str
    events: tuple[str, ...] = TYPES  # engage-webhooks create defaults to DEFAULT_EVENTS
    active: bool = True
    auth_type: str = "none"
    auth_credentials: Mapping[str, str] = field(default_factory=dict)
    auth_request_details: Mapping[str, Any] = field(default_factory=dict)
    custom_headers: Mapping[str, str] = field(default_factory=dict)
    signing_secret: str = ""
    created: float = 0.0
    format: str = "sparkpost"
    signature_scheme: str = "standard"

    def to_json(self) -> str:
        data = asdict(self)
        data["events"] = list(self.events)
        return json.dumps(data, separators=(",", ":"), sort_keys=True, allow_nan=False)

    def public(self) -> dict[str, Any]:
        """The definition with passwords, client secrets and the signing secret masked."""
        data: dict[str, Any] = json.loads(self.to_json())
        if "password" in data["auth_credentials"]:
            data["auth_credentials"]["password"] = MASK
        body = data["auth_request_details"].get("body", {})
        for key in body:
            if "secret" in key or "password" in key:
                body[key] = MASK
        if data["signing_secret"]:
            data["signing_secret"] = MASK
        return data

    def with_changes(self, **changes: Any) -> Webhook:
        return validate(replace(self, **changes))


def from_json(text: str | bytes) -> Webhook:
    """A stored definition; one stored before signature schemes existed keeps signing
    as it did (X-Engage-Signature when it had a secret)."""
    data = json.loads(text)
    data["events"] = tuple(data.get("events", TYPES))
    data.setdefault("signature_scheme", "engage" if data.get("signing_secret") else "standard")
    return Webhook(**data)


def validate(hook: Webhook) -> Webhook:
    """The webhook if usable; ConfigError naming the field otherwise."""
    _check_url("target", hook.target)
    if not hook.name.strip() or len(hook.name) > 1024:
        raise ConfigError("name: must be 1 to 1024 characters")
    if not hook.events or any(kind not in TYPES for kind in hook.events):
        raise ConfigError(f"events: each must be one of {', '.join(TYPES)}")
    if hook.format not in FORMATS:
        raise ConfigError(f"format: must be one of {', '.join(FORMATS)}")
    if hook.signature_scheme not in SCHEMES:
        raise ConfigError(f"signature_scheme: must be one of {', '.join(SCHEMES)}")
    if hook.signature_scheme == "standard" and hook.signing_secret:
        try:
            secret_key(hook.signing_secret)
        except ValueError as exc:
            raise ConfigError(f"signing_secret: a Standard Webhooks secret {exc} "
                              "(--sign makes one)") from None
    if hook.auth_type not in AUTH_TYPES:
        raise ConfigError(f"auth_type: must be one of {', '.join(AUTH_TYPES)}")
    if hook.auth_type == "basic" and not hook.auth_credentials.get("username"):
        raise ConfigError("auth_credentials: basic auth needs a username")
    if hook.auth_type == "oauth2":
        _check_oauth2(hook.auth_request_details)
    for name, value in hook.custom_headers.items():
        _check_header(name, value)
    return hook


def _check_url(what: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{what}: must be an http(s) URL with a host, got {url!r}")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ConfigError(f"{what}: must not contain spaces or control characters")


def _check_oauth2(details: Mapping[str, Any]) -> None:
    _check_url("auth_request_details.url", str(details.get("url", "")))
    body = details.get("body", {})
    if not isinstance(body, Mapping) or not body.get("client_id") or not body.get("client_secret"):
        raise ConfigError("auth_request_details.body: needs client_id and client_secret")


def _check_header(name: str, value: str) -> None:
    if not HEADER_NAME.match(name) or name.lower() in RESERVED_HEADERS:
        raise ConfigError(f"custom_headers: {name!r} is not a header we may set")
    if any(ord(ch) < 32 and ch != "\t" for ch in value):
        raise ConfigError(f"custom_headers: {name!r} value has control characters")
