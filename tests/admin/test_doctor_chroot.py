"""Breakage 17: a unix milter socket that a chrooted smtpd cannot reach, and advice that
works when followed as written.

A private sandbox Postfix runs smtpd and cleanup chrooted in its queue directory, as
Debian's master.cf does; engage-milter runs as an unprivileged service user with the
unit's UMask=0007, its socket outside the chroot. The doctor must say that all mail is
refused and why, and each of its two alternatives (a TCP socket; a unix socket inside the
chroot, with the directory, the group and the restarts) must, done step by step as
written, let a probe through tracked. The service user is made for the test and removed
after it (the doctor's ``--service-user``), so the host's own engage user is left alone.
"""
from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engage.admin import doctor
from support.doctorstack import PROBE_FROM, PROBE_TO, alternative, diagnose, flat, follow
from support.procs import MilterProcess, free_port, listening

USER = f"engagedr{os.getpid() % 10000}"


@pytest.fixture
def service_user():
    if os.geteuid() != 0:
        pytest.skip("needs root: makes a user and runs Postfix")
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                    "--shell", "/usr/sbin/nologin", USER], check=True, capture_output=True)
    yield USER
    subprocess.run(["gpasswd", "-d", "postfix", USER], capture_output=True)
    for _ in range(50):  # userdel refuses while a process of the user is still exiting
        if subprocess.run(["userdel", USER], capture_output=True).returncode in (0, 6):
            break
        time.sleep(0.1)
    subprocess.run(["groupdel", USER], capture_output=True)
    assert subprocess.run(["getent", "passwd", USER]).returncode != 0, "the test user is left"


def chrooted(postfix) -> None:
    """smtpd and cleanup chrooted, like Debian's master.cf."""
    etc = str(postfix.dir / "etc")
    services = subprocess.run(["postconf", "-c", etc, "-M"], capture_output=True, text=True,
                              check=True).stdout.splitlines()
    smtpd = next(line.split()[0] for line in services if line.split()[1:2] == ["inet"])
    subprocess.run(["postconf", "-c", etc, "-F", f"{smtpd}/inet/chroot = y",
                    "cleanup/unix/chroot = y"], check=True)
    postfix.postconf(non_smtpd_milters="$smtpd_milters")  # and reload


class ServiceMilter:
    """engage-milter as its unit runs it: as USER, UMask=0007, the socket from engage.conf
    (read again at each restart)."""

    def __init__(self, conf: Path, redis_url: str, log: Path) -> None:
        self.conf, self.redis_url, self.log = conf, redis_url, log
        self.process: MilterProcess | None = None

    def restart(self) -> None:
        if self.process is not None:
            self.process.kill()
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(self.conf)
        argv = ["setpriv", "--reuid", USER, "--regid", USER, "--init-groups", "--",
                "sh", "-c", f"umask 0007 && exec {sys.executable} -m engage_milter.main"]
        env = {"ENGAGE_CONFIG": str(self.conf), "ENGAGE_MILTER_SOCKET": parser["milter"]["socket"]}
        self.process = MilterProcess(argv, env, self.log).start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()


@pytest.mark.parametrize("choice", [0, 1], ids=["tcp-socket", "unix-socket-in-the-chroot"])
def test_17_a_unix_socket_outside_the_chroot_and_advice_that_works(
        choice, service_user, engage_tmp, redis_server, postfix_sandbox):
    if choice == 0 and listening(8890):
        pytest.skip("port 8890, the one the advice names, is taken on this host")
    base = Path(engage_tmp) / f"chroot-{free_port()}"
    outside = base / "run"
    outside.mkdir(parents=True)
    subprocess.run(["chown", f"{USER}:{USER}", str(outside)], check=True)
    outside.chmod(0o750)
    conf = base / "engage.conf"
    conf.write_text(f"[milter]\nsocket = unix:{outside}/milter.sock\n[redis]\n"
                    f"url = {redis_server.url}\nkey_prefix = test:\n[tracking]\n"
                    "url = https://click.example.com\n")
    conf.chmod(0o644)
    milter = ServiceMilter(conf, redis_server.url, base / "milter.log")
    milter.restart()
    try:
        postfix = postfix_sandbox(f"unix:{outside}/milter.sock", private=True)
        chrooted(postfix)
        etc = str(postfix.dir / "etc")
        spool = subprocess.run(["postconf", "-c", etc, "-h", "queue_directory"],
                               capture_output=True, text=True, check=True).stdout.strip()
        options = doctor.Options(config=str(conf), postfix_config=etc, service_user=USER,
                                 timeout=3, probe=PROBE_TO, probe_from=PROBE_FROM,
                                 smtp=f"127.0.0.1:{postfix.smtp_port}",
                                 skip=frozenset({"tracking", "nginx", "proxy"}))
        found = diagnose(options)
        error = [f for f in found.findings if f.topic == "postfix" and f.level == "error"][0]
        assert flat(error.text) == (
            f"Postfix's smtpd runs chrooted in {spool}, so for unix:{outside}/milter.sock it "
            f"opens {spool}{outside}/milter.sock, where nothing listens: all mail is refused: "
            "every message it receives by SMTP gets 451 4.7.1 Service unavailable. "
            f"engage-milter listens on {outside}/milter.sock, outside the chroot")
        assert "451 4.7.1" in found.only("error", "probe").text
        assert found.code == 1
        steps = alternative(error.fix, choice)
        assert steps[1] == "systemctl restart engage-milter" if choice == 0 else True
        follow(steps, {"systemctl restart engage-milter": milter.restart})
        found = diagnose(options)
        assert found.problems() == [], found.output
        assert found.only("ok", "probe").text.startswith("Postfix took the probe")
        delivered = postfix.wait_delivered(1)[-1]
        assert b"https://example.com/engage-doctor-probe" not in delivered
        assert re.search(rb"https://click\.example\.com/c/", delivered)
    finally:
        milter.stop()
