"""The append script's aggregate arithmetic in Python, for ``engage metrics rebuild``
(engage.metrics.rebuild): the stream's events replayed in order give the window's counters
and, per message, the first event of each unique flag. Pure: no Redis here."""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engage.store import aggregates

KIND = {"open": "o", "initial_open": "i", "click": "c"}
# Replay flag -> the code its first event counts (link flags "k<id>", "hk<id>" aside).
UNIQUE = {"opened": "ur", "initial": "ui", "clicked": "uc", "hr": "nur", "hi": "nui",
          "hc": "nuc"}
CONFIRMED = ((("opened", "clicked"), "uo"), (("hr", "hc"), "nuo"))
NONPREFETCHED = ("hr", "hi", "hc")


@dataclass(frozen=True)
class First:
    """The first event (in stream order) that set one flag of one message."""

    score: int
    hour: str
    dims: str


@dataclass
class MessageReplay:
    counts: Counter[str] = field(default_factory=Counter)  # replayed events per kind o/i/c
    firsts: dict[str, First] = field(default_factory=dict)


class Replay:
    """The append script's arithmetic in Python, for the hours in [start, end)."""

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end
        self.buckets: dict[tuple[str, str], Counter[str]] = {}  # (kind e/l, hour) -> counts
        self.messages: dict[str, MessageReplay] = {}

    def inside(self, hour: str) -> bool:
        return self.start <= aggregates.hour_start(hour) < self.end

    def count(self, kind: str, hour: str, name: str) -> None:
        self.buckets.setdefault((kind, hour), Counter())[name] += 1

    def add(self, event: Mapping[str, Any], score: int) -> None:
        kind, message = KIND.get(str(event.get("type"))), event.get("transmission_id")
        stamp = event.get("timestamp")
        if not kind or not message or not isinstance(stamp, str) or len(stamp) < 13:
            return
        hour, human = stamp[:13], aggregates.is_human(event)
        base = aggregates.dims(str(event.get("campaign_id") or ""),
                               str(event.get("sending_domain") or ""))
        replay = self.messages.setdefault(str(message), MessageReplay())
        replay.counts[kind] += 1
        if kind == "c":
            label = aggregates.link_label(event)
            link, ident = f"{base}|{aggregates.escape(label)}", aggregates.link_id(label)
            codes, flags = ["c", "nc"] if human else ["c"], ["clicked", "k" + ident]
            if human:
                flags += ["hc", "hk" + ident]
            if self.inside(hour):
                for code in codes:
                    self.count("e", hour, code + base)
                    self.count("l", hour, code + link)
            for flag in flags:
                replay.firsts.setdefault(flag, First(score, hour, link if per_link(flag)
                                                     else base))
            return
        codes = ["r", "i"] if kind == "i" else ["r"]
        flags = ["opened", "initial"] if kind == "i" else ["opened"]
        if human:
            codes += ["n" + code for code in codes]
            flags += ["hr", "hi"] if kind == "i" else ["hr"]
        if self.inside(hour):
            for code in codes:
                self.count("e", hour, code + base)
        for flag in flags:
            replay.firsts.setdefault(flag, First(score, hour, base))

    def wanted_status(self) -> set[str]:
        """Messages whose status decides a unique inside the window."""
        return {message for message, replay in self.messages.items()
                if any(self.inside(first.hour) for first in replay.firsts.values())}

    def finish(self, before: Mapping[str, set[str]]) -> None:
        """Count the uniques; ``before`` names, per message, the flags already set by
        events older than the replayed stream (they make no first in the replay)."""
        for message, replay in self.messages.items():
            earlier = before.get(message, set())
            for flag, first in replay.firsts.items():
                if flag in earlier or not self.inside(first.hour):
                    continue
                if per_link(flag):
                    self.count("l", first.hour, ("nuc" if flag[0] == "h" else "uc") + first.dims)
                else:
                    self.count("e", first.hour, UNIQUE[flag] + first.dims)
            for pair, code in CONFIRMED:
                if earlier & set(pair):
                    continue
                firsts = [replay.firsts[flag] for flag in pair if flag in replay.firsts]
                if firsts:
                    first = min(firsts, key=lambda item: item.score)
                    if self.inside(first.hour):
                        self.count("e", first.hour, code + first.dims)


def flags_before(status: Mapping[bytes, bytes], replay: MessageReplay, oldest: int) -> set[str]:
    """Flags of one message set before the replayed stream: the status counts exceed the
    replayed events, or a flag holds an event_id older than the oldest replayed one."""
    def number(name: str) -> int:
        value = status.get(name.encode())
        return int(value) if value and value.isdigit() else 0

    counts = replay.counts
    before = set()
    if number("open_count") + number("initial_open_count") > counts["o"] + counts["i"]:
        before.add("opened")
    if number("initial_open_count") > counts["i"]:
        before.add("initial")
    if number("click_count") > counts["c"]:
        before.add("clicked")
    for raw, value in status.items():
        name = raw.decode("ascii", "replace")
        if is_flag(name) and value.isdigit() and int(value) < oldest:
            before.add(name)
    return before


def per_link(flag: str) -> bool:
    return flag[:1] == "k" or flag[:2] == "hk"


def is_flag(name: str) -> bool:
    """A flag whose value is the event_id that set it (aggregates: hr hi hc k<id> hk<id>)."""
    return name in NONPREFETCHED or (name[:1] == "k" and len(name) == 9) or (
        name[:2] == "hk" and len(name) == 10)
