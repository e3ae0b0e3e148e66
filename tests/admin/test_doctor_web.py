"""engage doctor, the click side: the redirector under gunicorn, nginx in front, DNS and TLS.
Each breakage of the issue-17 list is made on real processes (a private nginx, gunicorn,
a TLS certificate from a throw-away CA made with openssl); the doctor names cause, effect
and fix and exits 1; following the fix as written (certbot stood in for by the same CA)
brings back a clean report.

Breakages here: 10 nginx not setting X-Forwarded-For, 11 proxy_hops not matching the
proxies, 12 a tracking host that does not resolve, 13 a certificate that does not cover a
tracking name, 15 the redirector stopped, 16 the nginx site not enabled.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

import support.procs as procs
from engage.admin import doctor
from engage.admin.doctor_nginx import XFF_LINE
from support.doctorstack import API_KEY, Stack, case_dir, diagnose, flat, follow, make_stack, nginx_dir
from support.procs import free_port, listening, nginx_binary, stop_process

WEB = frozenset({"redis", "milter", "postfix", "probe"})  # what these tests leave out
needs_tools = pytest.mark.skipif(nginx_binary() is None or shutil.which("openssl") is None,
                                 reason="needs nginx and openssl")


@pytest.fixture
def workdir(engage_tmp, request) -> Path:
    return case_dir(engage_tmp, "doctor-web", request.node.name)


@pytest.fixture
def stack(workdir, redis_server, start_milter, start_redirector, postfix_sandbox) -> Stack:
    return make_stack(workdir / "stack", redis_server.url, start_milter, start_redirector,
                      postfix_sandbox)


class Nginx:
    """A private nginx from a whole nginx.conf text (prefix WORKDIR), for the tests that need
    other than the sandbox template: TLS, sites-enabled."""

    def __init__(self, workdir: Path, text: str) -> None:
        self.workdir = workdir
        (workdir / "tmp").mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "nginx.conf"
        self.conf.write_text(text)
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self, *args: str) -> list[str]:
        return [str(nginx_binary()), "-c", str(self.conf), "-p", f"{self.workdir}/",
                "-e", str(self.workdir / "error.log"), *args]

    def start(self, port: int) -> "Nginx":
        self.proc = subprocess.Popen(self.argv("-g", "daemon off;"), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        for _ in range(200):
            if listening(port):
                return self
            subprocess.run(["sleep", "0.05"])
        raise AssertionError((self.workdir / "error.log").read_text())

    def check(self) -> None:  # nginx -t
        subprocess.run(self.argv("-t"), check=True, capture_output=True)

    def reload(self) -> None:  # systemctl reload nginx; then wait for the new workers
        subprocess.run(self.argv("-s", "reload"), check=True, capture_output=True)
        subprocess.run(["sleep", "1"])

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def options(stack: Stack, **changes) -> doctor.Options:
    return stack.options(skip=WEB, **changes)


# ------------------------------------------------------------------ proxies (10, 11)

def test_10_nginx_not_setting_x_forwarded_for_lets_clients_forge_their_address(
        workdir, monkeypatch, redis_server, start_milter, start_redirector, postfix_sandbox):
    template = procs.render_nginx_conf
    monkeypatch.setattr(procs, "render_nginx_conf", lambda listen, upstream: template(
        listen, upstream).replace(f"        {XFF_LINE}\n", ""))
    stack = make_stack(workdir, redis_server.url, start_milter, start_redirector, postfix_sandbox)
    running = stack.redirector.nginx
    found = diagnose(options(stack))
    error = found.only("error", "proxy")
    assert flat(error.text).startswith(
        "the redirector took the forged 192.0.2.1 for this client's address, so any client can "
        "forge its address, dodge the click rate limit and falsify events: the proxy in front "
        "(127.0.0.1) passes the client's X-Forwarded-For on instead of adding the address it sees")
    assert error.fix == (f"in the engage-redirector nginx site, in the server block: {XFF_LINE}",
                         "nginx -t", "systemctl reload nginx")
    assert found.code == 1
    # Without an API key the doctor cannot ask the redirector: it reads the site instead.
    site = stack.nginx_dir / "sites-available" / "engage-redirector.conf"
    site.write_text((running.workdir / "nginx.conf").read_text())
    no_key = stack.conf.read_text().replace(f"keys = {API_KEY}", "keys =")
    (workdir / "nokey.conf").write_text(no_key)
    static = diagnose(options(stack, config=str(workdir / "nokey.conf"))).only("error", "nginx")
    assert "does not set X-Forwarded-For, yet [web] proxy_hops = 1" in flat(static.text)
    # The fix, as written: the line into the server block, nginx -t, reload.
    conf = running.workdir / "nginx.conf"
    conf.write_text(conf.read_text().replace("proxy_redirect off;", f"{XFF_LINE}\n proxy_redirect off;"))
    nginx = Nginx(running.workdir, conf.read_text())
    follow(error.fix[1:], {"nginx -t": nginx.check, "systemctl reload nginx": nginx.reload})
    found = diagnose(options(stack))
    assert found.only("ok", "proxy") and found.code == 0, found.output


@pytest.mark.parametrize("hops", [0, 2])
def test_11_proxy_hops_not_matching_the_proxies_in_front(workdir, redis_server, start_milter,
                                                        start_redirector, postfix_sandbox, hops):
    conf = workdir / "engage.conf"
    conf.write_text(f"[web]\nproxy_hops = {hops}\n")  # the redirector reads it at start
    redirector = start_redirector({"ENGAGE_PROXY_HOPS": None, "ENGAGE_CONFIG": str(conf)},
                                  nginx=True)
    conf.write_text(f"[redis]\nurl = {redis_server.url}\nkey_prefix = test:\n[tracking]\n"
                    f"url = {redirector.public_url}\n[api]\nkeys = {API_KEY}\n[web]\n"
                    f"proxy_hops = {hops}\n")
    found = diagnose(doctor.Options(config=str(conf), skip=WEB | {"nginx"}, timeout=3))
    error = found.only("error", "proxy")
    if hops == 0:
        assert flat(error.text).startswith(
            "the redirector takes every client to be 127.0.0.1, a proxy: all clients share one "
            "click rate-limit bucket (past 300 clicks in 60 s every click gets 403) and events "
            "record the proxy's address: [web] proxy_hops = 0, but 1 proxy adds to "
            "X-Forwarded-For (this request from 127.0.0.2 arrived from 127.0.0.1 with "
            "X-Forwarded-For: 192.0.2.1, 127.0.0.2")
    else:
        assert flat(error.text).startswith(
            "the redirector took the forged 192.0.2.1 for this client's address, so any client "
            "can forge its address, dodge the click rate limit and falsify events: [web] "
            "proxy_hops = 2, but only 1 proxy adds to X-Forwarded-For")
    assert error.fix == (f"in {conf}: [web] proxy_hops = 1", "systemctl restart engage-redirector")
    assert found.code == 1

    def restart() -> None:
        redirector.stop()
        redirector.start()
    follow(error.fix, {"systemctl restart engage-redirector": restart})
    found = diagnose(doctor.Options(config=str(conf), skip=WEB | {"nginx"}, timeout=3))
    assert found.only("ok", "proxy") and found.code == 0, found.output


# ------------------------------------------------------------------ names (12, 13)

def test_12_a_tracking_host_that_does_not_resolve(stack):
    with open(stack.conf, "a") as conf:
        conf.write("[tracking_domains]\nbrand.example = https://click.engage-doctor.invalid\n")
    found = diagnose(options(stack))
    error = found.only("error", "tracking")
    assert flat(error.text).startswith(
        "click.engage-doctor.invalid (tracking URL https://click.engage-doctor.invalid) does "
        "not resolve")
    assert "clicks fail and opens are lost" in error.text
    assert error.fix[0] == ("add a DNS record: click.engage-doctor.invalid A (and AAAA) -> this "
                            "server's public address")
    assert found.code == 1  # (the fix is a DNS record: not something a test can publish)


def make_ca(directory: Path) -> tuple[Path, Path]:
    key, cert = directory / "ca.key", directory / "ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=engage doctor test CA", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return key, cert


def issue(directory: Path, ca: tuple[Path, Path], names: list[str]) -> tuple[Path, Path]:
    """What certbot would do for NAMES, from the test CA: (certificate, key) files."""
    key, request, cert = directory / "site.key", directory / "site.csr", directory / "site.pem"
    subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj",
                    f"/CN={names[0]}", "-keyout", str(key), "-out", str(request)],
                   check=True, capture_output=True)
    extensions = directory / "san.ext"
    extensions.write_text("subjectAltName = " + ",".join(f"DNS:{n}" for n in names) + "\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(request), "-CA", str(ca[1]), "-CAkey",
                    str(ca[0]), "-CAcreateserial", "-days", "2", "-extfile", str(extensions),
                    "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@needs_tools
def test_13_a_certificate_that_does_not_cover_a_tracking_name(workdir, monkeypatch, redis_server,
                                                             start_redirector):
    ca = make_ca(workdir)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca[1]))  # the test CA is trusted, like a public one
    cert, key = issue(workdir, ca, ["click.example.test"])
    redirector = start_redirector()
    port = free_port()
    listen = f"127.0.0.1:{port} ssl; ssl_certificate {cert}; ssl_certificate_key {key}"
    nginx = Nginx(workdir / "nginx", procs.render_nginx_conf(listen, f"127.0.0.1:{redirector.port}"))
    nginx.start(port)
    try:
        conf = workdir / "engage.conf"
        conf.write_text(f"[redis]\nurl = {redis_server.url}\n[tracking]\n"
                        f"url = https://localhost:{port}\n")
        found = diagnose(doctor.Options(config=str(conf), skip=WEB | {"nginx", "proxy"}))
        error = found.only("error", "tracking")
        assert flat(error.text) == (
            f"https://localhost:{port}/healthz cannot be fetched: its TLS certificate is refused "
            "(Hostname mismatch, certificate is not valid for 'localhost'.): the certificate nginx "
            "serves covers click.example.test, not localhost, so browsers refuse every click and "
            "open on it")
        assert error.fix[:2] == ("certbot certonly --webroot -w /var/www/letsencrypt --expand "
                                 "-d click.example.test -d localhost", "systemctl reload nginx")
        assert found.code == 1
        names = [word for flag, word in zip(shlex.split(error.fix[0]), shlex.split(error.fix[0])[1:])
                 if flag == "-d"]
        issue(workdir, ca, names)  # certbot, as the fix asks, writes the same files nginx reads
        follow(error.fix[1:], {"systemctl reload nginx": nginx.reload})
        found = diagnose(doctor.Options(config=str(conf), skip=WEB | {"nginx", "proxy"}))
        assert found.only("ok", "tracking").text.startswith(
            f"the redirector answers at https://localhost:{port}/healthz")
        assert found.code == 0, found.output
    finally:
        nginx.stop()


# ------------------------------------------------------------------ processes (15, 16)

def test_15_the_redirector_stopped(stack):
    stack.redirector.stop()
    found = diagnose(options(stack))
    error = found.only("error", "tracking")
    assert flat(error.text) == (
        f"{stack.redirector.public_url}/healthz answers 502: nginx cannot reach gunicorn, the "
        "redirector is stopped: every click and open fails")
    assert error.fix[0] == "systemctl start engage-redirector"
    assert found.code == 1
    follow(error.fix, {"systemctl start engage-redirector": stack.redirector.start})
    assert diagnose(options(stack)).problems() == [("warn", "tracking")]


SITE = """upstream engage_redirector {{ server 127.0.0.1:{upstream}; }}
server {{
    listen 127.0.0.1:{port};
    server_name 127.0.0.1;
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    location / {{ proxy_pass http://engage_redirector; }}
}}
"""
MAIN = """worker_processes 1;
pid nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    proxy_max_temp_file_size 0;
    server {{ listen 127.0.0.1:{port} default_server; server_name _; return 404; }}
    include {sites}/sites-enabled/*;
}}
"""


@needs_tools
def test_16_the_nginx_site_not_enabled(workdir, redis_server, start_redirector):
    """Debian's layout: nginx.conf includes sites-enabled/*; the site sits in
    sites-available only, so nginx's default server answers the tracking name."""
    redirector = start_redirector({"ENGAGE_PROXY_HOPS": "1"})
    port = free_port()
    etc = nginx_dir(workdir / "etc-nginx", SITE.format(upstream=redirector.port, port=port),
                    enabled=False)
    nginx = Nginx(workdir / "nginx", MAIN.format(port=port, sites=etc)).start(port)
    try:
        conf = workdir / "engage.conf"
        conf.write_text(f"[redis]\nurl = {redis_server.url}\nkey_prefix = test:\n[tracking]\n"
                        f"url = http://127.0.0.1:{port}\n[api]\nkeys = {API_KEY}\n[web]\n"
                        "proxy_hops = 1\n")
        run = doctor.Options(config=str(conf), skip=WEB, nginx_dir=str(etc), timeout=3)
        found = diagnose(run)
        site = etc / "sites-available" / "engage-redirector.conf"
        error = found.only("error", "nginx")
        assert flat(error.text) == (
            f"the nginx site {site} is not enabled (nothing in {etc}/sites-enabled points at "
            "it): nginx's default site answers the tracking name instead, so every click gets "
            "404 and opens are lost")
        assert error.fix == (f"ln -s {site} {etc}/sites-enabled/engage-redirector.conf",
                             "nginx -t", "systemctl reload nginx")
        assert "answers 404, not like the engage redirector" in found.only("error", "tracking").text
        assert found.code == 1
        follow(error.fix, {"nginx -t": nginx.check, "systemctl reload nginx": nginx.reload})
        found = diagnose(run)
        assert found.problems() == [("warn", "tracking")] and found.code == 0, found.output
    finally:
        nginx.stop()
