"""Verdicts on the click path: the per-message state a verdict needs, kept in Redis without
an extra round trip for a person's click.

A click adds three commands to the link lookup's pipeline (LinkStore.resolve, one round
trip): SADD of the link to ``{p}vb:<message key>:<unix second>`` (expires after 5 s),
SCARD of it (the distinct links of the message clicked in this second, this one
included: counted by Redis, so parallel requests of a scanner each see the others), and
SISMEMBER of the client's address digest in ``{p}vt:<message key>``, the addresses that
clicked the message's trap link in the last ``trap_window`` seconds (the key expires).
Only a trap hit writes afterwards (one more round trip, never for a person). Addresses
are kept as a truncated SHA-256 digest, only for ``trap_window`` seconds.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

import redis

from engage.settings import Settings
from engage.store import keys
from engage.store.links import TRAP_LINK_NAME, Resolved
from engage.store.scripts.clicks import ClickState
from engage.verdicts.machines import Rules
from engage.verdicts.rules import Facts, Thresholds, classify, engage_object

log = logging.getLogger(__name__)
BURST_TTL = 5  # seconds a per-second click set outlives its second


def burst_key(prefix: str, message_key: str, second: int) -> str:
    return keys.burst(prefix, message_key, second)


def trap_key(prefix: str, message_key: str) -> str:
    return keys.trap_clients(prefix, message_key)


def address_digest(ip: str) -> str:
    return hashlib.sha256(b"engage-trap\0" + ip.encode()).hexdigest()[:16]


def thresholds(settings: Settings) -> Thresholds:
    return Thresholds(settings.fast_click_seconds, settings.fast_open_seconds, settings.burst_links)


@dataclass(frozen=True)
class Judged:
    engage: dict[str, Any]
    facts: Facts


class Judge:
    """Turns a request and its resolved token into the event's ``engage`` field."""

    def __init__(self, client: redis.Redis, prefix: str, rules: Rules,
                 limits: Thresholds, trap_window: int) -> None:
        self.client = client
        self.prefix = prefix
        self.rules = rules
        self.limits = limits
        self.trap_window = trap_window

    def click_state(self, now: float, ip: str,
                    url: Optional[str] = None) -> Callable[[Any, str, Optional[int]], None]:
        """A hook for LinkStore.resolve that puts the click's state commands into its
        pipeline. ``url``: the destination of a broadcast click (no link index)."""
        def hook(pipe: Any, message_key: str, index: Optional[int]) -> None:
            (burst, trap), (member, ttl, digest) = self.click_keys(now, ip, message_key,
                                                                   index, url)
            pipe.sadd(burst, member)
            pipe.expire(burst, ttl)
            pipe.scard(burst)
            pipe.sismember(trap, digest)
        return hook

    def click_keys(self, now: float, ip: str, message_key: str, index: Optional[int],
                   url: Optional[str] = None) -> tuple[tuple[str, str], tuple[str, int, str]]:
        """The click state's keys (burst set, trap set) and values (this link's member of
        the burst set, its TTL, the address digest): ``click_state``'s four commands are
        SADD burst member, EXPIRE burst ttl, SCARD burst, SISMEMBER trap digest."""
        member = f"u{hashlib.sha256(url.encode()).hexdigest()[:12]}" if url else str(index)
        return ((burst_key(self.prefix, message_key, int(now)), trap_key(self.prefix, message_key)),
                (member, BURST_TTL, address_digest(ip)))

    def judge(self, kind: str, method: str, ip: str, user_agent: str, resolved: Resolved,
              now: float) -> Judged:
        """The verdict from the raw request (before any masking of address or agent)."""
        injected = resolved.record.injection_time
        links, after_trap = 0, False
        state = ClickState.from_reply(resolved.extra) if kind == "click" else None
        if state is not None:
            links, after_trap = int(state.links or 0), bool(state.after_trap)
        facts = Facts(kind, method, ip, user_agent, now - injected if injected else None, links,
                      kind == "click" and resolved.link is not None
                      and resolved.link.name == TRAP_LINK_NAME, after_trap)
        return Judged(engage_object(classify(facts, self.rules, self.limits), facts), facts)

    def remember(self, judged: Judged, resolved: Resolved) -> None:
        """After a trap hit: this address is a scanner for the message's next clicks. A
        failure only loses that memory (logged), never the event or the answer."""
        if not judged.facts.trap:
            return
        key = trap_key(self.prefix, resolved.message_key)
        pipe = self.client.pipeline(transaction=False)
        pipe.sadd(key, address_digest(judged.facts.ip))
        pipe.expire(key, self.trap_window)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("trap hit of transmission %s not remembered: %s", resolved.message_key, exc)
