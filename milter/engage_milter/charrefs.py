"""Decode character references in an attribute value as an HTML5 browser does.

``html.unescape`` reads text content, not attributes: it turns ``?a=1&timestamp=5``
into ``?a=1×tamp=5``. Inside an attribute value HTML5 keeps a named reference that
has no ``;`` literal when ``=`` or an ASCII letter or digit follows it (WHATWG HTML,
"named character reference state"), numeric references map 0x80-0x9F through
windows-1252 and anything out of range to U+FFFD, a NUL becomes U+FFFD. Linear: one
regex pass, each reference looked up once.
"""
from __future__ import annotations

import re
from html.entities import html5

REFERENCE = re.compile(r"&(?:#[xX]([0-9A-Fa-f]+);?|#([0-9]+);?|([A-Za-z0-9]+)(;?))")
REPLACEMENT = "\ufffd"


def _c1(code: int) -> str:
    try:
        return bytes([code]).decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D: not in the table, kept
        return chr(code)


WINDOWS_1252 = {code: _c1(code) for code in range(0x80, 0xA0)}


def unescape_attribute(value: str) -> str:
    """The attribute value a browser sees for ``value`` as written in the document."""
    if "\x00" in value:
        value = value.replace("\x00", REPLACEMENT)
    if "&" not in value:
        return value
    if value.count("&") == value.count("&amp;"):
        return value.replace("&amp;", "&")
    return REFERENCE.sub(_decode, value)


def _decode(match: re.Match[str]) -> str:
    hex_digits, digits, name, semicolon = match.groups()
    if name is None:
        return _number(hex_digits, 16) if hex_digits is not None else _number(digits, 10)
    if semicolon and name + ";" in html5:
        return html5[name + ";"]
    following = match.string[match.end():match.end() + 1]
    if name in html5 and not (following == "=" and not semicolon):
        # A legacy name (no ';') that takes the whole alphanumeric run: an alphanumeric
        # cannot follow it, so only '=' keeps it literal.
        return html5[name] + semicolon
    return match.group()


def _number(digits: str, base: int) -> str:
    significant = digits.lstrip("0")
    if len(significant) > 8:  # past U+10FFFF whatever the base; never int() a long run
        return REPLACEMENT
    code = int(significant or "0", base)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return REPLACEMENT
    return WINDOWS_1252.get(code) or chr(code)
