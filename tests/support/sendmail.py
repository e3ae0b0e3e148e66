"""A real Sendmail (Debian's sendmail-bin), unpacked, never installed, on 127.0.0.1.

Debian's sendmail packages conflict with postfix (both are the system MTA), so the .debs
are fetched with ``apt-get download`` (cached in /var/tmp/engage-sendmail) and unpacked
with ``dpkg -x``; nothing is registered with dpkg. ``SandboxSendmail`` writes a
sendmail.mc from sendmail-cf's macros with ``INPUT_MAIL_FILTER`` for the milter under
test, builds sendmail.cf with m4, and runs ``sendmail -bD`` (foreground daemon) on a
free loopback port, relaying everything to ``relay_port`` (e.g. a sandbox Postfix).

Facts learnt on Debian 12 (sendmail 8.17.1.9):
- At start-up sendmail canonicalises the host name before reading its configuration;
  a name without a dot that does not resolve to one ("vm", container names) makes it
  sleep 60 s ("My unqualified host name ... unknown; sleeping for retry"). So it runs
  in its own UTS namespace (``unshare --uts``, root) with a dotted host name.
- The binary needs libwrap0, liblockfile1, libnsl2, libdb5.3, libldap-2.5-0 and
  libsasl2-2 (scripts/install-deps installs them) but no other file of sendmail-base.
- An empty confCW_FILE/confCT_FILE/confCR_FILE gives "fileclass: missing file name":
  they point at empty files here.
- ``sendmail -bs`` with the whole session piped in at once answers "554 5.5.0 SMTP
  protocol error" (input before the greeting): a daemon and a real SMTP client it is.
- Milters see Sendmail's queue id as macro ``i`` (sent with MAIL FROM by default).
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from support.procs import ProcError, free_port, listening, tail

CACHE = Path("/var/tmp/engage-sendmail")
PACKAGES = ("sendmail-bin", "sendmail-cf")
HOSTNAME = "sendmail-sandbox.engage.test"

MC_TEMPLATE = """\
divert(-1)
include(`{cf}/m4/cf.m4')
divert(0)dnl
VERSIONID(`engage-milter tests: sandbox Sendmail')dnl
OSTYPE(`linux')dnl
define(`confDOMAIN_NAME', `{hostname}')dnl
define(`QUEUE_DIR', `{dir}/queue')dnl
define(`STATUS_FILE', `{dir}/sendmail.st')dnl
define(`confHOST_STATUS_DIRECTORY', `')dnl
define(`confPID_FILE', `{dir}/sendmail.pid')dnl
define(`confHELP_FILE', `')dnl
define(`ALIAS_FILE', `')dnl
define(`confCW_FILE', `-o {dir}/local-host-names')dnl
define(`confCT_FILE', `-o {dir}/trusted-users')dnl
define(`confCR_FILE', `-o {dir}/relay-domains')dnl
define(`confDEAD_LETTER_DROP', `{dir}/dead.letter')dnl
define(`confSERVICE_SWITCH_FILE', `{dir}/service.switch')dnl
define(`confDONT_PROBE_INTERFACES', `True')dnl
define(`confDONT_BLAME_SENDMAIL', `GroupWritableDirPathSafe')dnl
define(`confBIND_OPTS', `-DNSRCH -DEFNAMES')dnl
dnl Deliver before answering the end of DATA: a test sees the result at once.
define(`confDELIVERY_MODE', `interactive')dnl
define(`confLOG_LEVEL', `14')dnl
define(`confMILTER_LOG_LEVEL', `14')dnl
dnl Everything goes to the relay on 127.0.0.1:{relay_port}; no DNS, no local mailboxes.
define(`SMART_HOST', `relay:[127.0.0.1]')dnl
define(`RELAY_MAILER_ARGS', `TCP $h {relay_port}')dnl
define(`ESMTP_MAILER_ARGS', `TCP $h {relay_port}')dnl
FEATURE(`nocanonify')dnl
FEATURE(`promiscuous_relay')dnl
FEATURE(`accept_unresolvable_domains')dnl
FEATURE(`accept_unqualified_senders')dnl
DAEMON_OPTIONS(`Port={port}, Addr=127.0.0.1, Name=MTA')dnl
dnl The engage-milter lines: by default as in etc/sendmail/engage-milter.mc; the
dnl snippet tests put each snippet of docs/ and etc/ here.
{filters}
MAILER(`smtp')dnl
"""
DEFAULT_FILTERS = "INPUT_MAIL_FILTER(`engage', `S={milter}, F=T, T=S:30s;R:2m;E:10m')dnl"


def _apt_download(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o777)  # apt downloads as _apt when it can write there (no warning)
    for attempt in range(2):
        done = subprocess.run(["apt-get", "download", *PACKAGES], cwd=folder,
                              capture_output=True, text=True, timeout=300)
        if done.returncode == 0:
            return
        if attempt == 0:  # stale package lists (a fresh machine): update once
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600)
    raise ProcError(f"apt-get download {' '.join(PACKAGES)} failed:\n{done.stdout}{done.stderr}")


def unpack_sendmail(target: Path) -> Path:
    """sendmail-bin and sendmail-cf unpacked under TARGET (downloaded once, then cached)."""
    debs = {name: sorted(glob.glob(str(CACHE / f"{name}_*.deb"))) for name in PACKAGES}
    if not all(debs.values()):
        _apt_download(CACHE)
        debs = {name: sorted(glob.glob(str(CACHE / f"{name}_*.deb"))) for name in PACKAGES}
    for files in debs.values():
        subprocess.run(["dpkg-deb", "-x", files[-1], str(target)], check=True)
    binary = target / "usr" / "libexec" / "sendmail" / "sendmail"
    if not binary.exists():
        raise ProcError(f"no sendmail binary in {debs}")
    return target


class SandboxSendmail:
    """``start()``, ``stop()``, ``port``, ``log_text()``; ``root`` is the unpacked tree.
    ``filters``: the sendmail.mc lines that add the milter (default: DEFAULT_FILTERS for
    ``milter_socket``)."""

    def __init__(self, workdir: Path, root: Path, milter_socket: str, relay_port: int,
                 filters: str | None = None) -> None:
        self.dir = Path(workdir)
        self.root = Path(root)
        self.milter_socket = milter_socket
        self.relay_port = relay_port
        self.filters = filters if filters is not None else DEFAULT_FILTERS.format(milter=milter_socket)
        self.port = free_port()
        self.log_path = self.dir / "sendmail.out"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def binary(self) -> Path:
        return self.root / "usr" / "libexec" / "sendmail" / "sendmail"

    def write_config(self) -> Path:
        (self.dir / "queue").mkdir(parents=True, exist_ok=True)
        (self.dir / "queue").chmod(0o700)
        for name in ("local-host-names", "trusted-users", "relay-domains"):
            (self.dir / name).touch()
        (self.dir / "service.switch").write_text("hosts files\naliases files\n")
        mc = self.dir / "sendmail.mc"
        mc.write_text(MC_TEMPLATE.format(
            cf=self.root / "usr" / "share" / "sendmail" / "cf", dir=self.dir,
            hostname=HOSTNAME, relay_port=self.relay_port, port=self.port,
            filters=self.filters.rstrip("\n")))
        cf = self.dir / "sendmail.cf"
        with open(cf, "wb") as out:
            done = subprocess.run(["m4", str(mc)], stdout=out, stderr=subprocess.PIPE)
        # promiscuous_relay prints a warning on stderr; only the exit status counts.
        if done.returncode != 0:
            raise ProcError(f"m4 {mc} failed: {done.stderr.decode(errors='replace')}")
        return cf

    def start(self, timeout: float = 20) -> SandboxSendmail:
        cf = self.write_config()
        script = f'hostname {HOSTNAME} && exec "$0" -C "$1" -bD -L sandbox-sendmail'
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["unshare", "--uts", "sh", "-c", script, str(self.binary), str(cf)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if listening(self.port):
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise ProcError(f"sendmail did not listen on 127.0.0.1:{self.port}:\n{self.log_text()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def log_text(self) -> str:
        return tail(self.log_path, 60)


def can_unshare_uts() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--uts", "true"], capture_output=True).returncode == 0
