"""Is a milter answering on a socket, and may the MTA's user connect to it?

``probe(address)`` speaks the first step of the milter protocol as an MTA does (SMFIC_OPTNEG,
then SMFIC_QUIT): a port that accepts connections but is not a milter fails it. It never
sends a message. ``parse_socket`` reads pymilter's syntax (inet:PORT@HOST, inet6:PORT@HOST,
unix:/path); ``user_may`` tells whether a local user's permissions allow an access.
Standard library only: engage doctor runs on hosts without pymilter.
"""
from __future__ import annotations

import grp
import os
import pwd
import socket
import stat
import struct
from dataclasses import dataclass

MILTER_VERSION = 6
ALL_ACTIONS = 0x1FF        # SMFIF_ADDHDRS .. SMFIF_SETSYMLIST: offer everything, like Postfix
ALL_STEPS = 0x1FFFFF       # SMFIP_NOCONNECT .. SMFIP_HDR_LEADSPC
MAX_REPLY = 1 << 16
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1", "ip6-localhost"}
WILDCARD_HOSTS = {"", "0.0.0.0", "::", "*"}  # a listener on every address


class ProbeError(Exception):
    """Nothing usable answers; the message says what happened, in plain words."""


@dataclass(frozen=True)
class Address:
    family: str            # inet, inet6 or unix
    host: str = ""         # inet/inet6: where to connect ("" = loopback)
    port: int = 0
    path: str = ""         # unix

    def __str__(self) -> str:
        if self.family == "unix":
            return f"unix:{self.path}"
        return f"{self.family}:{self.port}@{self.host or 'localhost'}"


def parse_socket(spec: str) -> Address:
    """pymilter/libmilter socket syntax -> Address (raises ValueError)."""
    kind, _, rest = spec.strip().partition(":")
    if kind in ("unix", "local") and rest.startswith("/"):
        return Address("unix", path=rest)
    if kind in ("inet", "inet6"):
        port, _, host = rest.partition("@")
        if port.isdigit() and 0 < int(port) < 65536:
            return Address(kind, host.strip("[]"), int(port))
    raise ValueError(f"not a milter socket: {spec!r}")


def connect_host(address: Address) -> str:
    """Where a client connects: a wildcard listener is reached on loopback."""
    if address.host in WILDCARD_HOSTS:
        return "::1" if address.family == "inet6" else "127.0.0.1"
    return address.host


def _connect(address: Address, timeout: float) -> socket.socket:
    if address.family == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address.path)
        except BaseException:
            sock.close()
            raise
        return sock
    return socket.create_connection((connect_host(address), address.port), timeout=timeout)


def _packet(command: bytes, data: bytes = b"") -> bytes:
    return struct.pack("!I", len(data) + 1) + command + data


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ProbeError("the connection was closed before the milter answered")
        data += chunk
    return data


def probe(address: Address, timeout: float = 5.0) -> tuple[int, int, int]:
    """Negotiate like an MTA; returns the milter's (version, actions, protocol steps)."""
    try:
        with _connect(address, timeout) as sock:
            sock.sendall(_packet(b"O", struct.pack("!III", MILTER_VERSION, ALL_ACTIONS, ALL_STEPS)))
            (size,) = struct.unpack("!I", _read_exactly(sock, 4))
            if not 13 <= size <= MAX_REPLY:
                raise ProbeError("it answered, but not in the milter protocol")
            reply = _read_exactly(sock, size)
            if reply[:1] != b"O":
                raise ProbeError(f"it answered the negotiation with {reply[:1]!r}, not 'O'")
            sock.sendall(_packet(b"Q"))
            return struct.unpack("!III", reply[1:13])
    except TimeoutError:
        raise ProbeError(f"no milter answer within {timeout:g} s") from None
    except FileNotFoundError:
        raise ProbeError("the socket file does not exist") from None
    except OSError as exc:
        raise ProbeError(exc.strerror or str(exc)) from None


def user_may(user: str, path: str, want: int) -> str | None:
    """None when USER may access PATH with WANT (os.R_OK/W_OK) and walk to it; else why not.

    Unix permission bits only (no ACLs); a missing user or path says so.
    """
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return f"there is no user {user}"
    groups = set(os.getgrouplist(user, account.pw_gid))
    parts = os.path.abspath(path).split("/")
    for depth in range(1, len(parts)):
        parent = "/".join(parts[:depth]) or "/"
        if not _allowed(parent, account.pw_uid, groups, os.X_OK):
            return f"user {user} cannot enter {parent} ({_describe(parent)})"
    if not os.path.exists(path):
        return f"{path} does not exist"
    if not _allowed(path, account.pw_uid, groups, want):
        verb = "write to" if want & os.W_OK else "read"
        return f"user {user} may not {verb} {path} ({_describe(path)})"
    return None


def _allowed(path: str, uid: int, groups: set[int], want: int) -> bool:
    if uid == 0:
        return True
    info = os.stat(path)
    if info.st_uid == uid:
        shift = 6
    elif info.st_gid in groups:
        shift = 3
    else:
        shift = 0
    bits = (info.st_mode >> shift) & 0o7
    return bits & want == want


def _describe(path: str) -> str:
    info = os.stat(path)
    try:
        owner = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        owner = str(info.st_uid)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return f"{stat.filemode(info.st_mode)} {owner}:{group}"
