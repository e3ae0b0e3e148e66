"""Who opened or clicked: a person, a scanner, a privacy proxy or a prefetch. Pure.

``classify(facts, rules, thresholds)`` turns what one request tells (method, address,
user agent, seconds since injection, the message's other clicks in the same second, the
hidden trap link) into a verdict and the reasons for it, in words a person can check.
Verdicts, strongest first (the strongest signal wins, every signal is a reason):

- ``scanner``: a machine that follows links or loads images to inspect them: a HEAD
  request, the hidden trap link, a click from an address that hit the message's trap
  link moments before, ``burst_links`` or more links of one message in the same second,
  a click within ``fast_click_seconds`` of injection, a scanner rule (machines.conf).
- ``privacy_proxy``: a proxy that loads every image whether or not anyone reads the
  message (Apple Mail Privacy Protection): the open says nothing about a person.
- ``prefetch``: an open within ``fast_open_seconds`` of injection (no person reads that
  fast), or a prefetch rule.
- ``human``: anything else, including opens through proxies that fetch only when the
  recipient views the message (Gmail, Yahoo): their rule's reason is kept.
Nothing is ever dropped on a verdict; it only marks the event.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from engage.verdicts.machines import Rules

HUMAN, SCANNER, PRIVACY_PROXY, PREFETCH = "human", "scanner", "privacy_proxy", "prefetch"
STRENGTH = {HUMAN: 0, PREFETCH: 1, PRIVACY_PROXY: 2, SCANNER: 3}


@dataclass(frozen=True)
class Thresholds:
    fast_click_seconds: float = 5.0  # 0 = off
    fast_open_seconds: float = 2.0  # 0 = off
    burst_links: int = 3  # 0 = off


@dataclass(frozen=True)
class Facts:
    """One open or click as the redirector saw it (or as a stored event tells it)."""

    kind: str  # click | open | initial_open
    method: str = "GET"
    ip: str = ""
    user_agent: str = ""
    age: float | None = None  # seconds since the message was injected, None if unknown
    links_in_second: int = 0  # distinct links of this message clicked in this second
    trap: bool = False  # this is the hidden trap link
    after_trap: bool = False  # this address clicked the message's trap link moments ago


class Verdict(NamedTuple):  # a tuple: made on every click, cheaper than a frozen dataclass
    verdict: str
    reasons: tuple[str, ...] = ()


def classify(facts: Facts, rules: Rules, thresholds: Thresholds) -> Verdict:
    """The verdict for one request: the strongest of its signals, all of them as reasons."""
    found: list[tuple[str, str]] = []  # (verdict, reason)
    if facts.trap:
        found.append((SCANNER, "trap link"))
    if facts.method.upper() == "HEAD":
        found.append((SCANNER, "HEAD request"))
    if facts.after_trap and facts.kind == "click":
        found.append((SCANNER, "same address clicked this message's trap link"))
    found += [(hit.verdict, hit.reason) for hit in rules.match(facts.kind, facts.ip, facts.user_agent)]
    if facts.kind == "click" and thresholds.burst_links > 1 \
            and facts.links_in_second >= thresholds.burst_links:
        found.append((SCANNER, f"{facts.links_in_second} links of this message within 1 s"))
    found += _timing(facts, thresholds)
    verdict = HUMAN
    for candidate, _ in found:
        if STRENGTH[candidate] > STRENGTH[verdict]:
            verdict = candidate
    return Verdict(verdict, tuple(reason for _, reason in found))


def _timing(facts: Facts, thresholds: Thresholds) -> list[tuple[str, str]]:
    if facts.age is None:
        return []
    age = max(facts.age, 0.0)  # a milter clock ahead of ours reads as "at once"
    if facts.kind == "click" and age < thresholds.fast_click_seconds:
        return [(SCANNER, f"clicked {age:.0f} s after injection")]
    if facts.kind != "click" and age < thresholds.fast_open_seconds:
        return [(PREFETCH, f"opened {age:.0f} s after injection")]
    return []


def signals(facts: Facts) -> dict[str, Any]:
    """What a later recompute needs that the event does not hold already (only what is
    not the default, so most events carry none)."""
    found: dict[str, Any] = {}
    if facts.method.upper() != "GET":
        found["method"] = facts.method.upper()
    if facts.links_in_second > 1:
        found["links_in_second"] = facts.links_in_second
    if facts.trap:
        found["trap"] = True
    if facts.after_trap:
        found["after_trap"] = True
    return found


def engage_object(verdict: Verdict, facts: Facts) -> dict[str, Any]:
    """The event's additive ``engage`` field."""
    engage: dict[str, Any] = {"verdict": verdict.verdict, "reasons": list(verdict.reasons)}
    recorded = signals(facts)
    if recorded:
        engage["signals"] = recorded
    return engage
