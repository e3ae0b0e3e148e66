"""Just enough of HTML5 tree construction to know where svg and math content is.

The tokenizer reads some things differently inside svg/math ("foreign content"): a
``<![CDATA[`` section is text up to ``]]>``, and ``<style>``, ``<script>``, ``<title>``
... are ordinary elements there, not raw text. This keeps the stack of elements opened
since the outermost ``<svg>``/``<math>``: breakout tags (``<p>``, ``<div>``, ...) leave
foreign content, integration points (svg ``foreignObject``/``desc``/``title``, MathML
``mi``/``mo``/``mn``/``ms``/``mtext``) hold HTML again, an end tag of an HTML element
open around them leaves them (HTML elements are counted by name, without the implied
end tags of tree construction). Not modelled: ``<select>``, framesets and
``annotation-xml``'s encoding (rare in mail; the tokenizer then reads one element as raw
text where a browser would not, or the reverse).
"""
from __future__ import annotations

import re

ROOTS = frozenset({"svg", "math"})
BREAKOUT = frozenset({
    "b", "big", "blockquote", "body", "br", "center", "code", "dd", "div", "dl", "dt", "em",
    "embed", "h1", "h2", "h3", "h4", "h5", "h6", "head", "hr", "i", "img", "li", "listing",
    "menu", "meta", "nobr", "ol", "p", "pre", "ruby", "s", "small", "span", "strong",
    "strike", "sub", "sup", "table", "tt", "u", "ul", "var",
})
INTEGRATION = frozenset({("foreignobject", "svg"), ("desc", "svg"), ("title", "svg"), ("mi", "math"),
                         ("mo", "math"), ("mn", "math"), ("ms", "math"), ("mtext", "math")})
VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                  "param", "source", "track", "wbr", "keygen", "basefont", "bgsound", "frame"})
FONT_BREAKOUT = re.compile(r"(?:^|[\t\n\f\r /])(?:color|face|size)(?:[\t\n\f\r /=]|$)", re.IGNORECASE)


class Tree:
    """Open elements inside the outermost svg/math, as (name, namespace: html, svg or math)."""

    def __init__(self) -> None:
        self.stack: list[tuple[str, str]] = []
        self.counts: dict[str, int] = {}  # names on the stack: an absent end tag costs no walk
        self.outside: dict[str, int] = {}  # HTML elements open around it (see note)

    def cdata_allowed(self) -> bool:
        """The adjusted current node is an svg/math element (integration points too)."""
        return bool(self.stack) and self.stack[-1][1] != "html"

    def _in_foreign_content(self) -> bool:
        return bool(self.stack) and self.stack[-1][1] != "html" and self.stack[-1] not in INTEGRATION

    def start(self, tag: str, attributes: str, self_closing: bool) -> bool:
        """Take a start tag (``attributes``: its text, needed for font only); True when
        the tokenizer treats it as HTML (raw text etc.)."""
        if self._in_foreign_content() and not (tag == "svg" and self.stack[-1] == ("annotation-xml", "math")):
            if tag in BREAKOUT or (tag == "font" and FONT_BREAKOUT.search(attributes)):
                while self._in_foreign_content():
                    self._pop()
                if self.stack:
                    return self.start(tag, attributes, self_closing)
                self.note(tag, False)
                return True
            if not self_closing:
                self._push(tag, self.stack[-1][1])
            return False
        if tag in ROOTS:
            if not self_closing:
                self._push(tag, tag)
            return False
        if self.stack and tag not in VOID:
            self._push(tag, "html")
        return True

    def _push(self, tag: str, namespace: str) -> None:
        self.stack.append((tag, namespace))
        self.counts[tag] = self.counts.get(tag, 0) + 1

    def _pop(self) -> None:
        tag = self.stack.pop()[0]
        self.counts[tag] -= 1

    def note(self, tag: str, end: bool) -> None:
        """An HTML tag outside svg/math (only noted in documents that hold svg or math):
        an end tag inside svg/math that closes an element around it leaves them."""
        if not end:
            if tag not in VOID and tag not in ROOTS:
                self.outside[tag] = self.outside.get(tag, 0) + 1
        elif self.outside.get(tag) and tag not in ("body", "html"):  # those end no element
            self.outside[tag] -= 1

    def end(self, tag: str) -> None:
        """An end tag closes the innermost open element of that name, and those inside it;
        one that closes an HTML element around the svg/math closes them all."""
        if self.counts.get(tag):
            while self.stack[-1][0] != tag:
                self._pop()
            self._pop()
        elif self.outside.get(tag) and tag not in ("body", "html"):  # those end no element
            self.outside[tag] -= 1
            while self.stack:
                self._pop()
