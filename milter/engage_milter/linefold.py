"""Keep 7bit/8bit lines within 998 octets (RFC 5322) after a body rewrite
(engage_milter.bodyrewrite): a quick look first, the exact check of the edited lines
next, and only then breaks at the edits' break points (inside tags, never in text).
Linear: bodies are read in windows, break points walked once."""
from __future__ import annotations

from . import deadline
from .transfer import CannotRewrite, Codec, Splice, splice

MAX_LINE = 998
WINDOW = 1 << 20  # bytes of a body split into lines at a time


def max_line(data: bytes) -> int:
    """The longest line (CR not counted), read in windows of about WINDOW bytes so that a
    50 MB body is never split into lines all at once."""
    longest, start = 0, 0
    while start < len(data):
        end = data.rfind(b"\n", start, start + WINDOW) + 1 if start + WINDOW < len(data) else len(data)
        if end <= start:  # no line end within a window: that line alone
            end = data.find(b"\n", start) + 1 or len(data)
        longest = max(longest, max(len(line.rstrip(b"\r")) for line in data[start:end].split(b"\n")))
        start = end
    return longest


def fold(splices: list[Splice], breaks: list[int], codec: Codec) -> list[Splice]:
    """Break lines that would exceed 998 octets at the edits' break points (inside tags)."""
    spliced = splice(codec.decoded, splices)
    if short_lines(spliced):
        return [Splice(0, len(codec.decoded), spliced)]
    if edited_lines_fit(splices, codec.decoded):
        return splices
    out: list[bytes] = []
    points: list[int] = []  # offsets in the new text where a line break may go
    pos = size = 0
    for edit, brk in zip(splices, breaks):
        out += (codec.decoded[pos:edit.start], edit.data)
        size += edit.start - pos
        if brk >= 0:
            points.append(size + brk)
        size += len(edit.data)
        pos = edit.end
    out.append(codec.decoded[pos:])
    new = b"".join(out)
    if max_line(new) <= MAX_LINE:
        return splices
    cuts = line_cuts(new, points)
    pieces = [new[a:b] for a, b in zip([0] + cuts, cuts + [len(new)])]
    result = codec.newline.join(pieces)
    if max_line(result) > max(MAX_LINE, max_line(codec.decoded)):
        raise CannotRewrite("a rewritten line would exceed 998 octets")
    return [Splice(0, len(codec.decoded), result)]


def short_lines(data: bytes) -> bool:
    """A quick look (no Python loop per line; CRs counted): every line within 998 octets.
    In windows, as max_line."""
    start = 0
    while start < len(data):
        end = data.rfind(b"\n", start, start + WINDOW) + 1 if start + WINDOW < len(data) else len(data)
        if end <= start or max(map(len, data[start:end].split(b"\n"))) > MAX_LINE:
            return False
        start = end
    return True


def edited_lines_fit(splices: list[Splice], data: bytes) -> bool:
    """Whether every line an edit touches stays within 998 octets (edits hold no line
    break, so each line's new length is its old length plus the edits' growth). One walk
    forward: each byte between two edits is searched for line ends once."""
    line_start, line_end, extra = 0, -1, 0
    for edit in splices:
        if edit.start > line_end:  # past the current line: close it, find this edit's line
            if line_end >= 0 and not line_fits(data, line_start, line_end, extra):
                return False
            line_start = data.rfind(b"\n", max(line_end, 0), edit.start) + 1
            line_end = data.find(b"\n", edit.start)
            line_end = len(data) if line_end < 0 else line_end
            extra = 0
        extra += len(edit.data) - (edit.end - edit.start)
    return line_end < 0 or line_fits(data, line_start, line_end, extra)


def line_fits(data: bytes, start: int, end: int, extra: int) -> bool:
    return end - start - (data[end - 1:end] == b"\r") + extra <= MAX_LINE


def line_cuts(new: bytes, points: list[int]) -> list[int]:
    """Greedy: on each over-long line, break at the last point within 998 octets. The
    points are sorted; one pointer walks them, so many links on one line stay linear."""
    cuts: list[int] = []
    line_start = index = 0
    for line in new.split(b"\n"):
        line_end = line_start + len(line.rstrip(b"\r"))
        current = line_start
        while line_end - current > MAX_LINE:
            deadline.check()
            while index < len(points) and points[index] <= current:
                index += 1
            best = -1
            while index < len(points) and points[index] <= current + MAX_LINE:
                best = points[index]
                index += 1
            if best < 0:
                break
            current = best
            cuts.append(current)
        line_start += len(line) + 1
    return cuts
