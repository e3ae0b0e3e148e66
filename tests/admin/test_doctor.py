"""engage doctor against live daemons: a healthy stack says ok, each broken piece is named.

Real redis-server, milter processes and redirector on loopback (tests/conftest.py
fixtures); Postfix's side is read with the real postconf from configuration directories
written here (a running Postfix is not needed to read main.cf).
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engage.admin import doctor, doctor_redis, postfixconf
from engage.admin.milterprobe import Address, parse_socket, probe
from engage.settings import Settings
from support.procs import REPO, free_port

POSTCONF = "/usr/sbin/postconf"
needs_postconf = pytest.mark.skipif(not os.path.exists(POSTCONF), reason="postfix not installed")
NO_NGINX = "/nonexistent/nginx"  # the host's own nginx is not part of these tests
MASTER_CF = ("smtp      inet  n       -       {chroot}       -       -       smtpd\n"
             "cleanup   unix  n       -       {chroot}       -       0       cleanup\n")


def write_config(path: Path, milter: str, redis_url: str, tracking: str, extra: str = "") -> str:
    path.write_text(f"[milter]\nsocket = {milter}\n[redis]\nurl = {redis_url}\n"
                    f"[tracking]\nurl = {tracking}\n{extra}")
    return str(path)


def postfix_dir(base: Path, smtpd_milters: str, *, non_smtpd: str = "$smtpd_milters",
                action: str = "tempfail", chroot: str = "n") -> str:
    base.mkdir(parents=True, exist_ok=True)
    (base / "main.cf").write_text(
        f"compatibility_level = 3.6\nsmtpd_milters = {smtpd_milters}\n"
        f"non_smtpd_milters = {non_smtpd}\nmilter_default_action = {action}\n")
    (base / "master.cf").write_text(MASTER_CF.format(chroot=chroot))
    # postconf waits ~2 s on a main.cf modified within the last seconds (as sandbox-postfix notes)
    past = time.time() - 10
    for name in ("main.cf", "master.cf"):
        os.utime(base / name, (past, past))
    return str(base)


class Redirector:
    """The real Flask app (engage.web.app.create_app) served by werkzeug in a thread."""

    def __init__(self, redis_url: str) -> None:
        from werkzeug.serving import make_server

        from engage.web.app import create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(Settings(redis_url=redis_url, tracking_url=self.url))
        self.server = make_server("127.0.0.1", self.port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def conf_dir(engage_tmp, request) -> Path:
    """A directory the engage user (present once the packages were installed) may read:
    the doctor checks that the services could read the settings file."""
    path = Path(engage_tmp) / "doctor" / re.sub(r"\W", "_", request.node.name)
    path.mkdir(parents=True)
    return path


@pytest.fixture
def redirector(redis_server) -> Iterator[Redirector]:
    server = Redirector(redis_server.url)
    yield server
    server.close()


@pytest.fixture
def healthy(tmp_path, redis_server, redis_client, start_milter, redirector, conf_dir):
    """A settings file for a running milter, Redis (AOF) and redirector, and a main.cf
    that calls engage first, then another milter that answers too."""
    milter, other = start_milter(), start_milter()
    conf = write_config(conf_dir / "engage.conf", milter.socket, redis_server.url, redirector.url)
    pf = postfix_dir(tmp_path / "postfix", f"{milter.postfix_socket}, {other.postfix_socket}")
    return doctor.Options(nginx_dir=NO_NGINX, config=conf, postfix_config=pf, postconf=POSTCONF,
                          timeout=3)


def levels(findings: list[doctor.Finding], topic: str) -> list[str]:
    return [f.level for f in findings if f.topic == topic]


@needs_postconf
def test_healthy_stack_has_no_errors_and_only_the_loopback_warning(healthy):
    findings = doctor.run(healthy)
    assert [f for f in findings if f.level == doctor.ERROR] == []
    warnings = [f for f in findings if f.level == doctor.WARN]
    assert [w.topic for w in warnings] == ["tracking"]
    assert "points at this machine" in warnings[0].text
    assert levels(findings, "config") == ["ok"]
    assert levels(findings, "redis") == ["ok", "ok", "ok"]
    assert levels(findings, "milter") == ["ok"]
    assert levels(findings, "postfix") == ["ok"]
    assert levels(findings, "tracking") == ["ok", "warn"]
    assert levels(findings, "nginx") == levels(findings, "proxy") == ["skip"]
    assert levels(findings, "probe") == []
    assert doctor.exit_status(findings) == 0 and doctor.exit_status(findings, strict=True) == 1


@needs_postconf
def test_command_line_prints_findings_and_never_imports_flask_or_pymilter(healthy):
    code = ("import sys; from engage.admin import cli; status = cli.main(sys.argv[1:]); "
            "assert not {'flask', 'Milter', 'milter'} & set(sys.modules), sorted(sys.modules); "
            "sys.exit(status)")
    done = subprocess.run(
        [sys.executable, "-c", code, "doctor", "--config", healthy.config,
         "--postfix-config", healthy.postfix_config, "--nginx-dir", healthy.nginx_dir],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO / "redirector")})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok     milter    the milter answers on inet:" in done.stdout
    assert "0 errors, 1 warning." in done.stdout


def test_settings_that_do_not_load_stop_every_other_check(conf_dir):
    bad = conf_dir / "engage.conf"
    bad.write_text("[milter]\nsocket = nonsense\n")
    findings = doctor.run(doctor.Options(nginx_dir=NO_NGINX, config=str(bad)))
    assert findings[0].level == doctor.ERROR and "[milter] socket" in findings[0].text
    assert [f.level for f in findings[1:]] == ["skip"] * (len(doctor.TOPICS) - 1)
    assert doctor.exit_status(findings) == 1


def test_settings_the_engage_user_cannot_read_are_an_error(conf_dir):
    try:
        pwd.getpwnam("engage")
    except KeyError:
        pytest.skip("no engage user here (it comes with the packages)")
    conf = conf_dir / "secret.conf"
    conf.write_text("[tracking]\nurl = https://click.example.com\n")
    conf.chmod(0o600)
    findings = doctor.run(doctor.Options(nginx_dir=NO_NGINX, config=str(conf),
                                         skip=frozenset(doctor.TOPICS[1:])))
    assert findings[1].level == doctor.ERROR
    assert "user engage may not read" in findings[1].text
    assert findings[1].fix[:2] == (f"chgrp engage {conf}", f"chmod 640 {conf}")


@needs_postconf
def test_redis_evicting_keys_is_an_error(healthy, redis_client):
    redis_client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        findings = doctor.run(healthy)
    finally:
        redis_client.config_set("maxmemory-policy", "noeviction")
    (error,) = [f for f in findings if f.topic == "redis" and f.level == doctor.ERROR]
    assert "allkeys-lru" in error.text and "404" in error.text
    assert error.fix == ("redis-cli -p %d CONFIG SET maxmemory-policy noeviction"
                         % redis_client.connection_pool.connection_kwargs["port"],
                         "redis-cli -p %d CONFIG REWRITE"
                         % redis_client.connection_pool.connection_kwargs["port"])
    assert doctor.exit_status(findings) == 1


@needs_postconf
def test_redis_without_persistence_is_an_error(healthy, redis_client):
    redis_client.config_set("appendonly", "no")
    old_save = redis_client.config_get("save")["save"]
    redis_client.config_set("save", "")
    try:
        findings = doctor.run(healthy)
    finally:
        redis_client.config_set("appendonly", "yes")
        redis_client.config_set("save", old_save)
    (error,) = [f for f in findings if f.level == doctor.ERROR]
    assert error.topic == "redis" and "in memory only" in error.text


def test_redis_down_is_an_error_and_passwords_are_not_printed(conf_dir):
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    conf = write_config(conf_dir / "e.conf", "inet:1@127.0.0.1", url, "http://127.0.0.1:1")
    findings = doctor.run(doctor.Options(nginx_dir=NO_NGINX, config=conf, skip=frozenset({"milter", "postfix",
                                                                      "tracking"})))
    (error,) = [f for f in findings if f.level == doctor.ERROR]
    assert "cannot reach Redis at redis://:***@127.0.0.1" in error.text
    assert "s3cret" not in doctor.render(findings)


@needs_postconf
def test_milter_down_is_an_error(healthy, redis_server, redirector, conf_dir):
    conf = write_config(conf_dir / "down.conf", f"inet:{free_port()}@127.0.0.1",
                        redis_server.url, redirector.url)
    findings = doctor.run(doctor.Options(nginx_dir=NO_NGINX, config=conf, skip=frozenset({"postfix"})))
    (error,) = [f for f in findings if f.level == doctor.ERROR]
    assert error.topic == "milter" and "does not answer" in error.text
    assert "Connection refused" in error.text and error.fix[0] == "systemctl start engage-milter"


def test_a_port_that_is_not_a_milter_fails_the_probe(redis_server):
    with pytest.raises(doctor.ProbeError, match="no milter answer within 1 s"):
        probe(parse_socket(f"inet:{redis_server.port}@127.0.0.1"), timeout=1)
    greeter = socket.create_server(("127.0.0.1", 0))  # answers like an SMTP server

    def greet() -> None:
        conn, _ = greeter.accept()
        with conn:
            conn.sendall(b"220 mail.example ESMTP\r\n")
            conn.recv(100)

    threading.Thread(target=greet, daemon=True).start()
    with greeter, pytest.raises(doctor.ProbeError, match="not in the milter protocol"):
        probe(parse_socket(f"inet:{greeter.getsockname()[1]}@127.0.0.1"), timeout=3)


def test_probe_negotiates_with_engage_milter(start_milter):
    version, actions, _ = probe(parse_socket(start_milter().socket), timeout=5)
    assert version == 6 and actions & 0x12 == 0x12  # CHGBODY | CHGHDRS


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the socket is checked for user postfix")
def test_root_milter_unix_socket_refused_to_postfix_is_an_error(start_milter, engage_tmp,
                                                                redis_server, conf_dir):
    sock_dir = Path(engage_tmp) / f"sock-{free_port()}"
    sock_dir.mkdir()
    milter = start_milter({"ENGAGE_MILTER_SOCKET": f"unix:{sock_dir}/milter.sock"})
    conf = write_config(conf_dir / "e.conf", milter.socket, redis_server.url, "http://127.0.0.1:1")
    findings = doctor.run(doctor.Options(nginx_dir=NO_NGINX, config=conf,
                                         skip=frozenset({"postfix", "tracking"})))
    errors = [f for f in findings if f.level == doctor.ERROR]
    assert [f.topic for f in errors] == ["milter"], findings
    assert "user postfix may not write to" in errors[0].text
    assert errors[0].fix == ("adduser postfix engage", "postfix reload")


@needs_postconf
def test_postfix_without_engage_in_smtpd_milters_is_an_error(healthy, tmp_path):
    pf = postfix_dir(tmp_path / "pf-none", "", non_smtpd="")
    findings = doctor.run(doctor.Options(nginx_dir=NO_NGINX, config=healthy.config, postfix_config=pf,
                                         postconf=POSTCONF, skip=frozenset({"tracking"})))
    (error,) = [f for f in findings if f.level not in (doctor.OK, doctor.SKIP)]
    assert error.topic == "postfix"
    assert "Postfix does not send mail to engage: smtpd_milters" in error.text
    assert "is empty, so mail goes out untracked. Add inet:127.0.0.1:" in error.text
    ours = doctor.postfix_syntax(parse_socket(doctor.config.load(healthy.config).milter_socket))
    assert error.fix == (f"postconf -c {pf} -e 'smtpd_milters = {ours}'",
                         f"postconf -c {pf} -e 'non_smtpd_milters = $smtpd_milters'",
                         f"postfix -c {pf} reload")


@needs_postconf
def test_dkim_signer_ahead_of_engage_is_an_error(healthy, tmp_path, start_milter, conf_dir):
    milter = parse_socket(doctor.config.load(healthy.config).milter_socket)
    ours = doctor.postfix_syntax(milter)
    link = conf_dir / "opendkim.sock"  # a milter named like a signer
    start_milter({"ENGAGE_MILTER_SOCKET": f"unix:{link}"})
    link.chmod(0o777)  # the doctor checks that Postfix's user may connect
    pf = postfix_dir(tmp_path / "pf-dkim", f"unix:{link}, {ours}", action="accept")
    findings = doctor.run(doctor.Options(nginx_dir=NO_NGINX, config=healthy.config, postfix_config=pf,
                                         postconf=POSTCONF, skip=frozenset({"tracking"})))
    postfix = [f for f in findings if f.topic == "postfix"]
    assert [f.level for f in postfix] == ["warn", "ok", "error"]
    assert "milter_default_action = accept" in postfix[0].text
    assert f"calls unix:{link} (a DKIM signer) before engage" in postfix[2].text
    assert postfix[2].fix == (f"postconf -c {pf} -e 'smtpd_milters = {ours}, unix:{link}'",
                              f"postfix -c {pf} reload")


@needs_postconf
def test_unix_socket_outside_a_chrooted_smtpd_is_explained(tmp_path, healthy, conf_dir):
    conf = write_config(conf_dir / "unix.conf", "unix:/run/engage/milter.sock",
                        "redis://127.0.0.1:1/0", "http://127.0.0.1:1")
    pf = postfix_dir(tmp_path / "pf-chroot", "unix:/run/engage/milter.sock", chroot="y")
    findings = doctor.run(doctor.Options(nginx_dir=NO_NGINX, config=conf, postfix_config=pf,
                                         postconf=POSTCONF,
                                         skip=frozenset({"redis", "milter", "tracking"})))
    errors = [f.text for f in findings if f.level == doctor.ERROR]
    assert len(errors) == 1 and "runs chrooted in /var/spool/postfix" in errors[0]
    good = postfix_dir(tmp_path / "pf-chroot-ok", "unix:/engage/milter.sock", chroot="y")
    conf = write_config(conf_dir / "spool.conf", "unix:/var/spool/postfix/engage/milter.sock",
                        "redis://127.0.0.1:1/0", "http://127.0.0.1:1")
    findings = doctor.run(doctor.Options(nginx_dir=NO_NGINX, config=conf, postfix_config=good,
                                         postconf=POSTCONF,
                                         skip=frozenset({"redis", "milter", "tracking"})))
    assert [f.level for f in findings if f.topic == "postfix"] == ["ok"]


def test_tracking_host_that_does_not_resolve_is_an_error(conf_dir):
    conf = write_config(conf_dir / "e.conf", "inet:1@127.0.0.1", "redis://127.0.0.1:1/0",
                        "https://click.engage-doctor.invalid",
                        "[tracking_domains]\nbrand.example = http://127.0.0.1:1\n")
    findings = doctor.run(doctor.Options(nginx_dir=NO_NGINX, config=conf, timeout=2,
                                         skip=frozenset({"redis", "milter", "postfix"})))
    tracking = [f for f in findings if f.topic == "tracking"]
    assert tracking[0].level == doctor.ERROR and "connection refused" in tracking[0].text
    assert any("click.engage-doctor.invalid" in f.text and "does not resolve" in f.text
               for f in tracking)


def test_redirector_that_cannot_reach_redis_is_an_error(conf_dir):
    server = Redirector(f"redis://127.0.0.1:{free_port()}/0")
    try:
        conf = write_config(conf_dir / "e.conf", "inet:1@127.0.0.1", "redis://127.0.0.1:1/0",
                            server.url)
        findings = doctor.run(doctor.Options(nginx_dir=NO_NGINX, config=conf, timeout=5,
                                             skip=frozenset({"redis", "milter", "postfix"})))
    finally:
        server.close()
    tracking = [f for f in findings if f.topic == "tracking"]
    assert tracking[0].level == doctor.ERROR and "cannot reach Redis" in tracking[0].text


def test_something_else_answering_is_not_taken_for_the_redirector(conf_dir):
    from http.server import HTTPServer, SimpleHTTPRequestHandler

    server = HTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        conf = write_config(conf_dir / "e.conf", "inet:1@127.0.0.1", "redis://127.0.0.1:1/0",
                            f"http://127.0.0.1:{server.server_port}/nowhere")
        findings = doctor.run(doctor.Options(nginx_dir=NO_NGINX, config=conf, timeout=5,
                                             skip=frozenset({"redis", "milter", "postfix"})))
    finally:
        server.shutdown()
    tracking = [f for f in findings if f.topic == "tracking"]
    assert tracking[0].level == doctor.ERROR
    assert "answers 404, not like the engage" in tracking[0].text


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_https_tracking_url_with_an_untrusted_certificate_is_an_error(conf_dir):
    from http.server import HTTPServer, SimpleHTTPRequestHandler

    key, cert = conf_dir / "key.pem", conf_dir / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = HTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        conf = write_config(conf_dir / "e.conf", "inet:1@127.0.0.1", "redis://127.0.0.1:1/0",
                            f"https://localhost:{server.server_port}")
        findings = doctor.run(doctor.Options(nginx_dir=NO_NGINX, config=conf, timeout=5,
                                             skip=frozenset({"redis", "milter", "postfix"})))
    finally:
        server.shutdown()
    tracking = [f for f in findings if f.topic == "tracking"]
    assert tracking[0].level == doctor.ERROR
    assert "TLS certificate is refused (self-signed certificate)" in tracking[0].text


# ------------------------------------------------------------------ pure parts

def test_split_milters_reduces_groups_to_their_socket():
    assert postfixconf.split_milters(
        "inet:127.0.0.1:8890, { unix:/run/x.sock, connect_timeout=10s, default_action=accept }"
        "  inet:[::1]:8891") == ("inet:127.0.0.1:8890", "unix:/run/x.sock", "inet:[::1]:8891")
    assert postfixconf.split_milters("") == ()


@pytest.mark.parametrize("entry, ours, chroot, expected", [
    ("inet:127.0.0.1:8890", "inet:8890@127.0.0.1", False, True),
    ("inet:localhost:8890", "inet:8890@127.0.0.1", False, True),
    ("inet:127.0.0.1:8891", "inet:8890@127.0.0.1", False, False),
    ("inet:10.0.0.2:8890", "inet:8890@127.0.0.1", False, False),
    ("inet:10.0.0.2:8890", "inet:8890", False, True),
    ("inet:[::1]:8890", "inet6:8890@::1", False, True),
    ("unix:/run/engage/milter.sock", "unix:/run/engage/milter.sock", False, True),
    ("unix:/run/engage/milter.sock", "unix:/run/engage/milter.sock", True, False),
    ("unix:/engage/milter.sock", "unix:/var/spool/postfix/engage/milter.sock", True, True),
    ("unix:engage/milter.sock", "unix:/var/spool/postfix/engage/milter.sock", False, True),
])
def test_refers_to(entry, ours, chroot, expected):
    milters = postfixconf.PostfixMilters((entry,), (), "tempfail", "/var/spool/postfix", chroot)
    assert postfixconf.refers_to(entry, parse_socket(ours), milters) is expected


@pytest.mark.parametrize("entry, expected", [
    ("inet:127.0.0.1:8891", True), ("unix:/run/opendkim/opendkim.sock", True),
    ("inet:localhost:11332", True), ("unix:/run/dkimpy-milter/dkimpy-milter.sock", True),
    ("inet:127.0.0.1:8890", False), ("unix:/run/opendmarc/opendmarc.sock", False),
])
def test_dkim_signers_are_recognised(entry, expected):
    assert postfixconf.looks_like_dkim_signer(entry) is expected


def test_master_cf_chroot_column():
    assert postfixconf.smtpd_chrooted("smtp inet n - y - - smtpd\n")
    assert not postfixconf.smtpd_chrooted("smtp inet n - n - - smtpd\n"
                                          "pickup unix n - y 60 1 pickup\n")


def test_postfix_syntax_of_our_socket():
    assert doctor.postfix_syntax(parse_socket("inet:8890@127.0.0.1")) == "inet:127.0.0.1:8890"
    assert doctor.postfix_syntax(parse_socket("inet:8890")) == "inet:127.0.0.1:8890"
    assert doctor.postfix_syntax(parse_socket("inet6:8890@::1")) == "inet:[::1]:8890"
    chrooted = postfixconf.PostfixMilters((), (), "", "/var/spool/postfix", True)
    assert doctor.postfix_syntax(Address("unix", path="/var/spool/postfix/engage/m.sock"),
                                 chrooted) == "unix:/engage/m.sock"


@needs_postconf
def test_settings_that_inflate_memory_are_warnings(healthy, redis_client):
    redis_client.config_set("hash-max-listpack-value", "32")
    try:
        findings = doctor.run(healthy)
    finally:
        redis_client.config_set("hash-max-listpack-value", "256")
    (warning,) = [f for f in findings if f.topic == "redis" and f.level == doctor.WARN]
    assert "hash-max-listpack-value is 32 (default 64)" in warning.text


def test_records_that_do_not_fit_a_listpack_are_a_memory_warning(redis_client):
    """Redis's default hash-max-listpack-value (64) turns each bucket of message records
    into a hash table: a warning with the fix; the advised 256 (the tests' Redis) is quiet."""
    assert doctor_redis._memory(redis_client, "redis-cli") == []
    redis_client.config_set("hash-max-listpack-value", "64")
    try:
        (warning,) = doctor_redis._memory(redis_client, "redis-cli")
    finally:
        redis_client.config_set("hash-max-listpack-value", "256")
    assert warning.level == doctor.WARN and "each bucket of 100 records is a hash table" in warning.text
    assert warning.fix == ("redis-cli CONFIG SET hash-max-listpack-value 256",
                           "redis-cli CONFIG REWRITE")


@pytest.mark.parametrize("share, level, words", [
    (2.0, "ok", "events stop at 90%"), (1.05, "warn", "records no events"),
    (0.9, "error", "the milter tempfails")])
def test_memory_above_the_high_water_mark_and_full(redis_client, share, level, words):
    used = redis_client.info("memory")["used_memory"]
    redis_client.config_set("maxmemory", int(used * share))
    try:
        (finding,) = doctor_redis.pressure(redis_client, Settings())
    finally:
        redis_client.config_set("maxmemory", 0)
    assert finding.level == level and words in finding.text
    assert doctor_redis.pressure(redis_client, Settings()) == []  # no maxmemory, no mark
