"""Real daemons for the tests and benchmarks: redis-server, the milter, a sandbox Postfix,
the redirector under gunicorn and an nginx in front of it.

Everything listens on 127.0.0.1 on a free port and lives under one temporary directory
(see ``session_dir``). The Postfix side is scripts/sandbox-postfix, the same script
``make run`` uses. tests/conftest.py wraps these classes in pytest fixtures; benchmark
scripts can use them directly (``sys.path.insert(0, "tests")``, then
``from support.procs import ...``).

Facts worth knowing (measured on Debian 12, Postfix 3.7, pymilter 1.0.5):
- A pymilter milter needs up to 5 s to exit after SIGTERM: libmilter's listener only
  checks its stop flag every 5 s (MI_CHK_TIME). ``MilterProcess.stop()`` waits for
  that; ``kill()`` is immediate; fixture teardown only signals and the session end
  reaps, so tests do not pay 5 s each.
- Postfix must be started as root, and virtual(8) delivers as an unprivileged user
  (nobody here) that must be able to walk to the Maildir, so the session directory is
  made under /tmp with mode 0755, not under pytest's 0700 tmp_path.
- The delivered file is what Postfix wrote: Return-Path:, X-Original-To:,
  Delivered-To: and Received: are prepended, line endings are LF, and there is one
  file per recipient. ``split_message()`` and ``crlf_to_lf()`` help comparing.
- smtpd talks to the milter as the postfix user: a unix: socket that a root milter
  creates with the default umask (srwxr-xr-x) is refused ("connect to Milter service
  unix:...: Permission denied", then 451). inet: sockets have no such problem.
- With the milter down (milter_default_action = tempfail) Postfix answers MAIL FROM
  with ``451 4.7.1 Service unavailable - try again later``: smtplib raises
  SMTPSenderRefused.
- nginx started as root runs its worker as nobody; the sandbox template streams
  responses (``proxy_max_temp_file_size 0``) so that worker never needs the prefix.
  Requests sent from 127.0.0.2 (``http_get(..., source=...)``) reach a 127.0.0.1
  listener: that is how a test tells the client's address from nginx's.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Optional, Union

REPO = Path(__file__).resolve().parents[2]
SANDBOX_POSTFIX = REPO / "scripts" / "sandbox-postfix"
MILTER_MODULE = "engage_milter.main"


class ProcError(RuntimeError):
    """A daemon did not start or misbehaved; the message carries its log tail."""


# --------------------------------------------------------------------------- helpers

def session_dir(prefix: str = "engage-tests-") -> Path:
    """A fresh directory under /tmp that unprivileged Postfix users can traverse."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o755)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    """True when a socket listens on PORT (127.0.0.1 or any address), without connecting.

    Reads /proc/net/tcp{,6} so probing never opens a session with the daemon.
    """
    return bool(listening_inodes(port))


def listening_inodes(port: int) -> set[str]:
    """The socket inodes listening on PORT (from /proc/net/tcp{,6})."""
    want = f"{port:04X}"
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                next(handle)
                for line in handle:
                    fields = line.split()
                    if fields[1].rsplit(":", 1)[1] == want and fields[3] == "0A":
                        found.add(fields[9])
        except FileNotFoundError:
            continue
    return found


def owns_socket(pid: int, inodes: set[str]) -> bool:
    """Whether process PID holds one of these socket inodes (a listener of its own, not
    another process's that happens to sit on a port we picked)."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return True
    except OSError:
        return False
    return False


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def crlf_to_lf(data: bytes) -> bytes:
    """SMTP sends CRLF; Postfix stores and delivers LF. Compare after this."""
    return data.replace(b"\r\n", b"\n")


def split_message(raw: bytes) -> tuple[bytes, bytes]:
    """(header block, body) of a message with CRLF or LF line endings."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, body = raw.partition(sep)
        if found:
            return head, body
    return raw, b""


def stop_process(proc: "subprocess.Popen[bytes]", timeout: float = 15) -> Optional[int]:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


# --------------------------------------------------------------------------- Redis

class RedisServer:
    """A private redis-server (AOF on, like production) that tests may stop and restart.

    ``url``, ``port``, ``host``; ``start()``, ``stop()``, ``running``, ``log_text()``.
    Restarting keeps the port and the data directory, so data written before
    ``stop()`` is there again after ``start()``.
    """

    host = "127.0.0.1"

    def __init__(self, workdir: Path, port: Optional[int] = None,
                 extra_args: Sequence[str] = ()) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.log_path = self.workdir / "redis.log"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.started_once = False
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(binary):
            raise ProcError("redis-server is not installed: run scripts/install-deps")
        self.binary = binary

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 15) -> "RedisServer":
        """Start and wait until this very process answers. Another test session on this
        machine may have taken the port since it was picked: then our redis-server exits
        and a PING would be answered by theirs (whose data our tests would flush), so only
        our own process id counts. The first start moves to another free port then; a
        restart keeps the port (clients hold the URL) and fails."""
        if self.running:
            return self
        first = not self.started_once
        for _ in range(5 if first else 1):
            if self._start_once(timeout):
                self.started_once = True
                return self
            if not first:
                break
            self._pick_ports()
        raise ProcError(f"redis-server on {self.port} did not start:\n{tail(self.log_path)}")

    def _pick_ports(self) -> None:
        self.port = free_port()

    def _arguments(self) -> list[str]:
        return list(self.extra_args)

    def _start_once(self, timeout: float) -> bool:
        self.proc = subprocess.Popen(
            [self.binary, "--bind", self.host, "--port", str(self.port),
             "--dir", str(self.workdir), "--appendonly", "yes", "--save", "",
             "--hash-max-listpack-value", "256",  # engage doctor's advice (RECORD_VALUES)
             "--daemonize", "no", "--logfile", str(self.log_path), *self._arguments()],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self._ready_pid() == self.proc.pid:
                return True
            time.sleep(0.02)
        self.stop()
        return False

    def _ready_pid(self) -> Optional[int]:
        """process_id of whatever answers on the port once it has loaded its data (None:
        nothing answers, or it is still loading the AOF and would answer -LOADING)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as sock:
                sock.sendall(b"INFO\r\n")
                reply = b""
                while b"loading:" not in reply or not reply.endswith(b"\r\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
        except OSError:
            return None
        found = re.search(rb"process_id:(\d+)", reply)
        if found is None or b"\r\nloading:0\r\n" not in reply:
            return None
        return int(found.group(1))

    def stop(self, timeout: float = 10) -> None:
        """Shut down (SIGTERM: Redis fsyncs the AOF and exits) and wait until it is gone."""
        if self.proc is not None:
            stop_process(self.proc, timeout)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL: a crash (no AOF fsync, no goodbye to replicas or the cluster bus)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# What docs/operations.md advises for a cluster with replicas (its redis.conf block; a
# test checks they agree): a failover within seconds, and the other masters' shards
# served while one master is down (with the default, yes, the whole cluster stops).
ADVISED_CLUSTER_CONFIG = (("cluster-node-timeout", "2000"), ("cluster-require-full-coverage", "no"))


class ClusterNode(RedisServer):
    """A redis-server with cluster mode on. Its bus port is set with ``cluster-port``
    (Redis >= 7) so it never lands above 65535 as port + 10000 could, and is picked
    again with the port when a first start finds either taken."""

    def __init__(self, workdir: Path, config: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(workdir, extra_args=[
            "--cluster-enabled", "yes", "--cluster-config-file", str(Path(workdir) / "nodes.conf"),
            # A replica syncs at once (the default waits 5 s for more replicas to join).
            "--repl-diskless-sync-delay", "0",
            *(arg for name, value in config for arg in (f"--{name}", value))])
        self.bus_port = free_port()

    def _pick_ports(self) -> None:
        super()._pick_ports()
        self.bus_port = free_port()

    def _arguments(self) -> list[str]:
        return [*super()._arguments(), "--cluster-port", str(self.bus_port)]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class RedisClusterServers:
    """A Redis Cluster of ``masters`` private redis-servers on 127.0.0.1, each with
    ``replicas`` replicas (AOF on, as every RedisServer; ``config``: redis.conf lines for
    every node, as (name, value); ADVISED_CLUSTER_CONFIG is what the docs advise).

    ``url`` is engage's ``redis+cluster://`` URL of the first node, ``urls`` every
    node's plain URL, ``nodes`` the ClusterNode objects; ``start()`` (returns once every
    node says cluster_state:ok and every replica is in sync), ``stop()``, ``flush()``
    (FLUSHALL on every master). For failover tests: ``masters()``, ``master_of(slot)``,
    ``replicas_of(master)``, ``kill(node)`` (SIGKILL), ``wait_ok()``, ``wait_in_sync()``,
    ``checkpoint(master)``.
    """

    host = "127.0.0.1"

    def __init__(self, workdir: Path, masters: int = 3, replicas: int = 0,
                 config: Sequence[tuple[str, str]] = (("cluster-node-timeout", "5000"),)
                 ) -> None:
        self.workdir = Path(workdir)
        self.replicas = replicas
        self.nodes = [ClusterNode(self.workdir / f"node-{i}", config)
                      for i in range(masters * (1 + replicas))]

    @property
    def url(self) -> str:
        return f"redis+cluster://{self.host}:{self.nodes[0].port}/0"

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self, timeout: float = 60) -> "RedisClusterServers":
        try:
            for node in self.nodes:
                node.start()
            if self.count >= 3:
                self._create(timeout)
            else:  # redis-cli --cluster create wants 3 masters at least
                self._create_by_hand(timeout)
            deadline = time.monotonic() + timeout
            self.wait_ok(deadline - time.monotonic(), known=len(self.nodes))
            self.wait_in_sync(deadline - time.monotonic())
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def count(self) -> int:
        """How many masters it was made with."""
        return len(self.nodes) // (1 + self.replicas)

    def _create(self, timeout: float) -> None:
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        done = subprocess.run(
            [cli, "--cluster", "create", *(node.address for node in self.nodes),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        if done.returncode != 0:
            raise ProcError(f"redis-cli --cluster create failed:\n"
                            f"{done.stdout.decode(errors='replace')}"
                            f"{done.stderr.decode(errors='replace')}")

    def _create_by_hand(self, timeout: float) -> None:
        """What redis-cli does, for 1 or 2 masters: slots split evenly over the first
        ``count`` nodes (each its own config epoch), every node met, the others made
        replicas of the masters in turn."""
        masters = self.nodes[:self.count]
        for n, node in enumerate(masters):
            low, high = n * 16384 // len(masters), (n + 1) * 16384 // len(masters) - 1
            self._ask(node, "CLUSTER", "ADDSLOTSRANGE", str(low), str(high))
            self._ask(node, "CLUSTER", "SET-CONFIG-EPOCH", str(n + 1))
        for node in self.nodes[1:]:
            self._ask(self.nodes[0], "CLUSTER", "MEET", node.host, str(node.port),
                      str(node.bus_port))

        def unknown() -> Optional[str]:
            for node in self.nodes:
                known = self.cluster_info(node).get("cluster_known_nodes")
                if known != str(len(self.nodes)):
                    return f"{node.address} knows {known} node(s)"
            return None
        self._wait(unknown, timeout)
        for n, node in enumerate(self.nodes[self.count:]):
            master_id = self._ask(masters[n % len(masters)], "CLUSTER", "MYID").decode()
            # Refused ("not a master" in its view) until the master's slots reached it.
            self._wait(lambda node=node, master_id=master_id: None if self._ask(
                node, "CLUSTER", "REPLICATE", master_id) else f"{node.address} cannot "
                f"replicate {master_id}", timeout)

    # -- state, read from the nodes themselves
    def _client(self, node: RedisServer) -> Any:
        import redis

        return redis.Redis(host=node.host, port=node.port, socket_timeout=2,
                           socket_connect_timeout=1)

    def _ask(self, node: RedisServer, *command: str) -> Any:
        """One command to one node; None when it does not answer."""
        import redis

        client = self._client(node)
        try:
            return client.execute_command(*command)
        except redis.RedisError:
            return None
        finally:
            client.close()

    def _wait(self, ready: Callable[[], Optional[str]], timeout: float) -> None:
        """Poll ``ready`` (None: ready, else what is still missing) until ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            missing = ready()
            if missing is None:
                return
            if time.monotonic() > deadline:
                raise ProcError(f"the Redis Cluster was not ready within {timeout:.0f}s: "
                                f"{missing}")
            time.sleep(0.05)

    def cluster_info(self, node: RedisServer) -> dict[str, str]:
        reply = self._ask(node, "CLUSTER", "INFO")
        if reply is None:
            return {}
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {key: value.strip() for key, value in pairs}

    def wait_ok(self, timeout: float = 30, known: Optional[int] = None) -> None:
        """Until every running node says cluster_state:ok with all 16384 slots served by
        running masters (after a kill: a replica took over), and knows ``known`` nodes
        when given (the cluster has finished joining)."""
        def missing() -> Optional[str]:
            for node in self.nodes:
                if not node.running:
                    continue
                info = self.cluster_info(node)
                if (info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384"
                        or (known is not None and info.get("cluster_known_nodes") != str(known))):
                    return f"{node.address} says {info or 'nothing'}"
                dead = [address for address, (master, ranges) in self.topology(node).items()
                        if not master and ranges and not self._node(address).running]
                if dead:
                    return f"{node.address} still sees the stopped master(s) {dead} serve slots"
            return None
        self._wait(missing, timeout)

    def topology(self, seen_by: Optional[RedisServer] = None
                 ) -> dict[str, tuple[str, list[tuple[int, int]]]]:
        """{node address: (its master's address or "" for a master, its slot ranges)} as
        ``seen_by`` (or the first running node) sees it now (CLUSTER NODES), the nodes it
        flags as failed left out."""
        for node in [seen_by] if seen_by else self.nodes:
            reply = self._ask(node, "CLUSTER", "NODES") if node.running else None
            if reply is None:
                continue
            text = reply.decode() if isinstance(reply, bytes) else str(reply)
            rows = [line.split() for line in text.splitlines() if line.strip()]
            address = {row[0]: row[1].split("@")[0] for row in rows}
            found = {}
            for row in rows:
                if "fail" in row[2].split(","):
                    continue
                ranges = [(int(part.split("-")[0]), int(part.split("-")[-1]))
                          for part in row[8:] if part[0].isdigit()]
                found[address[row[0]]] = ("" if row[3] == "-" else address.get(row[3], "?"),
                                          ranges)
            return found
        raise ProcError("no node of the Redis Cluster answers")

    def _node(self, address: str) -> ClusterNode:
        return next(node for node in self.nodes if node.address == address)

    def masters(self) -> list[ClusterNode]:
        return [self._node(address) for address, (master, ranges) in self.topology().items()
                if not master and ranges]

    def master_of(self, slot: int) -> ClusterNode:
        for address, (master, ranges) in self.topology().items():
            if not master and any(low <= slot <= high for low, high in ranges):
                return self._node(address)
        raise ProcError(f"no master serves slot {slot}")

    def replicas_of(self, master: RedisServer) -> list[ClusterNode]:
        return [self._node(address) for address, (of, _) in self.topology().items()
                if of == f"{master.host}:{master.port}"]

    def wait_in_sync(self, timeout: float = 30) -> None:
        """Until every running master has its ``replicas`` replicas online and holding
        every write it acknowledged (``checkpoint``: comparing offsets would wait for
        quiet, since a replica reports its offset only once a second)."""
        deadline = time.monotonic() + timeout

        def missing() -> Optional[str]:
            for master in self.masters():
                info = self._ask(master, "INFO", "replication") or {}
                online = [name for name, value in info.items() if re.fullmatch(r"slave\d+", name)
                          and value.get("state") == "online"]
                if len(online) < self.replicas:
                    return f"master {master.address} has {len(online)} replica(s) online: {info}"
            return None
        self._wait(missing, timeout)
        for master in self.masters():
            self.checkpoint(master, max(deadline - time.monotonic(), 1))

    def checkpoint(self, master: ClusterNode, timeout: float = 5) -> None:
        """Return once ``master``'s replicas hold every write it acknowledged before this
        call, under load too: one write of our own in a slot it serves, then WAIT, which
        waits for that write's offset and so for all before it (then the key goes)."""
        from redis.crc import key_slot

        ranges = self.topology()[master.address][1]
        probe = next(name for name in (f"engage-tests-probe-{n}" for n in range(100_000))
                     if any(low <= key_slot(name.encode()) <= high for low, high in ranges))
        client = self._client(master)
        try:
            client.set(probe, "1")
            acked = client.execute_command("WAIT", self.replicas, int(timeout * 1000))
            client.delete(probe)
        finally:
            client.close()
        if acked < self.replicas:
            raise ProcError(f"{acked} of {self.replicas} replica(s) of {master.address} "
                            f"acknowledged its writes within {timeout:.0f}s")

    # -- control
    def kill(self, node: RedisServer) -> None:
        node.kill()

    def flush(self) -> None:
        for node in self.masters():
            if self._ask(node, "FLUSHALL") is None:
                raise ProcError(f"FLUSHALL failed on {node.address}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


# --------------------------------------------------------------------------- milter

class MilterProcess:
    """One milter process (by default ``python -m engage_milter.main``).

    ``socket`` (pymilter syntax, what ENGAGE_MILTER_SOCKET says), ``postfix_socket``
    (Postfix syntax), ``port`` (None for a unix socket), ``env`` (the ENGAGE_* it got),
    ``pid``, ``log_path``, ``log_text()``, ``alive()``, ``returncode``,
    ``stop()`` (SIGTERM, waits; up to 5 s for libmilter), ``terminate()`` (SIGTERM, no
    wait), ``kill()`` (SIGKILL, waits), ``wait_exit(timeout)``.
    """

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = Path(log_path)
        self.socket = self.env["ENGAGE_MILTER_SOCKET"]
        self.port: Optional[int] = None
        self.unix_path: Optional[Path] = None
        match = re.fullmatch(r"inet6?:(\d+)(@.*)?", self.socket)
        if match:
            self.port = int(match.group(1))
            self.postfix_socket = f"inet:127.0.0.1:{self.port}"
        elif re.fullmatch(r"(unix|local):/.+", self.socket):
            self.unix_path = Path(self.socket.split(":", 1)[1])
            self.postfix_socket = f"unix:{self.unix_path}"
        else:
            self.postfix_socket = self.socket  # invalid on purpose (config error tests)
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self, wait: bool = True, timeout: float = 20) -> "MilterProcess":
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGE_")}
        full_env.update(self.env)
        pythonpath = [str(REPO / "milter"), str(REPO / "redirector")]
        if full_env.get("PYTHONPATH"):
            pythonpath.append(full_env["PYTHONPATH"])
        full_env["PYTHONPATH"] = os.pathsep.join(pythonpath)
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, env=full_env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        if wait:
            self.wait_listening(timeout)
        return self

    def _ready(self) -> bool:
        if self.port is not None:  # our own listener: a port picked by free_port may be taken
            return self.proc is not None and owns_socket(self.proc.pid, listening_inodes(self.port))
        if self.unix_path is not None and self.unix_path.exists():
            with socket.socket(socket.AF_UNIX) as sock:
                try:
                    sock.connect(str(self.unix_path))
                    return True
                except OSError:
                    return False
        return False

    def wait_listening(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready():
                return
            if not self.alive():
                raise ProcError(f"milter {self.argv} exited with {self.returncode} before "
                                f"listening on {self.socket}:\n{self.log_text()[-4000:]}")
            time.sleep(0.02)
        self.kill()
        raise ProcError(f"milter {self.argv} did not listen on {self.socket} within "
                        f"{timeout}s:\n{self.log_text()[-4000:]}")

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> Optional[int]:
        return self.proc.poll() if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_exit(self, timeout: float = 15) -> int:
        assert self.proc is not None, "milter was never started"
        return self.proc.wait(timeout)

    def terminate(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 10) -> Optional[int]:
        """SIGTERM and wait (libmilter takes up to 5 s), SIGKILL after ``timeout``."""
        return stop_process(self.proc, timeout) if self.proc else None

    def kill(self) -> Optional[int]:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait(10)


# --------------------------------------------------------------------------- Postfix

MilterSpec = Union[None, str, MilterProcess]

_MAILDIR_NAME = re.compile(r"^(\d+)\.V[0-9a-fA-F]+I[0-9a-fA-F]+M(\d+)\.")


def _milter_socket(milter: MilterSpec) -> str:
    if milter is None:
        return "none"
    if isinstance(milter, MilterProcess):
        return milter.socket
    return str(milter)


class PostfixSandbox:
    """A private Postfix (scripts/sandbox-postfix) on 127.0.0.1:``smtp_port``.

    Mail goes into the Maildir ``sink`` (files in ``sink/new``), or to
    ``smtp:[127.0.0.1]:relay_port`` when started with ``relay_port``.
    ``start(milter)``, ``set_milter(milter)``, ``reset()``, ``stop()``,
    ``send(msg, mail_from, rcpts)``, ``wait_delivered(count, timeout)``,
    ``delivered_paths()``, ``queue()``, ``queue_empty()``, ``flush()``, ``log_text()``,
    ``mark_log()``, ``postconf(name=value, ...)`` (private instances), ``sendmail(msg,
    mail_from, rcpts)`` (local submission through pickup).
    A milter is given as a MilterProcess, a socket string (pymilter or Postfix syntax)
    or None.
    """

    def __init__(self, base: Path, smtp_port: Optional[int] = None) -> None:
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.dir = self.base / "pf"
        self.sink = self.base / "sink"
        self.smtp_port = smtp_port or free_port()
        self.milter_socket = "none"
        self.relay_port: Optional[int] = None
        self.log_path = self.dir / "log" / "postfix.log"
        self._log_offset = 0
        self.started = False

    # -- control
    def _script(self, *args: str, timeout: float = 60) -> str:
        result = subprocess.run(["bash", str(SANDBOX_POSTFIX), *args], stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise ProcError(f"sandbox-postfix {' '.join(args)} failed ({result.returncode}):\n"
                            f"{result.stdout}{result.stderr}\n--- {self.log_path}:\n"
                            f"{tail(self.log_path)}")
        return result.stdout

    def start(self, milter: MilterSpec = None, relay_port: Optional[int] = None) -> "PostfixSandbox":
        self.milter_socket = _milter_socket(milter)
        self.relay_port = relay_port
        relay = ["--relay", str(relay_port)] if relay_port else []
        sink = "-" if relay_port else str(self.sink)
        for attempt in range(3):
            try:
                self._script("start", *relay, str(self.dir), str(self.smtp_port),
                             self.milter_socket, sink)
                break
            except ProcError as exc:
                # Someone took the free port between free_port() and the bind: try another.
                if "already in use" not in str(exc) or attempt == 2:
                    raise
                self.smtp_port = free_port()
        self.started = True
        self.mark_log()
        return self

    def set_milter(self, milter: MilterSpec) -> None:
        """Point smtpd_milters at another milter (or none) and reload; no-op if unchanged."""
        socket_ = _milter_socket(milter)
        if socket_ != self.milter_socket:
            self._script("milter", str(self.dir), socket_)
            self.milter_socket = socket_

    def reset(self) -> None:
        """Drop every queued message and empty the sink: a clean slate for the next test."""
        self._script("purge", str(self.dir))
        for sub in ("new", "cur", "tmp"):
            folder = self.sink / sub
            if folder.is_dir():
                for path in folder.iterdir():
                    path.unlink()
        self.mark_log()

    def stop(self) -> None:
        if self.started:
            self._script("stop", str(self.dir))
            self.started = False

    # -- mail
    def send(self, msg: Union[bytes, str], mail_from: str = "sender@example.com",
             rcpts: Union[str, Iterable[str]] = ("rcpt@example.org",), *,
             timeout: float = 60) -> dict:
        """Submit by SMTP; returns smtplib's dict of refused recipients ({} = all accepted).

        SMTP errors raise as usual (SMTPSenderRefused for the 451 of a milter that is
        down, SMTPDataError for a 5xx/4xx after DATA, ...).
        """
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=timeout) as smtp:
            return smtp.sendmail(mail_from, list(rcpts), msg)

    def delivered_paths(self) -> list[Path]:
        """Files in sink/new, oldest delivery first (Maildir name: seconds, then microseconds)."""
        folder = self.sink / "new"
        if not folder.is_dir():
            return []

        def key(path: Path) -> tuple[int, int, str]:
            match = _MAILDIR_NAME.match(path.name)
            if match:
                return int(match.group(1)), int(match.group(2)), path.name
            stat = path.stat()
            return int(stat.st_mtime), stat.st_mtime_ns % 1_000_000_000 // 1000, path.name

        return sorted(folder.iterdir(), key=key)

    def wait_delivered(self, count: int = 1, timeout: float = 20) -> list[bytes]:
        """Wait until sink/new holds at least ``count`` files; return all their bytes.

        One file per recipient. On timeout, fails with the queue and the log tail.
        """
        deadline = time.monotonic() + timeout
        while True:
            paths = self.delivered_paths()
            if len(paths) >= count:
                return [path.read_bytes() for path in paths]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(paths)} of {count} message(s) delivered to {self.sink}/new within "
                    f"{timeout}s\n--- queue:\n{self.queue()}\n--- postfix log:\n"
                    f"{self.log_text()[-4000:]}")
            time.sleep(0.02)

    def queue(self) -> str:
        """``postqueue -p`` of this instance (what is still queued and why)."""
        return self._postqueue("-p")

    def queue_empty(self) -> bool:
        return "Mail queue is empty" in self.queue()

    def flush(self) -> None:
        """``postqueue -f``: retry deferred mail now, whatever its backoff time."""
        self._postqueue("-f")

    def _postqueue(self, *args: str) -> str:
        result = subprocess.run(["postqueue", "-c", str(self.dir / "etc"), *args],
                                capture_output=True, text=True,
                                env=dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin"))
        return result.stdout + result.stderr

    def postconf(self, **settings: str) -> None:
        """Set main.cf parameters (``postconf -e``) and reload. Meant for private
        instances (``make_postfix(private=True)``): a later ``start()`` rewrites main.cf."""
        subprocess.run(["postconf", "-c", str(self.dir / "etc"), "-e",
                        *(f"{name} = {value}" for name, value in settings.items())],
                       check=True, capture_output=True)
        # A main.cf younger than a few seconds makes `postfix reload` pause ~2 s.
        past = time.time() - 5
        os.utime(self.dir / "etc" / "main.cf", (past, past))
        self._script("reload", str(self.dir))

    def sendmail(self, msg: bytes, mail_from: str, rcpts: Iterable[str]) -> None:
        """Submit like a local program: sendmail(1) -> postdrop -> pickup -> cleanup (where
        non_smtpd_milters apply), not by SMTP."""
        subprocess.run(["/usr/sbin/sendmail", "-C", str(self.dir / "etc"), "-f", mail_from,
                        "--", *rcpts], input=msg, check=True, capture_output=True, timeout=60)

    def mark_log(self) -> None:
        """From now on ``log_text()`` returns only what is logged after this point."""
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_text(self, everything: bool = False) -> str:
        """The Postfix log since the last ``mark_log()`` (``reset()`` marks), or all of it."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as handle:
            if not everything:
                handle.seek(self._log_offset)
            return handle.read().decode(errors="replace")


def milter_argv(module: str = MILTER_MODULE) -> list[str]:
    return [sys.executable, "-m", module]


# --------------------------------------------------------------------------- redirector

GUNICORN_CONF = REPO / "etc" / "engage" / "gunicorn.conf.py"
NGINX_TEMPLATE = REPO / "etc" / "nginx" / "sandbox-nginx.conf.in"


def http_get(url: str, headers: Optional[Mapping[str, str]] = None, *,
             source: Optional[str] = None, method: str = "GET",
             timeout: float = 10) -> tuple[int, Mapping[str, str], bytes]:
    """One plain HTTP request, redirects NOT followed: (status, headers, body).

    ``source`` is the local address to connect from (any 127.x.y.z works on Linux), so a
    test can tell the client's address from the proxy's (127.0.0.1).
    """
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    source_address = (source, 0) if source else None
    if parts.scheme == "https":  # our own test certificates: no verification here
        import ssl
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname or "127.0.0.1", parts.port or 443, timeout=timeout,
            source_address=source_address, context=ssl._create_unverified_context())
    else:
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80,
                                                timeout=timeout, source_address=source_address)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, path or "/", headers=dict(headers or {}))
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def _wait_http(url: str, deadline: float, alive: Callable[[], bool]) -> bool:
    while time.monotonic() < deadline and alive():
        try:
            if http_get(url, timeout=2)[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


class _Foreground:
    """A daemon run in the foreground as ``self.proc``."""

    proc: Optional["subprocess.Popen[bytes]"] = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout)
            self.proc = None


class Redirector(_Foreground):
    """The redirector as production runs it: gunicorn with etc/engage/gunicorn.conf.py
    serving ``engage.web.app:create_app()``, on 127.0.0.1:``port`` (2 workers x 4 threads).

    ``tls`` (certificate file, key file) serves HTTPS instead (``url`` is then https).
    ``env`` are its ENGAGE_* variables (nothing else of the caller's ENGAGE_* leaks in;
    without ENGAGE_CONFIG it reads no settings file, not even an installed
    /etc/engage/engage.conf); ``url`` (http://127.0.0.1:port), ``public_url`` (what recipients use: ``nginx.url``
    when an NginxProxy is in front, else ``url``), ``api_key`` (the first of
    ENGAGE_API_KEYS), ``start()`` (returns once /healthz answers 200), ``stop()``,
    ``alive()``, ``log_text()``.
    """

    def __init__(self, env: Mapping[str, str], log_path: Path, port: Optional[int] = None,
                 workers: int = 2, threads: int = 4,
                 tls: Optional[tuple[Path, Path]] = None) -> None:
        self.tls = tls
        self.env = {"ENGAGE_CONFIG": os.devnull, **env}
        self.log_path = Path(log_path)
        self.port = port or free_port()
        self.workers, self.threads = workers, threads
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.nginx: Optional[NginxProxy] = None

    @property
    def public_url(self) -> str:
        return self.nginx.url if self.nginx else self.url

    @property
    def api_key(self) -> str:
        return self.env.get("ENGAGE_API_KEYS", "").split(",")[0].strip()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> "Redirector":
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGE_")}
        full_env.update(self.env)
        pythonpath = [str(REPO / "redirector")]
        if full_env.get("PYTHONPATH"):
            pythonpath.append(full_env["PYTHONPATH"])
        full_env["PYTHONPATH"] = os.pathsep.join(pythonpath)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF),
                 "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
                 "--threads", str(self.threads),
                 *(["--certfile", str(self.tls[0]), "--keyfile", str(self.tls[1])]
                   if self.tls else []), "engage.web.app:create_app()"],
                env=full_env, cwd=str(REPO), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        if not _wait_http(f"{self.url}/healthz", time.monotonic() + timeout, self.alive):
            self.stop()
            raise ProcError(f"gunicorn on {self.port} did not answer /healthz:\n"
                            f"{tail(self.log_path)}")
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def nginx_binary() -> Optional[str]:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    return found if os.path.exists(found) else None


def render_nginx_conf(listen: str, upstream: str) -> str:
    """etc/nginx/sandbox-nginx.conf.in with its two placeholders filled (as run-sandbox does)."""
    return NGINX_TEMPLATE.read_text().replace("@LISTEN@", listen).replace("@UPSTREAM@", upstream)


class NginxProxy(_Foreground):
    """A private nginx from etc/nginx/sandbox-nginx.conf.in: 127.0.0.1:``port`` proxying to
    ``upstream`` (host:port), prefix ``workdir`` (conf, pid, logs, temp files).

    ``url``, ``start()`` (returns once /healthz answers through it), ``stop()``,
    ``alive()``, ``log_text()`` (error log), ``access_log_text()``.
    """

    def __init__(self, workdir: Path, upstream: str, port: Optional[int] = None) -> None:
        self.workdir = Path(workdir)
        self.upstream = upstream
        self.port = port or free_port()
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> "NginxProxy":
        binary = nginx_binary()
        if binary is None:
            raise ProcError("nginx is not installed: run scripts/install-deps")
        (self.workdir / "tmp").mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "nginx.conf"
        conf.write_text(render_nginx_conf(f"127.0.0.1:{self.port}", self.upstream))
        error_log = self.workdir / "error.log"
        # daemon off: the Popen is the master, so stop() is a plain SIGTERM (fast shutdown).
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf), "-p", f"{self.workdir}/", "-e", str(error_log),
             "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        if not _wait_http(f"{self.url}/healthz", time.monotonic() + timeout, self.alive):
            self.stop()
            raise ProcError(f"nginx on {self.port} did not proxy /healthz:\n{tail(error_log)}")
        return self

    def log_text(self) -> str:
        path = self.workdir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log_text(self) -> str:
        path = self.workdir / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""
