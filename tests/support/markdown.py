"""The project's Markdown read the way GitHub renders it, for the docs tests.

``doc_files()`` (README.md and docs/*.md), ``fenced_blocks(path)`` (every fenced code
block with its info string: the docs mark snippets that tests run with it, e.g.
```` ```postfix main.cf ````), ``anchors(path)`` (the ``#fragment`` each heading gets on
GitHub) and ``links(path)`` (every link target outside code).

GitHub's anchor for a heading: the heading's text as rendered (code spans keep their
text, links their label, emphasis markers go), lower-cased, every character that is
not a letter, digit, underscore, hyphen or space dropped, spaces turned into hyphens;
the second heading with the same anchor gets ``-1``, the third ``-2``, and so on.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_INLINE_LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^\s)>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^\s<>]+)>")


@dataclass(frozen=True)
class Block:
    """One fenced code block: ``info`` is its info string (``postfix main.cf``), ``line``
    the 1-based line of its opening fence, ``text`` its content (indentation of the
    fence removed)."""

    path: Path
    line: int
    info: str
    text: str

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(self.info.split())

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def doc_files() -> list[Path]:
    """README.md and every Markdown file under docs/."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def _split(text: str) -> tuple[list[Block], list[tuple[int, str]]]:
    """(fenced blocks, the other lines with their 1-based numbers); path left unset."""
    blocks: list[Block] = []
    prose: list[tuple[int, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None or ("`" in opening["info"] and opening["fence"][0] == "`"):
            prose.append((i + 1, lines[i]))
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            closing = _FENCE.match(lines[j])
            if (closing and closing["fence"][0] == fence[0] and len(closing["fence"]) >= len(fence)
                    and not closing["info"].strip()):
                break
            line = lines[j]
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))):])
            j += 1
        blocks.append(Block(Path(), i + 1, opening["info"].strip(), "\n".join(body) + "\n"))
        i = j + 1
    return blocks, prose


def fenced_blocks(path: Path) -> list[Block]:
    blocks, _ = _split(path.read_text())
    return [Block(path, b.line, b.info, b.text) for b in blocks]


def _prose(path: Path) -> list[tuple[int, str]]:
    """Lines outside fenced blocks, without indented code blocks (4 spaces after a blank)."""
    _, lines = _split(path.read_text())
    kept: list[tuple[int, str]] = []
    previous_blank = True
    in_indented = False
    for number, line in lines:
        if not line.strip():
            previous_blank = True
            kept.append((number, line))
            continue
        if line.startswith("    ") and (previous_blank or in_indented) and not _in_list(kept):
            in_indented = True
        else:
            in_indented = False
            kept.append((number, line))
        previous_blank = False
    return kept


def _in_list(kept: list[tuple[int, str]]) -> bool:
    """True when the last non-blank line kept is a list item or its continuation, where
    indentation means 'inside the item', not code."""
    for _, line in reversed(kept):
        if line.strip():
            return bool(re.match(r"^\s*([-*+]|\d+[.)])\s", line)) or line.startswith(" ")
    return False


def render_inline(text: str) -> str:
    """A heading's text as GitHub shows it: code spans' text, links' labels, no emphasis."""
    text = _CODE_SPAN.sub(lambda m: m.group(2).strip(), text)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"(\*\*|__|\*)", "", text)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading (before de-duplication)."""
    text = render_inline(heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def headings(path: Path) -> list[tuple[int, int, str]]:
    """(line, level, text) of every ATX heading outside code."""
    found = []
    for number, line in _prose(path):
        match = _HEADING.match(line)
        if match:
            found.append((number, len(match.group(1)), (match.group(2) or "").strip()))
    return found


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result: set[str] = set()
    for _, _, text in headings(path):
        slug = github_slug(text)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every inline link, image, reference definition and autolink
    outside code blocks and code spans; a link's text may run over several lines."""
    numbered = dict(_prose(path))
    last = max(numbered, default=0)
    text = "\n".join(numbered.get(n, "") for n in range(1, last + 1))
    # Code spans may run over lines within a paragraph; keep the line breaks they hold.
    text = re.sub(r"(`+)(?:(?!\n\s*\n).)+?\1",
                  lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    found: list[tuple[int, str]] = []
    for number, line in enumerate(text.split("\n"), 1):
        ref = _REF_DEF.match(line)
        if ref:
            found.append((number, ref.group(1)))
    for pattern, group in ((_INLINE_LINK, 2), (_AUTOLINK, 1)):
        for match in pattern.finditer(text):
            found.append((text.count("\n", 0, match.start()) + 1, match.group(group)))
    return sorted(found)


def iter_blocks(info_word: str) -> Iterator[Block]:
    """Every fenced block of the docs whose info string starts with ``info_word``."""
    for path in doc_files():
        for block in fenced_blocks(path):
            if block.words[:1] == (info_word,):
                yield block
