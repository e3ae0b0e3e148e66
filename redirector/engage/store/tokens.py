"""The token format: open ``<mid><tid>``, click ``<mid><tid><link index base36>``.

The message id (``mid``) is 96 random bits, base64url (unguessable); the template id
(``tid``) is 9 bytes of SHA-256 of the template (engage.store.records.Template). The paths
in front of a token are engage.store.layout's; what a token resolves to is
engage.store.links'.
"""
from __future__ import annotations

import base64
import re
import secrets
from typing import Optional

MID_LEN = 16  # 12 random bytes, base64url
TID_LEN = 12  # 9 bytes of SHA-256, base64url
MAX_INDEX_DIGITS = 4
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{%d}[0-9a-z]{0,%d}" % (MID_LEN + TID_LEN, MAX_INDEX_DIGITS))


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def new_message_key() -> str:
    """96 random bits: the unguessable part of every token of one message."""
    return b64(secrets.token_bytes(12))


def open_token(message_key: str, template_id: str) -> str:
    return message_key + template_id


def click_token(message_key: str, template_id: str, index: int) -> str:
    return message_key + template_id + base36(index)


B36_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
# Link indexes below 1296 as text, made once: a 150-link message needs 150 per message.
_B36_SMALL = list(B36_DIGITS) + [a + b for a in B36_DIGITS[1:] for b in B36_DIGITS]


def base36(number: int) -> str:
    if number < len(_B36_SMALL):
        return _B36_SMALL[number]
    digits = B36_DIGITS
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if not number:
            return text


def split_token(token: str) -> Optional[tuple[str, str, Optional[int]]]:
    """(message key, template id, link index or None) or None for a malformed token."""
    if not TOKEN_RE.fullmatch(token):
        return None
    index_text = token[MID_LEN + TID_LEN:]
    index = int(index_text, 36) if index_text else None
    return token[:MID_LEN], token[MID_LEN:MID_LEN + TID_LEN], index
