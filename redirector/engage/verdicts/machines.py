"""Who opens and clicks besides people: the rules file (etc/engage/machines.conf) and its matcher.

A rules file is a list of sections, one per machine (a proxy or a scanner)::

    [Microsoft Safe Links]       the name shown in reasons
    verdict = scanner            scanner | privacy_proxy | prefetch | human
    events = open, click         which events the rule applies to (open covers initial_open)
    ua = Microsoft Office Existence Discovery     a regular expression (Python syntax),
                                 searched in the User-Agent, case-sensitive unless it
                                 starts with (?i); repeatable
    net = 40.92.0.0/15 40.107.0.0/16              IPv4/IPv6 networks; repeatable

Lines starting with ``#`` or ``;`` are comments (also after the networks of a ``net``
line). Later files extend earlier ones: a section of a known name adds its ``ua`` and
``net`` lines and may change ``verdict``/``events``. Any mistake is a RulesError that
names the file and line. Matching costs one search per pattern for a User-Agent not seen
lately (results are cached per User-Agent) and one dictionary lookup per distinct prefix
length, however long the network list.
"""
from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import engage
from engage.settings import EX_CONFIG

VERDICTS = ("human", "scanner", "privacy_proxy", "prefetch")
EVENT_CLASSES = ("open", "click")
KEYS = ("verdict", "events", "ua", "net")
UA_CACHE = 4096
MAPPED = bytes(10) + b"\xff\xff"  # ::ffff:0:0/96, IPv4-mapped IPv6


class RulesError(Exception):
    """A rules file that cannot be used; the text is ``file:line: reason``."""


@dataclass
class Machine:
    name: str
    verdict: str = ""
    events: frozenset[str] = frozenset(EVENT_CLASSES)
    patterns: list[str] = field(default_factory=list)
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    where: str = ""  # file:line of the section header that defined it


@dataclass(frozen=True)
class Hit:
    """One rule that matched a request, and why (a reason a person can read)."""

    machine: str
    verdict: str
    reason: str


def event_class(kind: str) -> str:
    """open and initial_open are opens; click is a click."""
    return "click" if kind == "click" else "open"


class Rules:
    """The compiled rules: ``match(kind, ip, user_agent)`` -> the rules that apply."""

    def __init__(self, machines: Sequence[Machine], sources: Sequence[str] = ()) -> None:
        self.machines = tuple(machines)
        self.sources = tuple(sources)
        # Case-sensitive: re.IGNORECASE makes a search about 5 times slower.
        self._patterns = [[re.compile(p) for p in m.patterns] for m in self.machines]
        self._tables = _network_tables(self.machines)
        # Most addresses are in no listed network: when no IPv4 network is wider than
        # a /8, the first octet alone rules them out with one set lookup.
        v4 = [n for m in self.machines for n in m.networks if n.version == 4]
        self._octets = frozenset(int(n.network_address) >> 24 for n in v4) \
            if all(n.prefixlen >= 8 for n in v4) else None
        self._ua_hits = lru_cache(maxsize=UA_CACHE)(self._ua_hits_uncached)

    def match(self, kind: str, ip: str, user_agent: str) -> list[Hit]:
        """Every rule for this kind of event whose pattern or network matches."""
        wanted = event_class(kind)
        hits = []
        for index in self._ua_hits(user_agent) if user_agent else ():
            machine = self.machines[index]
            if wanted in machine.events:
                hits.append(Hit(machine.name, machine.verdict, f"user agent matches {machine.name}"))
        for index, network in self._network_hits(ip):
            machine = self.machines[index]
            if wanted in machine.events:
                hits.append(Hit(machine.name, machine.verdict, f"network {network} ({machine.name})"))
        return hits

    def _ua_hits_uncached(self, user_agent: str) -> tuple[int, ...]:
        return tuple(index for index, patterns in enumerate(self._patterns)
                     if any(pattern.search(user_agent) for pattern in patterns))

    def _network_hits(self, ip: str) -> list[tuple[int, str]]:
        address = _address(ip) if ip else None
        if address is None:
            return []
        number, bits = address
        if bits == 32 and self._octets is not None and number >> 24 not in self._octets:
            return []
        hits: list[tuple[int, str]] = []
        for shift, table in self._tables.get(bits, ()):
            found = table.get(number >> shift)
            if found:
                hits += found
        return hits

    def summary(self) -> str:
        nets = sum(len(m.networks) for m in self.machines)
        patterns = sum(len(m.patterns) for m in self.machines)
        return (f"{len(self.machines)} machines, {patterns} user-agent patterns, {nets} networks "
                f"from {', '.join(self.sources) or '(none)'}")


def _address(ip: str) -> tuple[int, int] | None:
    """(number, 32 or 128) of an address; IPv4-mapped IPv6 as IPv4; None if not one.
    (inet_pton is about 8 times faster than the ipaddress module.)"""
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big"), 32
    except OSError:
        pass
    try:
        raw = socket.inet_pton(socket.AF_INET6, ip)
    except OSError:
        return None
    if raw[:12] == MAPPED:
        return int.from_bytes(raw[12:], "big"), 32
    return int.from_bytes(raw, "big"), 128


def _network_tables(machines: Sequence[Machine]) -> dict[int, list[tuple[int, dict[int, list[tuple[int, str]]]]]]:
    """Per address size (32, 128): [(shift, {network number >> shift: [(machine, cidr)]})],
    longest prefix first, so a lookup is one dict access per distinct prefix length."""
    tables: dict[int, dict[int, dict[int, list[tuple[int, str]]]]] = {}
    for index, machine in enumerate(machines):
        for network in machine.networks:
            bits, prefix = network.max_prefixlen, network.prefixlen
            by_prefix = tables.setdefault(bits, {}).setdefault(prefix, {})
            key = int(network.network_address) >> (bits - prefix)
            by_prefix.setdefault(key, []).append((index, str(network)))
    return {bits: [(bits - prefix, table) for prefix, table in sorted(by_prefix.items(), reverse=True)]
            for bits, by_prefix in tables.items()}


# ------------------------------------------------------------------ the file format
def parse(text: str, source: str, machines: dict[str, Machine] | None = None) -> dict[str, Machine]:
    """Add the sections of one rules file to ``machines`` (by name, in file order)."""
    machines = {} if machines is None else machines
    current: Machine | None = None
    seen_here: set[tuple[str, str]] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        where = f"{source}:{number}"
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = _section(line, where, machines)
            continue
        name, equals, value = line.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not equals:
            raise RulesError(f"{where}: expected 'key = value' or '[name]', got {line!r}")
        if current is None:
            raise RulesError(f"{where}: {name} outside a [section]")
        if name in ("verdict", "events") and (current.name, name) in seen_here:
            raise RulesError(f"{where}: {name} given twice in [{current.name}]")
        seen_here.add((current.name, name))
        _apply(current, name, value, where)
    for machine in machines.values():
        if not machine.verdict:
            raise RulesError(f"{machine.where}: [{machine.name}] has no verdict")
    return machines


def _section(line: str, where: str, machines: dict[str, Machine]) -> Machine:
    if not line.endswith("]") or not line[1:-1].strip():
        raise RulesError(f"{where}: a section header is [name], got {line!r}")
    name = " ".join(line[1:-1].split())
    if name not in machines:
        machines[name] = Machine(name, where=where)
    return machines[name]


def _apply(machine: Machine, name: str, value: str, where: str) -> None:
    if name == "verdict":
        if value not in VERDICTS:
            raise RulesError(f"{where}: verdict must be one of {', '.join(VERDICTS)}, got {value!r}")
        machine.verdict = value
    elif name == "events":
        events = frozenset(v.strip() for v in re.split(r"[\s,]+", value) if v.strip())
        if not events or not events <= set(EVENT_CLASSES):
            raise RulesError(f"{where}: events must list open and/or click, got {value!r}")
        machine.events = events
    elif name == "ua":
        machine.patterns.append(_pattern(value, where))
    elif name == "net":
        machine.networks += _networks(value.partition("#")[0], where)
    else:
        raise RulesError(f"{where}: unknown key {name!r} (known: {', '.join(KEYS)})")


def _pattern(value: str, where: str) -> str:
    if not value:
        raise RulesError(f"{where}: ua needs a regular expression")
    try:
        compiled = re.compile(value)
    except re.error as exc:
        raise RulesError(f"{where}: ua {value!r} is not a regular expression: {exc}") from None
    if compiled.groupindex or re.search(r"\\\d|\(\?P=", value):
        raise RulesError(f"{where}: ua {value!r}: named groups and back-references are not allowed")
    if compiled.search(""):
        raise RulesError(f"{where}: ua {value!r} matches every user agent")
    return value


def _networks(value: str, where: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    items = [item for item in re.split(r"[\s,]+", value) if item]
    if not items:
        raise RulesError(f"{where}: net needs at least one network, e.g. 192.0.2.0/24")
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError as exc:
            raise RulesError(f"{where}: net {item!r}: {exc}") from None
    return networks


def load(paths: Iterable[str]) -> Rules:
    """Read the rules files in order (later ones extend earlier ones). Raises RulesError."""
    machines: dict[str, Machine] = {}
    sources = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise RulesError(f"{path}: cannot read the rules file: {exc}") from None
        parse(text, path, machines)
        sources.append(path)
    return Rules(list(machines.values()), sources)


# ------------------------------------------------------------------ where the files are
# Package data: in a source tree a link to etc/engage/machines.conf, in a wheel the file
# itself, in the deb and rpm a link to PACKAGED_RULES. Found from the engage package, not
# from this module, so it stays put when modules move between sub-packages.
PACKAGE_RULES = os.path.join(os.path.dirname(os.path.abspath(engage.__file__)), "machines.conf")
PACKAGED_RULES = "/usr/share/engage/machines.conf"


def shipped_rules() -> str:
    """The list shipped with this engage, followed to the real file (etc/engage/ in a
    source tree, /usr/share/engage/ in the packages). Raises RulesError when missing."""
    for path in (PACKAGE_RULES, PACKAGED_RULES):
        if os.path.exists(path):
            return os.path.realpath(path)
    raise RulesError(f"no shipped rules file ({PACKAGE_RULES} or {PACKAGED_RULES}): "
                     "set [verdicts] rules to a machines.conf")


def rule_files(rules: str, extra: Sequence[str]) -> list[str]:
    """``[verdicts] rules`` (empty: the shipped list), then the operator's ``extra_rules``."""
    return [rules or shipped_rules(), *extra]


def load_or_exit(program: str, rules: str, extra: Sequence[str]) -> Rules:
    """load() for an entry point: a bad rules file ends the process with exit code 78 and
    ``program: file:line: reason`` on stderr, as a bad setting does."""
    try:
        return load(rule_files(rules, extra))
    except RulesError as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        raise SystemExit(EX_CONFIG) from None
