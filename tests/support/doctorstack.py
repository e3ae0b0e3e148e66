"""A whole engage installation for ``engage doctor`` tests, and a way to follow its advice.

``Stack``: the real milter, Redis, gunicorn behind nginx (proxy_hops 1, an API key) and a
private sandbox Postfix whose smtpd_milters calls the milter, with the engage.conf that
describes them and an nginx configuration directory whose engage site is enabled. Its
``options()`` point the doctor at all of it, with ``--probe`` through that Postfix. A test
breaks one thing, runs the doctor, and can then ``follow()`` the fix steps the doctor gave,
literally: shell commands run as written, ``in FILE: [section] key = value`` edits the file,
and ``systemctl``/``nginx`` steps map onto the sandbox's daemons (``services``).
"""
from __future__ import annotations

import configparser
import os
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from engage.admin import doctor
from support.procs import MilterProcess, PostfixSandbox, Redirector

POSTCONF = "/usr/sbin/postconf"
API_KEY = "test-api-key-abcdefghij"  # the redirector's key (tests/conftest.py REDIRECTOR_API_KEY)
PROBE_TO, PROBE_FROM = "rcpt@example.org", "probe@example.com"
EDIT = re.compile(r"^in (?P<file>\S+): \[(?P<section>\w+)\] (?P<key>\w+) = (?P<value>\S+)")


def case_dir(engage_tmp: Path, group: str, test_name: str) -> Path:
    """A fresh directory for one test under the session's daemon directory (mode 0755, so
    Postfix's and the service users may walk through it)."""
    path = Path(engage_tmp) / group / re.sub(r"\W", "_", test_name)
    path.mkdir(parents=True)
    return path


def write_settings(path: Path, milter_socket: str, redis_url: str, tracking_url: str,
                   extra: str = "", proxy_hops: int = 1) -> Path:
    path.write_text(f"[milter]\nsocket = {milter_socket}\n[redis]\nurl = {redis_url}\n"
                    f"key_prefix = test:\n[tracking]\nurl = {tracking_url}\n[api]\n"
                    f"keys = {API_KEY}\n[web]\nproxy_hops = {proxy_hops}\n{extra}")
    return path


def nginx_dir(base: Path, site_text: str, enabled: bool = True) -> Path:
    """A Debian-style /etc/nginx: sites-available/engage-redirector.conf, linked or not."""
    (base / "sites-available").mkdir(parents=True, exist_ok=True)
    (base / "sites-enabled").mkdir(exist_ok=True)
    site = base / "sites-available" / "engage-redirector.conf"
    site.write_text(site_text)
    if enabled:
        (base / "sites-enabled" / site.name).symlink_to(site)
    return base


@dataclass
class Stack:
    conf: Path
    milter: MilterProcess
    redirector: Redirector
    postfix: PostfixSandbox
    nginx_dir: Path
    redis_url: str

    @property
    def postfix_config(self) -> str:
        return str(self.postfix.dir / "etc")

    def options(self, **changes: Any) -> doctor.Options:
        base: dict[str, Any] = dict(
            config=str(self.conf), postfix_config=self.postfix_config, postconf=POSTCONF,
            timeout=3.0, nginx_dir=str(self.nginx_dir), probe=PROBE_TO, probe_from=PROBE_FROM,
            smtp=f"127.0.0.1:{self.postfix.smtp_port}")
        base.update(changes)
        return doctor.Options(**base)

    def postconf(self, **settings: str) -> None:
        """Break (or set) main.cf parameters and reload, as an operator would."""
        self.postfix.postconf(**settings)


@dataclass
class Diagnosis:
    findings: list[doctor.Finding]
    code: int
    output: str = field(repr=False, default="")

    def only(self, level: str, topic: str) -> doctor.Finding:
        """The one finding of that level and topic (fails when there are none or several)."""
        found = [f for f in self.findings if f.level == level and f.topic == topic]
        assert len(found) == 1, self.output
        return found[0]

    def problems(self) -> list[tuple[str, str]]:
        return [(f.level, f.topic) for f in self.findings if f.level in (doctor.ERROR, doctor.WARN)]


def diagnose(options: doctor.Options) -> Diagnosis:
    """What `engage doctor` does: run, render, exit status."""
    findings = doctor.run(options)
    return Diagnosis(findings, doctor.exit_status(findings), doctor.render(findings))


def flat(text: str) -> str:
    return " ".join(text.split())


def alternative(fix: tuple[str, ...], number: int) -> list[str]:
    """The steps of the NUMBERth alternative of a fix whose alternatives start with a line
    ending in ':' ("either, ...:", "or, ...:"); a fix without such lines is one alternative."""
    groups: list[list[str]] = []
    for step in fix:
        if step.endswith(":") and not EDIT.match(step):
            groups.append([])
        elif groups:
            groups[-1].append(step)
        else:
            groups.append([step])
    return groups[number]


def follow(steps: list[str] | tuple[str, ...], services: Mapping[str, Callable[[], Any]],
           env: Optional[Mapping[str, str]] = None) -> list[str]:
    """Do each step as written; returns the steps done. A step in parentheses is a remark;
    `systemctl ...`, `nginx ...` and `journalctl ...` go to SERVICES by their text (a
    missing one fails the test); an edit step changes the INI file."""
    done = []
    for step in steps:
        if step.startswith("(") or step.startswith("journalctl"):
            continue
        edit = EDIT.match(step)
        if edit:
            _edit(Path(edit["file"]), edit["section"], edit["key"], edit["value"])
        elif step.split()[0] in ("systemctl", "nginx"):
            command = step.split("  (")[0].strip()
            assert command in services, f"the test cannot do {command!r}"
            services[command]()
        else:
            shell = subprocess.run(["bash", "-c", step], capture_output=True, text=True,
                                   timeout=120, env={**os.environ, **(env or {})})
            assert shell.returncode == 0, f"{step}: {shell.stdout}{shell.stderr}"
            if step.startswith("postconf") and "-e" in step:
                _backdate(step)
        done.append(step)
    return done


def _edit(path: Path, section: str, key: str, value: str) -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    if not parser.has_section(section):
        parser.add_section(section)
    parser.set(section, key, value)
    with open(path, "w") as handle:
        parser.write(handle)


def _backdate(step: str) -> None:
    """`postfix reload` pauses ~2 s on a main.cf younger than a few seconds (sandbox-postfix
    notes); the step itself is unchanged, only its file's mtime."""
    found = re.search(r"-c (\S+)", step)
    if found:
        main_cf = Path(found.group(1)) / "main.cf"
        past = time.time() - 5
        os.utime(main_cf, (past, past))


def make_stack(directory: Path, redis_url: str, start_milter: Callable[..., MilterProcess],
               start_redirector: Callable[..., Redirector],
               postfix_sandbox: Callable[..., PostfixSandbox]) -> Stack:
    """The healthy installation (see Stack); DIRECTORY holds engage.conf and the nginx dir."""
    from support.procs import render_nginx_conf

    directory.mkdir(parents=True, exist_ok=True)
    redirector = start_redirector(nginx=True)
    milter = start_milter({"ENGAGE_TRACKING_URL": redirector.public_url})
    postfix = postfix_sandbox(milter, private=True)
    postfix.postconf(non_smtpd_milters="$smtpd_milters")  # as etc/postfix/main.cf.engage
    conf = write_settings(directory / "engage.conf", milter.socket, redis_url,
                          redirector.public_url)
    site = render_nginx_conf("127.0.0.1:8081", "127.0.0.1:8080")
    return Stack(conf, milter, redirector, postfix, nginx_dir(directory / "nginx", site),
                 redis_url)


class ConfiguredRedis:
    """redis-server started with a configuration file, as Debian runs it, so that the
    doctor's `redis-cli ... CONFIG REWRITE` (which needs one) can be followed."""

    def __init__(self, workdir: Path, settings: str) -> None:
        from support.procs import free_port

        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = self.workdir / "redis.conf"
        self.conf.write_text(f"bind 127.0.0.1\nport {self.port}\ndir {self.workdir}\n"
                             f"logfile {self.workdir / 'redis.log'}\ndaemonize no\n"
                             "hash-max-listpack-value 256\n"  # as docs/install.md says
                             f"{settings}")
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "ConfiguredRedis":
        import redis

        self.proc = subprocess.Popen(["redis-server", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server {self.conf} did not start")

    def stop(self) -> None:
        from support.procs import stop_process

        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
